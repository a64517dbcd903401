package node

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// TxStore adapts one keystore transaction to session.Store: protocol records are JSON-encoded
// blobs under keystore's typed keys, and pins are keystore peers. Use it only inside the
// Update or View that made tx.
type TxStore struct {
	Tx *keystore.Tx
}

var _ session.Store = TxStore{}

func decode[T any](blob []byte, what string) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(blob, v); err != nil {
		return nil, fmt.Errorf("stored %s does not decode: %w", what, err)
	}
	return v, nil
}

// refusal marks keystore's refusals of a value (ErrInvalid, ErrConflict) as the package's fault
// for session.Rejection: the values the protocol hands its Store come from a package, so when the
// store will not take one, the mail is rejected instead of holding up the inbox (THREATS row 30).
// Every other error (I/O, a damaged record) stays the node's own.
func refusal(err error) error {
	if errors.Is(err, keystore.ErrInvalid) || errors.Is(err, keystore.ErrConflict) {
		return fmt.Errorf("%w: %w", session.ErrRefusedRecord, err)
	}
	return err
}

// ignoreMissing makes deletes idempotent: the protocol only deletes what it just read, but a
// missing record is no reason to fail a whole transaction.
func ignoreMissing(err error) error {
	if errors.Is(err, keystore.ErrNotFound) {
		return nil
	}
	return err
}

func (s TxStore) Peer(fp session.Fingerprint) (session.PinnedPeer, bool, error) {
	p, ok, err := s.Tx.PeerByFingerprint(fp)
	if err != nil || !ok {
		return session.PinnedPeer{}, false, err
	}
	return session.PinnedPeer{Name: p.Name, Address: p.Address, PublicKey: ed25519.PublicKey(p.PublicKey)}, true, nil
}

// PinPeer records the peer's key under its name, keeping an allow list the operator already set.
func (s TxStore) PinPeer(pp session.PinnedPeer) error {
	p, _, err := s.Tx.Peer(pp.Name)
	if err != nil {
		return refusal(err)
	}
	p.Name, p.Address, p.PublicKey = pp.Name, pp.Address, []byte(pp.PublicKey)
	p.Fingerprint = session.FingerprintOf(pp.PublicKey)
	if p.AddedAt.IsZero() {
		p.AddedAt = time.Now()
	}
	return refusal(s.Tx.PutPeer(p))
}

func (s TxStore) Pairing(addr string) (*session.Pairing, bool, error) {
	b, ok, err := s.Tx.Pairing(addr)
	if err != nil || !ok {
		return nil, false, refusal(err)
	}
	p, err := decode[session.Pairing](b, "pairing")
	return p, err == nil, err
}

func (s TxStore) PutPairing(p *session.Pairing) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return refusal(s.Tx.PutPairing(p.Address, b))
}

func (s TxStore) DeletePairing(addr string) error {
	return refusal(ignoreMissing(s.Tx.DeletePairing(addr)))
}

func (s TxStore) Session(id session.SessionID) (*session.State, bool, error) {
	b, ok, err := s.Tx.Session(id)
	if err != nil || !ok {
		return nil, false, err
	}
	st, err := decode[session.State](b, "session")
	return st, err == nil, err
}

func (s TxStore) PutSession(st *session.State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return refusal(s.Tx.PutSession(st.ID, st.Peer, b))
}

func (s TxStore) DeleteSession(id session.SessionID) error {
	return ignoreMissing(s.Tx.DeleteSession(id))
}

func (s TxStore) SessionsOf(peer session.Fingerprint) ([]session.SessionID, error) {
	ids, err := s.Tx.SessionsOf(peer)
	out := make([]session.SessionID, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out, err
}

func (s TxStore) Ledger(peer session.Fingerprint, cmd session.CommandID) (*session.LedgerEntry, bool, error) {
	b, ok, err := s.Tx.Ledger(peer, cmd)
	if err != nil || !ok {
		return nil, false, err
	}
	e, err := decode[session.LedgerEntry](b, "ledger entry")
	return e, err == nil, err
}

func (s TxStore) PutLedger(e *session.LedgerEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	// The ledger is purged by this time. A command not answered yet (waiting its turn behind a
	// peer's long commands, or left by a crash for Recover) must outlive its not_after: purging
	// it would leave it never run and never answered. Its answer, once recorded, puts the
	// command's own not_after back.
	keep := time.UnixMilli(e.NotAfter)
	if e.State != session.Done {
		keep = keep.Add(session.MaxTTL)
	}
	// Only an unfinished entry is listed open: Recover reads those, never the answered ones.
	return refusal(s.Tx.PutLedgerEntry(e.Peer, e.Command, keep, e.State != session.Done, b))
}

func (s TxStore) Pending(cmd session.CommandID) (*session.Pending, bool, error) {
	b, ok, err := s.Tx.Pending(cmd)
	if err != nil || !ok {
		return nil, false, err
	}
	p, err := decode[session.Pending](b, "pending command")
	return p, err == nil, err
}

func (s TxStore) PutPending(p *session.Pending) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return refusal(s.Tx.PutPending(p.Command, p.Peer, b))
}

func (s TxStore) DeletePending(cmd session.CommandID) error {
	return ignoreMissing(s.Tx.DeletePending(cmd))
}

// StreamSecret finds the secret of a stream this node receives from peer (stream_in.go).
func (s TxStore) StreamSecret(peer session.Fingerprint, cmd session.CommandID) (*session.Secret, bool, error) {
	in, ok, err := s.Tx.StreamIn(peer, cmd)
	if err != nil || !ok {
		return nil, false, err
	}
	sec := session.Secret(in.Secret)
	return &sec, true, nil
}
