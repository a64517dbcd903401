package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// Result statuses. queued and sent are not final; every other status is.
const (
	StatusQueued       = "queued"             // waiting for a session with the peer
	StatusSent         = "sent"               // mailed, no answer yet
	StatusDone         = "done"               // ran; ExitCode is the program's
	StatusFailed       = "failed"             // an answer that could not be read, or a local failure
	StatusLocalExpired = "expired-unanswered" // not-after passed with no answer
)

// Final reports whether a result status will not change any more.
func Final(status string) bool { return status != StatusQueued && status != StatusSent && status != "" }

// PeerSpec is what `sealpost peer add` asks for.
type PeerSpec struct {
	Name        string   `json:"name"`
	Address     string   `json:"address"`
	Code        string   `json:"code,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Allow       []string `json:"allow,omitempty"`
}

// PeerAdded tells the operator what happened and what to do on the other side.
type PeerAdded struct {
	Name          string   `json:"name"`
	GeneratedCode string   `json:"generated_code,omitempty"`
	Allow         []string `json:"allow,omitempty"`
	Pairing       bool     `json:"pairing"`
}

// AddPeer arms pairing with a peer (by code, generating one when none is given, or by
// fingerprint) and mails our PAIR package; for a peer already pinned with neither code nor
// fingerprint given, it only updates the allow list.
func (n *Node) AddPeer(ctx context.Context, spec PeerSpec) (PeerAdded, error) {
	res := PeerAdded{Name: spec.Name}
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/ \t\n") {
		return res, fmt.Errorf("peer name %q: use a short name without spaces or slashes", spec.Name)
	}
	allow, err := commands.ResolveAllow(spec.Allow)
	if err != nil {
		return res, err
	}
	res.Allow = allow
	var fp session.Fingerprint
	if spec.Fingerprint != "" {
		if fp, err = session.ParseFingerprint(spec.Fingerprint); err != nil {
			return res, err
		}
	}
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		if len(allow) > 0 {
			// --allow adds to what the peer may already run; `peer remove` starts over.
			old, err := n.policyFor(tx, spec.Name)
			if err != nil {
				return err
			}
			for _, a := range old.Allow {
				if !slices.Contains(allow, a) {
					allow = append(allow, a)
				}
			}
			slices.Sort(allow)
			res.Allow = allow
			if err := n.putPolicy(tx, spec.Name, allow); err != nil {
				return err
			}
		}
		existing, pinned, err := tx.Peer(spec.Name)
		if err != nil {
			return err
		}
		if pinned && spec.Code == "" && spec.Fingerprint == "" {
			if spec.Address != "" && !strings.EqualFold(spec.Address, existing.Address) {
				return fmt.Errorf("peer %q is pinned at %s; to change its address run `sealpost peer remove %s` and pair again", spec.Name, existing.Address, spec.Name)
			}
			return nil
		}
		if spec.Address == "" {
			return fmt.Errorf("peer add %s: --address is required to pair", spec.Name)
		}
		if pinned {
			return fmt.Errorf("peer %q is already paired; run `sealpost peer remove %s` first to pair again", spec.Name, spec.Name)
		}
		code := spec.Code
		if code == "" && fp.IsZero() {
			if code, err = session.GenerateCode(rand.Reader); err != nil {
				return err
			}
			res.GeneratedCode = code
		}
		pkg, err := n.eng.ArmPairing(st, session.PairRequest{Name: spec.Name, Address: spec.Address, Code: code, Fingerprint: fp})
		if err != nil {
			return err
		}
		res.Pairing = true
		return enqueue(tx, strings.ToLower(strings.TrimSpace(spec.Address)), pkg)
	})
	if err != nil {
		return res, err
	}
	if res.Pairing {
		if err := n.Flush(ctx); err != nil {
			return res, fmt.Errorf("pairing armed, but mailing it failed (it stays queued): %w", err)
		}
	}
	return res, nil
}

// RemovePeer forgets a peer: its pinned key, sessions, pending and queued commands, allow list
// and any armed pairing. Its results stay in the history.
func (n *Node) RemovePeer(ctx context.Context, name string) error {
	var ended []session.CommandID // commands failed here, whose waiters are woken after the commit
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		found := false
		var fp session.Fingerprint // the peer's, when pinned
		var pairAddrs []string     // where a pairing mail for it would go
		if p, ok, err := tx.Peer(name); err != nil {
			return err
		} else if ok {
			found = true
			fp, pairAddrs = p.Fingerprint, append(pairAddrs, p.Address)
			ids, err := tx.SessionsOf(p.Fingerprint)
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := tx.DeleteSession(id); err != nil {
					return err
				}
			}
			cmds, err := tx.PendingOf(p.Fingerprint)
			if err != nil {
				return err
			}
			for _, c := range cmds {
				if err := tx.DeletePending(c); err != nil {
					return err
				}
				if err := n.recordResult(tx, c, func(r *keystore.Result) { r.Status, r.Error = StatusFailed, "peer removed before it answered" }); err != nil {
					return err
				}
				ended = append(ended, c)
			}
			// Commands still waiting for a session with it, too.
			var waiting []string
			if err := tx.ForEachConfig(prefixQueue, func(key string, val []byte) error {
				var q queued
				if err := json.Unmarshal(val, &q); err == nil && q.Peer == p.Fingerprint {
					waiting = append(waiting, key)
				}
				return nil
			}); err != nil {
				return err
			}
			for _, key := range waiting {
				if err := tx.DeleteConfig(key); err != nil {
					return err
				}
				if c, err := session.ParseCommandID(strings.TrimPrefix(key, prefixQueue)); err == nil {
					if err := n.recordResult(tx, c, func(r *keystore.Result) { r.Status, r.Error = StatusFailed, "peer removed before it answered" }); err != nil {
						return err
					}
					ended = append(ended, c)
				}
			}
			if err := tx.DeletePeer(name); err != nil {
				return err
			}
		}
		var armed []string
		if err := tx.ForEachPairing(func(addr string, blob []byte) error {
			if pr, err := decode[session.Pairing](blob, "pairing"); err == nil && pr.Name == name {
				armed = append(armed, addr)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, addr := range armed {
			found = true
			if err := tx.DeletePairing(addr); err != nil {
				return err
			}
		}
		if !found {
			return fmt.Errorf("no peer named %q (see `sealpost peer list`)", name)
		}
		// Mail still queued for the peer (its pairing, handshakes, commands, answers) goes
		// nowhere now. Sealed mail names its recipient; pairing mail only has the address, which
		// another peer may share, so only pairing mail goes by address.
		pairAddrs = append(pairAddrs, armed...)
		queued, err := tx.Outbox()
		if err != nil {
			return err
		}
		for _, it := range queued {
			pkg, err := session.Parse(it.Package)
			if err != nil {
				continue
			}
			if pkg.Type == session.TypePair && slices.Contains(pairAddrs, it.To) || pkg.Type != session.TypePair && fp != (session.Fingerprint{}) && pkg.Recipient == fp {
				if err := tx.DeleteOutbox(it.ID); err != nil {
					return err
				}
			}
		}
		return tx.DeleteConfig(prefixPolicy + name)
	})
	if err == nil {
		n.notify(ended...)
	}
	return err
}

func (n *Node) putPolicy(tx *keystore.Tx, name string, allow []string) error {
	b, err := json.Marshal(allow)
	if err != nil {
		return err
	}
	return tx.PutConfig(prefixPolicy+name, b)
}

func (n *Node) policyFor(tx *keystore.Tx, name string) (commands.Policy, error) {
	p := commands.Policy{Peer: name}
	b, ok, err := tx.Config(prefixPolicy + name)
	if err != nil || !ok {
		return p, err
	}
	return p, json.Unmarshal(b, &p.Allow)
}

// PeerInfo is one row of `sealpost peer list`.
type PeerInfo struct {
	Name        string       `json:"name"`
	Address     string       `json:"address"`
	Fingerprint string       `json:"fingerprint,omitempty"`
	Status      string       `json:"status"` // pairing, paired, Initializing, Confirmed
	Epoch       uint64       `json:"epoch"`
	LastSeen    time.Time    `json:"last_seen,omitzero"`
	Allow       []string     `json:"allow,omitempty"`
	Outbound    *SessionInfo `json:"outbound,omitempty"` // we command the peer
	Inbound     *SessionInfo `json:"inbound,omitempty"`  // the peer commands us
}

// SessionInfo describes one session with a peer.
type SessionInfo struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Epoch  uint64 `json:"epoch"`
}

// Peers lists pinned peers and armed pairings.
func (n *Node) Peers(ctx context.Context) ([]PeerInfo, error) {
	var out []PeerInfo
	err := n.view(func(tx *keystore.Tx, st TxStore) error {
		var err error
		out, err = n.peersIn(tx, st)
		return err
	})
	return out, err
}

// peersIn lists the peers as tx sees them, sorted by name.
func (n *Node) peersIn(tx *keystore.Tx, st TxStore) ([]PeerInfo, error) {
	var out []PeerInfo
	peers, err := tx.Peers()
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		pi := PeerInfo{Name: p.Name, Address: p.Address, Fingerprint: session.Fingerprint(p.Fingerprint).String(), Status: "paired", LastSeen: p.LastSeen}
		pol, err := n.policyFor(tx, p.Name)
		if err != nil {
			return nil, err
		}
		pi.Allow = pol.Allow
		ids, err := st.SessionsOf(p.Fingerprint)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			s, ok, err := st.Session(id)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			si := &SessionInfo{ID: s.ID.String(), Status: s.Status.String(), Epoch: s.Current.Gen}
			switch {
			case s.Role == session.Initiator && (pi.Outbound == nil || s.Status == session.Confirmed):
				pi.Outbound = si
			case s.Role == session.Responder && (pi.Inbound == nil || s.Status == session.Confirmed):
				pi.Inbound = si
			}
		}
		if s := cmp(pi.Outbound, pi.Inbound); s != nil {
			pi.Status, pi.Epoch = s.Status, s.Epoch
		}
		out = append(out, pi)
	}
	err = tx.ForEachPairing(func(addr string, blob []byte) error {
		pr, err := decode[session.Pairing](blob, "pairing")
		if err != nil {
			return err
		}
		pol, err := n.policyFor(tx, pr.Name)
		if err != nil {
			return err
		}
		out = append(out, PeerInfo{Name: pr.Name, Address: addr, Status: "pairing", Allow: pol.Allow})
		return nil
	})
	slices.SortFunc(out, func(a, b PeerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

func cmp(a, b *SessionInfo) *SessionInfo {
	if a != nil {
		return a
	}
	return b
}

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

type queued struct {
	Peer     session.Fingerprint `json:"peer"`
	Frame    []byte              `json:"frame"`
	NotAfter time.Time           `json:"not_after"`
	// Queued orders the commands waiting for a session: they go out, and so run, in the order
	// they were issued (records written before it had this field come first).
	Queued time.Time `json:"queued,omitzero"`
}

type retryState struct {
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
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
	frame, err := encodeRequest(spec.Request)
	if err != nil {
		return id, err
	}
	again := false
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		if r, ok, err := tx.Result(id); err != nil {
			return err
		} else if ok {
			if r.Peer != spec.Peer || !slices.Equal(r.Command, commandLine(spec.Request)) {
				return fmt.Errorf("command id %s is already used by another command (%s on %s)", id, strings.Join(r.Command, " "), r.Peer)
			}
			again = true
			return nil
		}
		peer, ok, err := tx.Peer(spec.Peer)
		if err != nil {
			return err
		}
		if !ok {
			if n.pairingArmed(tx, spec.Peer) {
				return fmt.Errorf("%w: %q has not answered; the other side must run `sealpost peer add` with the same code, and its agent must be running", ErrNotPaired, spec.Peer)
			}
			return fmt.Errorf("no peer named %q: add it with `sealpost peer add %s --address ADDRESS`", spec.Peer, spec.Peer)
		}
		r := keystore.Result{CommandID: id, Peer: spec.Peer, Command: commandLine(spec.Request), Status: StatusQueued, Sent: now}
		q := queued{Peer: peer.Fingerprint, Frame: frame, NotAfter: now.Add(spec.TTL), Queued: now}
		pkg, err := n.eng.Send(st, peer.Fingerprint, id, frame, q.NotAfter)
		switch {
		case errors.Is(err, session.ErrNoSession):
			b, _ := json.Marshal(q)
			if err := tx.PutConfig(prefixQueue+id.String(), b); err != nil {
				return err
			}
			if err := n.ensureHandshake(tx, st, peer, false); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			r.Status = StatusSent
			if err := n.markSent(tx, id); err != nil {
				return err
			}
			if err := enqueue(tx, peer.Address, pkg); err != nil {
				return err
			}
		}
		return tx.PutResult(r)
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

func commandLine(r commands.Request) []string {
	if r.Name == "exec" {
		return r.Argv
	}
	return []string{r.Name}
}

func (n *Node) pairingArmed(tx *keystore.Tx, name string) bool {
	armed := false
	_ = tx.ForEachPairing(func(_ string, blob []byte) error {
		if pr, err := decode[session.Pairing](blob, "pairing"); err == nil && pr.Name == name {
			armed = true
		}
		return nil
	})
	return armed
}

// configJSON reads the JSON record under key into v; a record that does not decode is an error
// naming it, never a silent zero value.
func configJSON(tx *keystore.Tx, key string, v any) (bool, error) {
	b, ok, err := tx.Config(key)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("stored %s does not decode: %w", key, err)
	}
	return true, nil
}

func (n *Node) markSent(tx *keystore.Tx, id session.CommandID) error {
	var rs retryState
	if _, err := configJSON(tx, prefixRetry+id.String(), &rs); err != nil {
		return err
	}
	rs.Last, rs.Count = n.now(), rs.Count+1
	b, _ := json.Marshal(rs)
	return tx.PutConfig(prefixRetry+id.String(), b)
}

// ensureHandshake starts a handshake with peer unless one is already under way and not overdue
// (force starts one unless one was started just now).
func (n *Node) ensureHandshake(tx *keystore.Tx, st TxStore, peer keystore.Peer, force bool) error {
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
	pkg, sid, err := n.eng.StartSession(st, peer.Fingerprint)
	if err != nil {
		return err
	}
	n.emit(Event{Kind: EventSession, Peer: peer.Name, Status: "Initializing", Detail: "outbound session " + sid.String()[:8]})
	return enqueue(tx, peer.Address, pkg)
}

// sendQueued sends the commands that waited for a session, and sends every pending command again
// under the new session.
func (n *Node) sendQueued(tx *keystore.Tx, st TxStore, peer keystore.Peer) error {
	type item struct {
		id session.CommandID
		q  queued
	}
	var items []item
	if err := tx.ForEachConfig(prefixQueue, func(key string, val []byte) error {
		var q queued
		if err := json.Unmarshal(val, &q); err != nil {
			return err
		}
		id, err := session.ParseCommandID(strings.TrimPrefix(key, prefixQueue))
		if err != nil {
			return err
		}
		if q.Peer == peer.Fingerprint {
			items = append(items, item{id, q})
		}
		return nil
	}); err != nil {
		return err
	}
	slices.SortStableFunc(items, func(a, b item) int { return a.q.Queued.Compare(b.q.Queued) })
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
	for _, it := range items {
		if err := tx.DeleteConfig(prefixQueue + it.id.String()); err != nil {
			return err
		}
		if !it.q.NotAfter.After(n.now()) {
			if err := n.recordResult(tx, it.id, func(r *keystore.Result) { r.Status = StatusLocalExpired }); err != nil {
				return err
			}
			continue
		}
		pkg, err := n.eng.Send(st, peer.Fingerprint, it.id, it.q.Frame, it.q.NotAfter)
		if err != nil {
			return err
		}
		if err := n.markSent(tx, it.id); err != nil {
			return err
		}
		if err := n.recordResult(tx, it.id, func(r *keystore.Result) { r.Status = StatusSent }); err != nil {
			return err
		}
		if err := enqueue(tx, peer.Address, pkg); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) recordResult(tx *keystore.Tx, id session.CommandID, fn func(*keystore.Result)) error {
	r, ok, err := tx.Result(id)
	if err != nil {
		return err
	}
	if !ok {
		r = keystore.Result{CommandID: id, Peer: "?", Sent: n.now()}
	}
	fn(&r)
	if Final(r.Status) {
		r.Finished = n.now()
		if err := tx.DeleteConfig(prefixRetry + id.String()); err != nil {
			return err
		}
	}
	return tx.PutResult(r)
}

// Maintain sends overdue commands again (with doubling intervals), restarts overdue handshakes,
// gives up on commands past their lifetime, and purges expired ledger entries.
func (n *Node) Maintain(ctx context.Context) error {
	now := n.now()
	if n.unsettled.Swap(false) {
		if err := n.Recover(ctx); err != nil {
			n.unsettled.Store(true)
			n.log.Warn("recovery of stuck commands failed; will retry", "op", "recover", "err", err)
		}
	}
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		if _, err := tx.PurgeLedger(now.Add(-session.LedgerRetention)); err != nil {
			return err
		}
		if err := n.expireQueued(tx, now); err != nil {
			return err
		}
		peers, err := tx.Peers()
		if err != nil {
			return err
		}
		for _, peer := range peers {
			ids, err := tx.PendingOf(peer.Fingerprint)
			if err != nil {
				return err
			}
			for _, raw := range ids {
				id := session.CommandID(raw)
				p, ok, err := st.Pending(id)
				if err != nil || !ok {
					return err
				}
				if now.After(time.UnixMilli(p.NotAfter).Add(session.DefaultSkew)) {
					if err := st.DeletePending(id); err != nil {
						return err
					}
					if err := n.recordResult(tx, id, func(r *keystore.Result) { r.Status = StatusLocalExpired }); err != nil {
						return err
					}
					continue
				}
				var rs retryState
				if _, err := configJSON(tx, prefixRetry+id.String(), &rs); err != nil {
					return err
				}
				if now.Sub(rs.Last) < backoff(n.opts.RetryAfter, 6*time.Hour, rs.Count) {
					continue
				}
				if rs.Count >= 3 {
					// Three transmissions without an answer: the peer may have lost the session
					// (a restored database, a lost rekey request). Open a new one alongside; the
					// pending commands go out again under it once it is confirmed.
					if err := n.ensureHandshake(tx, st, peer, false); err != nil {
						return err
					}
				}
				pkg, err := n.eng.Retry(st, id)
				if errors.Is(err, session.ErrNoSession) {
					if err := n.ensureHandshake(tx, st, peer, false); err != nil {
						return err
					}
					continue
				}
				if err != nil {
					return err
				}
				if err := n.markSent(tx, id); err != nil {
					return err
				}
				if err := enqueue(tx, peer.Address, pkg); err != nil {
					return err
				}
			}
			// A handshake nobody answered is started again.
			if err := n.handshakeOverdue(tx, st, peer); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return n.flushSoon(ctx)
}

// expireQueued gives up on commands that waited for a session past their lifetime.
func (n *Node) expireQueued(tx *keystore.Tx, now time.Time) error {
	var expired []session.CommandID
	if err := tx.ForEachConfig(prefixQueue, func(key string, val []byte) error {
		var q queued
		if err := json.Unmarshal(val, &q); err != nil {
			return err
		}
		if !q.NotAfter.After(now) {
			id, err := session.ParseCommandID(strings.TrimPrefix(key, prefixQueue))
			if err != nil {
				return err
			}
			expired = append(expired, id)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, id := range expired {
		if err := tx.DeleteConfig(prefixQueue + id.String()); err != nil {
			return err
		}
		if err := n.recordResult(tx, id, func(r *keystore.Result) {
			r.Status, r.Error = StatusLocalExpired, "no session with the peer before the command's lifetime ended"
		}); err != nil {
			return err
		}
	}
	return nil
}

// handshakeOverdue restarts a handshake nobody answered; ensureHandshake leaves a young one be.
func (n *Node) handshakeOverdue(tx *keystore.Tx, st TxStore, peer keystore.Peer) error {
	ids, err := st.SessionsOf(peer.Fingerprint)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if s, ok, err := st.Session(id); err != nil {
			return err
		} else if ok && s.Role == session.Initiator && s.Status == session.Initializing {
			return n.ensureHandshake(tx, st, peer, false)
		}
	}
	return nil
}

// Result returns the record of one command.
func (n *Node) Result(id session.CommandID) (keystore.Result, bool, error) {
	var r keystore.Result
	var ok bool
	err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		r, ok, err = tx.Result(id)
		return err
	})
	return r, ok, err
}

// Results lists every command this node sent, oldest first.
func (n *Node) Results(ctx context.Context) ([]keystore.Result, error) {
	var rs []keystore.Result
	err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		rs, err = tx.Results()
		return err
	})
	return rs, err
}

// Wait blocks until the command's result is final or ctx ends. Without an agent serving this
// node it reads the mailbox itself; under Serve it waits for the serving loop. progress, if not
// nil, is called while waiting.
func (n *Node) Wait(ctx context.Context, id session.CommandID, progress func(keystore.Result)) (keystore.Result, error) {
	ch, unsubscribe := n.subscribe(id)
	defer unsubscribe()
	for {
		r, ok, err := n.Result(id)
		if err != nil {
			return r, err
		}
		if !ok {
			return r, fmt.Errorf("no command %s", id)
		}
		if Final(r.Status) {
			return r, nil
		}
		if progress != nil {
			progress(r)
		}
		if n.serving.Load() {
			select {
			case <-ch:
			case <-ctx.Done():
				return r, ctx.Err()
			case <-time.After(n.waitRecheck):
			}
			continue
		}
		if err := n.Maintain(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("maintenance failed", "op", "maintain", "err", err)
		}
		if _, err := n.Pump(ctx, true, n.waitBound()); err != nil {
			if ctx.Err() != nil {
				r, _, _ = n.Result(id)
				return r, ctx.Err()
			}
			return r, err
		}
	}
}

// waitBound is pumpWait, shortened so that an outbox item due for another try is not held up
// by a quiet mailbox (a controller without an agent has no other loop that flushes).
func (n *Node) waitBound() time.Duration {
	d := n.pumpWait()
	_ = n.store.View(func(tx *keystore.Tx) error {
		items, err := tx.Outbox()
		for _, it := range items {
			d = min(d, max(time.Until(it.NextAttempt), 50*time.Millisecond))
		}
		return err
	})
	return d
}

// pumpWait bounds one blocking mailbox read so retries are not held up by a quiet mailbox.
func (n *Node) pumpWait() time.Duration {
	return min(30*time.Second, max(n.opts.RetryAfter, 200*time.Millisecond))
}

// subscribe returns a channel that notify signals when id's result becomes final, and the
// function that forgets it.
func (n *Node) subscribe(id session.CommandID) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.waitMu.Lock()
	n.waiters[id] = append(n.waiters[id], ch)
	n.waitMu.Unlock()
	return ch, func() {
		n.waitMu.Lock()
		defer n.waitMu.Unlock()
		n.waiters[id] = slices.DeleteFunc(n.waiters[id], func(c chan struct{}) bool { return c == ch })
		if len(n.waiters[id]) == 0 {
			delete(n.waiters, id)
		}
	}
}

func (n *Node) notify(ids ...session.CommandID) {
	n.waitMu.Lock()
	defer n.waitMu.Unlock()
	for _, id := range ids {
		for _, ch := range n.waiters[id] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
