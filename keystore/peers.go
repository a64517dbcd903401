package keystore

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"log/slog"
	"time"
)

// Peer is a pinned correspondent: the other end's address and ed25519 public
// key, plus the commands it may run here (Allow; nil or empty: none). Public
// keys are not secret.
//
// Layout: peers: name -> JSON; peers_by_fp: fingerprint (16) -> name. The
// allow list of a name not pinned yet (a peer still pairing) is held in
// allow_unpinned (allow.go) until PutPeer pins the name.
type Peer struct {
	Name        string
	Address     string
	PublicKey   []byte // ed25519, 32 bytes
	Fingerprint [16]byte
	Allow       []string
	AddedAt     time.Time
	LastSeen    time.Time
}

type peerRecord struct {
	Name        string    `json:"name"`
	Address     string    `json:"address"`
	PublicKey   []byte    `json:"public_key"`
	Fingerprint string    `json:"fingerprint"` // hex
	Allow       []string  `json:"allow,omitempty"`
	AddedAt     time.Time `json:"added_at"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
}

func (p Peer) record() peerRecord {
	return peerRecord{p.Name, p.Address, p.PublicKey, hex.EncodeToString(p.Fingerprint[:]), p.Allow, p.AddedAt.UTC(), p.LastSeen.UTC()}
}

func (r peerRecord) peer() (Peer, error) {
	p := Peer{Name: r.Name, Address: r.Address, PublicKey: r.PublicKey, Allow: r.Allow, AddedAt: r.AddedAt, LastSeen: r.LastSeen}
	fp, err := hex.DecodeString(r.Fingerprint)
	if err != nil || len(fp) != 16 {
		return Peer{}, corruptf("peer %q: bad fingerprint %q", r.Name, r.Fingerprint)
	}
	copy(p.Fingerprint[:], fp)
	return p, nil
}

func (p Peer) validate() error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	if err := checkAddress("peer address", p.Address); err != nil {
		return err
	}
	if len(p.PublicKey) != ed25519.PublicKeySize {
		return invalidf("peer %q public key is %d bytes, want %d", p.Name, len(p.PublicKey), ed25519.PublicKeySize)
	}
	if err := checkID("peer fingerprint", p.Fingerprint); err != nil {
		return err
	}
	return checkAllow(p.Allow)
}

// Peer returns the peer called name.
func (tx *Tx) Peer(name string) (Peer, bool, error) {
	if err := checkName(name); err != nil {
		return Peer{}, false, err
	}
	return tx.peer([]byte(name))
}

func (tx *Tx) peer(name []byte) (Peer, bool, error) {
	var r peerRecord
	ok, err := getJSON(tx.bucket(bPeers), name, "peer", &r)
	if !ok || err != nil {
		return Peer{}, false, err
	}
	p, err := r.peer()
	return p, err == nil, err
}

// PeerByFingerprint finds a peer by its key fingerprint (the id packages
// carry).
func (tx *Tx) PeerByFingerprint(fp [16]byte) (Peer, bool, error) {
	if err := checkID("peer fingerprint", fp); err != nil {
		return Peer{}, false, err
	}
	name := tx.bucket(bPeersByFP).Get(fp[:])
	if name == nil {
		return Peer{}, false, nil
	}
	p, ok, err := tx.peer(name)
	if err == nil && (!ok || p.Fingerprint != fp) {
		return Peer{}, false, corruptf("fingerprint index %x names peer %q, which does not match", fp, name)
	}
	return p, ok, err
}

// PutPeer adds a peer or updates one. The pin is the security property, so:
//   - a new peer whose fingerprint is already pinned to another name is
//     refused (ErrConflict): one key, one name;
//   - an existing name may change address, allow list and times, but not its
//     public key or fingerprint (ErrConflict): re-pinning a key must be an
//     explicit DeletePeer then PutPeer, never a silent overwrite.
//
// A zero AddedAt keeps the stored value, or is set to now for a new peer.
// A new peer with a nil Allow takes the list held for its name (PutAllow
// before the name was pinned); the held list goes either way, so a name's
// allow list has one home.
func (tx *Tx) PutPeer(p Peer) error {
	if err := p.validate(); err != nil {
		return err
	}
	old, exists, err := tx.peer([]byte(p.Name))
	if err != nil {
		return err
	}
	if exists && (old.Fingerprint != p.Fingerprint || !bytes.Equal(old.PublicKey, p.PublicKey)) {
		return conflictf("peer %q is pinned to another key; delete it first to re-pin", p.Name)
	}
	byFP := tx.bucket(bPeersByFP)
	if owner := byFP.Get(p.Fingerprint[:]); owner != nil && string(owner) != p.Name {
		return conflictf("fingerprint %x is already pinned to peer %q", p.Fingerprint, owner)
	}
	if p.AddedAt.IsZero() {
		p.AddedAt = old.AddedAt
		if !exists {
			p.AddedAt = tx.now()
		}
	}
	held, err := tx.takeHeldAllow(p.Name)
	if err != nil {
		return err
	}
	if !exists && p.Allow == nil {
		p.Allow = held
	}
	if err := putJSON(tx.bucket(bPeers), []byte(p.Name), p.record()); err != nil {
		return err
	}
	if err := byFP.Put(clone(p.Fingerprint[:]), []byte(p.Name)); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_peer", slog.String("name", p.Name), slog.Any("peer", id16(p.Fingerprint)))
	}
	return nil
}

// DeletePeer removes a peer and its fingerprint pin (ErrNotFound if absent).
// Sessions and pending commands of that peer are the protocol's to drop.
func (tx *Tx) DeletePeer(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	p, ok, err := tx.peer([]byte(name))
	if err != nil {
		return err
	}
	if !ok {
		return notFoundf("peer %q", name)
	}
	if err := tx.bucket(bPeers).Delete([]byte(name)); err != nil {
		return err
	}
	if err := tx.bucket(bPeersByFP).Delete(p.Fingerprint[:]); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("delete_peer", slog.String("name", name), slog.Any("peer", id16(p.Fingerprint)))
	}
	return nil
}

// Peers lists every peer sorted by name (bbolt's byte order).
func (tx *Tx) Peers() ([]Peer, error) {
	var out []Peer
	err := tx.bucket(bPeers).ForEach(func(k, _ []byte) error {
		p, _, err := tx.peer(k)
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	return out, err
}
