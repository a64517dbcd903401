package session

import (
	"bytes"
	"crypto/ecdh"
	"fmt"
	"time"
)

// The responder's side of commands (docs/PROTOCOL.md, "Commands, responses and rotation" and
// "Receiving"). The responder holds the confirmed epoch plus the unconfirmed children its responses
// created; a command under a child confirms it and deletes the parent and the other children. The
// ledger, keyed by peer and command id, makes every command run at most once whatever the mail
// does.

func (e *Engine) receiveCommand(st Store, p *Package, raw []byte) (Outcome, error) {
	s, ok, err := st.Session(p.Session)
	if err != nil {
		return Outcome{}, err
	}
	if !ok || s.Role != Responder || s.Peer != p.Sender {
		return Outcome{}, ErrUnknownSession
	}
	ep, child := s.Current, -1
	if p.Epoch != s.Current.ID {
		for i := range s.Children {
			if s.Children[i].ID == p.Epoch {
				ep, child = s.Children[i], i
				break
			}
		}
		if child < 0 {
			return Outcome{}, ErrUnknownEpoch
		}
	}
	plain, err := open(p, raw, &ep.Secret)
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: COMMAND", err)
	}
	share, payload, err := decodeInner(plain)
	if err != nil {
		return Outcome{}, err
	}
	now := e.nowMS()

	// The ledger comes before time: a command that ran is answered with its real result however
	// late a transmission of it arrives and whatever the clocks say (THREATS row 33).
	seen := s.Window.check(p.Seq)
	if seen == seqTooOld {
		return Outcome{}, fmt.Errorf("%w: sequence %d is below the replay window", ErrReplay, p.Seq)
	}
	le, ok, err := st.Ledger(p.Sender, p.Command)
	if err != nil {
		return Outcome{}, err
	}
	if seen == seqSeen {
		// The very same package again (server redelivery or a replay): the recorded answer
		// bytes, if the command is done and they are still recorded, at most once per
		// ResendInterval (THREATS row 38); else drop it. Only the resend time changes.
		if !ok || le.State != Done || le.Answer == nil {
			// Not answered yet, or its answer was undeliverable (ReplaceResponse): the
			// requester's retry, a new transmission, gets the answer.
			return Outcome{}, fmt.Errorf("%w: sequence %d already seen", ErrReplay, p.Seq)
		}
		out := Outcome{Kind: Replied, Peer: p.Sender, Session: s.ID, Command: p.Command, Epoch: s.Current.Gen, Err: le.Err, Duplicate: true}
		if le.Sent != 0 && now >= le.Sent && now-le.Sent < e.resend.Milliseconds() {
			return out, nil // answered within the interval already: nothing goes out
		}
		le.Sent = now
		out.Reply = bytes.Clone(le.Answer)
		return out, st.PutLedger(le)
	}
	if ok && le.State != Done {
		// Accepted or running under another transmission; its answer will come.
		return Outcome{}, fmt.Errorf("%w: command %s is executing", ErrReplay, p.Command)
	}

	hc := hashPackage(raw)
	t := &Ticket{
		Peer: p.Sender, Session: s.ID, Epoch: ep.ID, Seq: p.Seq, Command: p.Command,
		CommandHash: hc, ResponseSecret: responseSecret(&ep.Secret, hc[:]), PeerShare: share, NotAfter: p.NotAfter,
	}
	out := Outcome{Kind: Replied, Peer: p.Sender, Session: s.ID, Command: p.Command, Epoch: s.Current.Gen}

	// The package is authentic and new: accept its sequence number, and let it confirm its epoch
	// and session. Every answer from here on is recorded: a command id has one fate, which both
	// sides agree on (THREATS row 34).
	s.Window.mark(p.Seq)
	if child >= 0 {
		s.Current, s.Children = s.Children[child], nil
	}
	if s.Status == Initializing {
		s.Status = Confirmed
		if err := e.deleteOtherSessions(st, s.Peer, Responder, s.ID); err != nil {
			return Outcome{}, err
		}
	}
	out.Epoch = s.Current.Gen

	switch {
	case ok && le.Err != nil:
		// Answered before, with an error: the same error, sealed for this transmission.
		out.Err = le.Err
		if out.Reply, err = e.sealError(t, le.Err); err != nil {
			return Outcome{}, err
		}
		return out, st.PutSession(s)
	case ok:
		// Ran before: the recorded response, sealed for this transmission (and rotating).
		if out.Reply, err = e.sealResponse(s, t, le.Payload); err != nil {
			return Outcome{}, err
		}
		out.Epoch = s.Current.Gen
		return out, st.PutSession(s)
	}
	if err := st.PutSession(s); err != nil {
		return Outcome{}, err
	}
	switch {
	case e.floor.Load() != noFloor && p.Created < e.floor.Load()+e.skew.Milliseconds():
		// Issued before our state was restored from an older copy, by a clock that may run up
		// to the allowed skew ahead of ours (THREATS row 32): it may have run already.
		out.Err = &RemoteError{Code: CodeOutcomeUnknown, Time: time.UnixMilli(now), Detail: "the responder's state was restored from an older copy; this command may or may not have run"}
	case p.Created > now+e.skew.Milliseconds():
		out.Err = &RemoteError{Code: CodeClock, Time: time.UnixMilli(now), Detail: fmt.Sprintf("created-at is %s ahead of the responder's clock", time.Duration(p.Created-now)*time.Millisecond)}
	case p.NotAfter-p.Created > e.ttl.Milliseconds():
		out.Err = &RemoteError{Code: CodeExpired, Time: time.UnixMilli(now), Detail: fmt.Sprintf("lifetime above the responder's cap of %s", e.ttl)}
	case now > p.NotAfter:
		out.Err = &RemoteError{Code: CodeExpired, Time: time.UnixMilli(now), Detail: "not-after has passed"}
	}
	if out.Err != nil {
		if out.Reply, err = e.sealError(t, out.Err); err != nil {
			return Outcome{}, err
		}
		return out, st.PutLedger(&LedgerEntry{Peer: t.Peer, Command: t.Command, State: Done, NotAfter: e.keepUntil(p), Answer: out.Reply, Err: out.Err, Sent: now})
	}
	// A full window of children never refuses a command: its response carries the null share.
	if err := st.PutLedger(&LedgerEntry{Peer: t.Peer, Command: t.Command, State: Accepted, NotAfter: t.NotAfter, Ticket: t, Payload: bytes.Clone(payload), AcceptedAt: now}); err != nil {
		return Outcome{}, err
	}
	out.Kind, out.Ticket, out.Payload = Execute, t, bytes.Clone(payload)
	return out, nil
}

