package node

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// RunSpec is one command to send.
type RunSpec struct {
	// ID is the command's id; zero makes a fresh one. A caller that makes it itself (the CLI
	// does) knows what to look up when the node that records the command stops answering, and
	// can submit again with the same ID: Submit is idempotent per ID.
	ID      session.CommandID `json:"id,omitzero"`
	Peer    string            `json:"peer"`
	Request commands.Request  `json:"request"`
	TTL     time.Duration     `json:"ttl,omitempty"` // zero: 24 hours
}

// Submit records a command for a peer and mails it, starting a handshake first when there is no
// session. It returns the command id; the answer arrives through the mailbox (Wait).
//
// Submit is idempotent per spec.ID: when a result is already recorded under it (an earlier
// Submit whose caller never heard the answer), it returns the ID and sends nothing; the
// command is the one recorded then, and one for another peer or command line is refused.
func (n *Node) Submit(ctx context.Context, spec RunSpec) (session.CommandID, error) {
	id := spec.ID
	if id.IsZero() {
		if _, err := rand.Read(id[:]); err != nil {
			return id, err
		}
	}
	if spec.TTL <= 0 {
		spec.TTL = 24 * time.Hour
	}
	now := n.now()
	spec.Request.Sent = now
	if err := withStream(&spec.Request); err != nil {
		return id, err
	}
	frame, err := encodeRequest(spec.Request)
	if err != nil {
		return id, err
	}
	var again bool
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		var err error
		again, err = n.submitIn(tx, st, id, spec, frame, now, nil)
		return err
	})
	if err != nil || again {
		return id, err
	}
	if err := n.Flush(ctx); err != nil {
		n.log.Warn("command queued; mailing it failed and will be retried", "op", "flush", "cmd_id", id.String(), "err", err)
		return id, fmt.Errorf("%w: %v", ErrNotMailed, err)
	}
	return id, nil
}

// submitIn records and seals one command in tx (Submit's transaction); again: a result is
// already recorded under id, and nothing was done.
func (n *Node) submitIn(tx *keystore.Tx, st TxStore, id session.CommandID, spec RunSpec, frame []byte, now time.Time, keys *keySupply) (again bool, err error) {
	if r, ok, err := tx.Result(id); err != nil {
		return false, err
	} else if ok {
		if r.Peer != spec.Peer || !slices.Equal(r.Command, commandLine(spec.Request)) {
			return false, fmt.Errorf("command id %s is already used by another command (%s on %s)", id, strings.Join(r.Command, " "), r.Peer)
		}
		return true, nil
	}
	peer, ok, err := tx.Peer(spec.Peer)
	if err != nil {
		return false, err
	}
	if !ok {
		if n.pairingArmed(tx, spec.Peer) {
			return false, fmt.Errorf("%w: %q has not answered; the other side must run `sealpost peer add` with the same code, and its agent must be running", ErrNotPaired, spec.Peer)
		}
		return false, fmt.Errorf("no peer named %q: add it with `sealpost peer add %s --address ADDRESS`", spec.Peer, spec.Peer)
	}
	r := keystore.Result{CommandID: id, Peer: spec.Peer, Command: commandLine(spec.Request), Request: spec.Request.Name, Status: StatusQueued, Sent: now}
	if err := n.openStreamIn(tx, peer.Fingerprint, id, spec.Request); err != nil {
		return false, err
	}
	// Queued orders the commands waiting for a session: they go out, and so run, in the
	// order they were issued.
	q := keystore.QueuedCommand{ID: id, Peer: peer.Fingerprint, Frame: frame, NotAfter: now.Add(spec.TTL), Queued: now}
	pkg, err := n.eng.Send(st, peer.Fingerprint, id, frame, q.NotAfter)
	switch {
	case errors.Is(err, session.ErrNoSession):
		if err := tx.PutQueued(q); err != nil {
			return false, err
		}
		if err := n.ensureHandshakeWith(tx, st, peer, false, keys); err != nil {
			return false, err
		}
	case err != nil:
		return false, err
	default:
		r.Status, r.Attempts, r.LastAttempt = StatusSent, 1, now
		if err := enqueue(tx, peer.Address, pkg); err != nil {
			return false, err
		}
	}
	if _, err := n.pruneResults(tx, resultsPrunedPerCommand); err != nil {
		return false, err
	}
	return false, tx.PutResult(r)
}

// SubmitMany is Submit for many commands at once (one command to many peers, say): it seals and
// queues them all in one transaction, a commit per submitManyBatch commands, and then mails them
// in one flush, over the transport's kept connections. It returns their ids, in the order of
// specs; each is idempotent per spec.ID as with Submit. An error in one spec (an unknown peer)
// fails its whole batch, and the batches before it stay submitted: the ids returned are those.
func (n *Node) SubmitMany(ctx context.Context, specs []RunSpec) ([]session.CommandID, error) {
	ids, err := n.submitMany(ctx, specs)
	if errors.Is(err, ErrNotPaired) && !n.serving.Load() && len(ids) == 0 {
		// A peer's PAIR answer may be waiting in our mailbox (as in Run): read it, then try again.
		if _, perr := n.Pump(ctx, false, 0); perr == nil {
			ids, err = n.submitMany(ctx, specs)
		}
	}
	return ids, err
}

func (n *Node) submitMany(ctx context.Context, specs []RunSpec) ([]session.CommandID, error) {
	ids := make([]session.CommandID, 0, len(specs))
	now := n.now()
	for start := 0; start < len(specs); start += submitManyBatch {
		batch := specs[start:min(start+submitManyBatch, len(specs))]
		type prepared struct {
			id    session.CommandID
			spec  RunSpec
			frame []byte
		}
		prep := make([]prepared, 0, len(batch))
		for _, spec := range batch {
			id := spec.ID
			if id.IsZero() {
				if _, err := rand.Read(id[:]); err != nil {
					return ids, err
				}
			}
			if spec.TTL <= 0 {
				spec.TTL = 24 * time.Hour
			}
			spec.Request.Sent = now
			if err := withStream(&spec.Request); err != nil {
				return ids, err
			}
			frame, err := encodeRequest(spec.Request)
			if err != nil {
				return ids, err
			}
			prep = append(prep, prepared{id, spec, frame})
		}
		// Peers without a session get a handshake, whose RSA key is slow to make: they are made
		// here, in parallel and before the transaction, which would otherwise hold the state's
		// one writer for minutes when a controller first meets a large fleet.
		keys, err := n.handshakeKeys(ctx, batch)
		if err != nil {
			return ids, err
		}
		if err := n.update(func(tx *keystore.Tx, st TxStore) error {
			for _, p := range prep {
				if _, err := n.submitIn(tx, st, p.id, p.spec, p.frame, now, keys); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return ids, err
		}
		for _, p := range prep {
			ids = append(ids, p.id)
		}
	}
	if err := n.Flush(ctx); err != nil {
		n.log.Warn("commands queued; mailing them failed and will be retried", "op", "flush", "count", len(ids), "err", err)
		return ids, fmt.Errorf("%w: %v", ErrNotMailed, err)
	}
	return ids, nil
}

// submitManyBatch bounds the commands SubmitMany seals in one transaction, so that the agent's
// receiving goes on between batches of a fan-out to a large fleet.
const submitManyBatch = 200

func commandLine(r commands.Request) []string {
	switch r.Name {
	case "exec":
		return r.Argv
	case commands.CmdStream:
		// Which command's stream it asks about: results shows it, and a refusal finds it.
		if r.Done {
			return []string{r.Name, r.Of, "done"}
		}
		return []string{r.Name, r.Of, "resend"}
	}
	return []string{r.Name}
}

// ensureHandshake starts a handshake with peer unless one is already under way and not overdue
// (force starts one unless one was started just now).
func (n *Node) ensureHandshake(tx *keystore.Tx, st TxStore, peer keystore.Peer, force bool) error {
	return n.ensureHandshakeWith(tx, st, peer, force, nil)
}

// ensureHandshakeWith is ensureHandshake taking the handshake's keys from keys when it has some
// (made ahead, see handshakeKeys).
func (n *Node) ensureHandshakeWith(tx *keystore.Tx, st TxStore, peer keystore.Peer, force bool, keys *keySupply) error {
	ids, err := st.SessionsOf(peer.Fingerprint)
	if err != nil {
		return err
	}
	now := n.now()
	for _, id := range ids {
		s, ok, err := st.Session(id)
		if err != nil {
			return err
		}
		if !ok || s.Role != session.Initiator {
			continue
		}
		age := now.Sub(time.UnixMilli(s.Created))
		if s.Status == session.Initializing && age < n.opts.HandshakeTimeout && (!force || age < time.Minute) {
			return nil
		}
	}
	// Older unanswered handshakes go: the peer keeps only its newest few, so answering an old
	// one late would confirm a session the peer has already dropped.
	for _, id := range ids {
		if s, ok, err := st.Session(id); err != nil {
			return err
		} else if ok && s.Role == session.Initiator && s.Status == session.Initializing {
			if err := st.DeleteSession(id); err != nil {
				return err
			}
		}
	}
	pkg, sid, err := n.eng.StartSessionWith(st, peer.Fingerprint, keys.take())
	if err != nil {
		return err
	}
	n.emit(Event{Kind: EventSession, Peer: peer.Name, Status: "Initializing", Detail: "outbound session " + sid.String()[:8]})
	return enqueue(tx, peer.Address, pkg)
}

// sendQueued sends the commands that waited for a session, and sends every pending command again
// under the new session.
func (n *Node) sendQueued(tx *keystore.Tx, st TxStore, peer keystore.Peer) error {
	var items []keystore.QueuedCommand // in the order they were issued
	if err := tx.QueuedFor(peer.Fingerprint, func(q keystore.QueuedCommand) error {
		items = append(items, q)
		return nil
	}); err != nil {
		return err
	}
	pending, err := tx.PendingOf(peer.Fingerprint)
	if err != nil {
		return err
	}
	for _, p := range pending {
		pkg, err := n.eng.Retry(st, p)
		if err != nil {
			return err
		}
		if err := n.markSent(tx, p); err != nil {
			return err
		}
		if err := enqueue(tx, peer.Address, pkg); err != nil {
			return err
		}
	}
	for _, q := range items {
		if err := tx.DeleteQueued(q.ID); err != nil {
			return err
		}
		if !q.NotAfter.After(n.now()) {
			if err := n.recordResult(tx, q.ID, func(r *keystore.Result) { r.Status = StatusLocalExpired }); err != nil {
				return err
			}
			continue
		}
		pkg, err := n.eng.Send(st, peer.Fingerprint, q.ID, q.Frame, q.NotAfter)
		if err != nil {
			return err
		}
		if err := n.markSent(tx, q.ID); err != nil {
			return err
		}
		if err := enqueue(tx, peer.Address, pkg); err != nil {
			return err
		}
	}
	return nil
}