// Start records that an accepted command is handed to its program now: from here on a crash
// leaves it answered outcome-unknown instead of run after the restart. A caller that queues
// accepted commands calls it, and commits, just before each runs.
func (e *Engine) Start(st Store, t *Ticket) error {
	le, ok, err := st.Ledger(t.Peer, t.Command)
	if err != nil {
		return err
	}
	if !ok || le.State != Accepted {
		return fmt.Errorf("command %s is not waiting to run", t.Command)
	}
	le.State, le.Payload = Executing, nil
	return st.PutLedger(le)
}

// keepUntil is the not-after under which a refusal is recorded: the command's own, but no later
// than the TTL cap from now, so that a lifetime refused as too long cannot keep its entry forever.
func (e *Engine) keepUntil(p *Package) int64 {
	return min(p.NotAfter, e.nowMS()+e.ttl.Milliseconds())
}

// Complete seals the response to an executed command, records it in the ledger, and creates the
// child epoch its share makes possible. The returned package goes to the peer's pinned address.
func (e *Engine) Complete(st Store, t *Ticket, payload []byte) ([]byte, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: response of %d bytes, the limit is %d", ErrTooLarge, len(payload), MaxPayload)
	}
	if err := e.checkExecuting(st, t); err != nil {
		return nil, err
	}
	s, ok, err := st.Session(t.Session)
	if err != nil {
		return nil, err
	}
	if !ok || s.Role != Responder {
		s = nil // the session is gone (re-handshake): answer without rotating
	}
	pkg, err := e.sealResponse(s, t, payload)
	if err != nil {
		return nil, err
	}
	if s != nil {
		if err := st.PutSession(s); err != nil {
			return nil, err
		}
	}
	return pkg, st.PutLedger(&LedgerEntry{Peer: t.Peer, Command: t.Command, State: Done, NotAfter: t.NotAfter, Answer: pkg, Payload: bytes.Clone(payload), Sent: e.nowMS()})
}

// sealResponse seals payload as the RESPONSE to transmission t with a fresh share, and adds the
// resulting child epoch to s when t came under s's current epoch. When s already holds
// MaxChildren children of that epoch the response carries the null share instead and creates no
// child. s may be nil.
func (e *Engine) sealResponse(s *State, t *Ticket, payload []byte) ([]byte, error) {
	h := e.answerHeader(TypeResponse, t)
	if s != nil && s.Current.ID == t.Epoch && len(s.Children) >= MaxChildren {
		var null [32]byte
		buf, _ := encodeInner(null[:], payload)
		return sealInto(buf, &h, &t.ResponseSecret, e.rand)
	}
	var seed [32]byte
	if err := e.random(seed[:]); err != nil {
		return nil, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		return nil, err
	}
	buf, _ := encodeInner(priv.PublicKey().Bytes(), payload)
	pkg, err := sealInto(buf, &h, &t.ResponseSecret, e.rand)
	if err != nil {
		return nil, err
	}
	if s == nil || s.Current.ID != t.Epoch {
		return pkg, nil
	}
	// A share that is not a valid X25519 point yields no child; the initiator, which made it,
	// cannot derive one either, so both stay on the current epoch.
	if dh, err := x25519(seed[:], t.PeerShare[:]); err == nil {
		hr := hashPackage(pkg)
		c := childSecret(dh, &t.ResponseSecret, t.CommandHash[:], hr[:])
		s.Children = append(s.Children, Epoch{ID: epochID(&c), Secret: c, Gen: s.Current.Gen + 1})
	}
	return pkg, nil
}

// Fail answers an Execute outcome with an authenticated error instead of running it (code
// CodeDenied for policy, CodeBadCommand for an undecodable payload, CodeExpired for one whose
// not-after passed while it waited its turn) or after a crash left it Executing
// (CodeOutcomeUnknown). The error becomes the ledger's answer for every duplicate.
func (e *Engine) Fail(st Store, t *Ticket, code ErrorCode, detail string) ([]byte, error) {
	switch code {
	case CodeDenied, CodeBadCommand, CodeOutcomeUnknown, CodeExpired:
	default:
		// The other codes are never recorded as a command's final answer (docs/PROTOCOL.md
		// section 8); an unknown one would leave the requester unable to read it, forever.
		return nil, fmt.Errorf("Fail: code %v is not a final answer (want denied, bad-command or outcome-unknown)", code)
	}
	if err := e.checkExecuting(st, t); err != nil {
		return nil, err
	}
	re := &RemoteError{Code: code, Time: e.now(), Detail: detail}
	pkg, err := e.sealError(t, re)
	if err != nil {
		return nil, err
	}
	return pkg, st.PutLedger(&LedgerEntry{Peer: t.Peer, Command: t.Command, State: Done, NotAfter: t.NotAfter, Answer: pkg, Err: re, Sent: e.nowMS()})
}

func (e *Engine) checkExecuting(st Store, t *Ticket) error {
	le, ok, err := st.Ledger(t.Peer, t.Command)
	if err != nil {
		return err
	}
	if !ok || (le.State != Executing && le.State != Accepted) {
		return fmt.Errorf("command %s is not accepted or executing", t.Command)
	}
	return nil
}

func (e *Engine) answerHeader(typ Type, t *Ticket) Header {
	now := e.nowMS()
	return Header{
		Type: typ, Sender: e.fp, Recipient: t.Peer, Session: t.Session, Epoch: t.Epoch, Seq: t.Seq,
		Command: t.Command, Created: now, NotAfter: max(now, t.NotAfter),
	}
}

func (e *Engine) sealError(t *Ticket, re *RemoteError) ([]byte, error) {
	h := e.answerHeader(TypeError, t)
	buf, _ := encodeError(re)
	return sealInto(buf, &h, &t.ResponseSecret, e.rand)
}

// ReplaceResponse swaps the recorded response payload of a command that ran (ledger entry Done
// with a payload) for another, when the response could never be delivered: the mail server
// refused it for good, typically for its size. The sealed bytes recorded for duplicates are
// dropped (they are the refused mail), so a duplicate of the transmission that ran gets no answer,
// and every other transmission (the requester's retry) gets the new payload sealed for it. The
// command does not run again. It changes nothing else, and fails for any other ledger entry.
func (e *Engine) ReplaceResponse(st Store, peer Fingerprint, cmd CommandID, payload []byte) error {
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: response of %d bytes, the limit is %d", ErrTooLarge, len(payload), MaxPayload)
	}
	le, ok, err := st.Ledger(peer, cmd)
	if err != nil {
		return err
	}
	if !ok || le.State != Done || le.Err != nil {
		return fmt.Errorf("command %s has no recorded response to replace", cmd)
	}
	le.Payload, le.Answer = bytes.Clone(payload), nil
	return st.PutLedger(le)
}
