package session_test

// One test per row of THREATS.md that the protocol layer decides. Each reject row asserts the
// reject invariant through mustReject: an error wrapping the expected reason, no outcome, no
// reply, and the receiver's state unchanged byte for byte.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/session"
)

// samples returns one package of every type, each with a receiver ready to accept it.
type sample struct {
	name string
	pkg  []byte
	to   *node
}

func samples(t *testing.T) []sample {
	a, b := pair(t)
	cmd := send(t, a, b, 1, "uptime")
	// A separate pair for the answer types, so that the receiver still has them pending.
	a2, b2 := pair(t)
	resp := execute(t, b2, send(t, a2, b2, 1, "uptime"))
	a3, b3 := pair(t)
	out, err := b3.eng.Receive(b3.st, send(t, a3, b3, 1, "x"))
	if err != nil {
		t.Fatal(err)
	}
	errPkg, err := b3.eng.Fail(b3.st, out.Ticket, session.CodeDenied, "not allowed")
	if err != nil {
		t.Fatal(err)
	}
	a4, b4 := pair(t)
	req, _, err := a4.eng.StartSession(a4.st, b4.fp())
	if err != nil {
		t.Fatal(err)
	}
	a5, b5 := pair(t)
	req5, _, err := a5.eng.StartSession(a5.st, b5.fp())
	if err != nil {
		t.Fatal(err)
	}
	hs, err := b5.eng.Receive(b5.st, req5)
	if err != nil {
		t.Fatal(err)
	}
	return []sample{
		{"COMMAND", cmd, b},
		{"RESPONSE", resp, a2},
		{"ERROR", errPkg, a3},
		{"INIT_REQ", req, b4},
		{"INIT_RESP", hs.Reply, a5},
	}
}

func flip(pkg []byte, off int, mask byte) []byte {
	c := bytes.Clone(pkg)
	c[off] ^= mask
	return c
}

func TestThreat01HeaderByteFlipped(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			for off := range session.HeaderSize {
				for _, mask := range []byte{0x01, 0x80} {
					mustReject(t, s.to, flip(s.pkg, off, mask), nil)
				}
			}
		})
	}
}

func TestThreat02BodyTagSignatureByteFlipped(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			for off := session.HeaderSize; off < len(s.pkg); off++ {
				mustReject(t, s.to, flip(s.pkg, off, 0x01), session.ErrAuth)
			}
		})
	}
}

func TestThreat03TruncatedOrExtended(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			for n := range len(s.pkg) {
				mustReject(t, s.to, s.pkg[:n], session.ErrMalformed)
			}
			mustReject(t, s.to, append(bytes.Clone(s.pkg), 0), session.ErrMalformed)
			var pe *session.ParseError
			_, err := session.Parse(s.pkg[:len(s.pkg)-1])
			if !errors.As(err, &pe) || pe.Error() == "" {
				t.Fatalf("Parse(truncated) error = %v, want a *ParseError with a message", err)
			}
		})
	}
}

func TestThreat04DuplicateCommandRunsOnce(t *testing.T) {
	a, b := pair(t)
	pkg := send(t, a, b, 1, "date")
	resp := execute(t, b, pkg)

	// The very same mail again, at once: no second execution, and nothing sent (the answer just
	// went out), with no state change.
	before := b.st.Snapshot()
	out, err := b.eng.Receive(b.st, pkg)
	if err != nil || out.Kind != session.Replied || !out.Duplicate || out.Reply != nil {
		t.Fatalf("duplicate: Receive = %v, %v (duplicate %v, reply %d bytes); want replied with nothing", out.Kind, err, out.Duplicate, len(out.Reply))
	}
	if b.st.Snapshot() != before {
		t.Fatal("duplicate changed the responder's state")
	}
	// Past the resend interval the same mail gets the cached response, unchanged.
	b.clock.Advance(session.DefaultResendInterval)
	out, err = b.eng.Receive(b.st, pkg)
	if err != nil || out.Kind != session.Replied || !bytes.Equal(out.Reply, resp) {
		t.Fatalf("duplicate: Receive = %v, %v (reply equal: %v); want replied with the cached response", out.Kind, err, bytes.Equal(out.Reply, resp))
	}
	// A retry by the requester (new sequence number, same command id): answered from the ledger.
	retry, err := a.eng.Retry(a.st, cmdID(1))
	if err != nil {
		t.Fatal(err)
	}
	out, err = b.eng.Receive(b.st, retry)
	if err != nil || out.Kind != session.Replied {
		t.Fatalf("retry: Receive = %v, %v; want replied from the ledger", out.Kind, err)
	}
	if o := deliver(t, a, out.Reply); string(o.Payload) != "ok:date" {
		t.Fatalf("retry answered %q, want the recorded response", o.Payload)
	}
}

func TestThreat05ReplayAfterEpochOrSessionMoved(t *testing.T) {
	a, b := pair(t)
	c1 := send(t, a, b, 1, "one")
	deliver(t, a, execute(t, b, c1))
	deliver(t, a, execute(t, b, send(t, a, b, 2, "two"))) // confirms the child; epoch 0 is gone
	mustReject(t, b, c1, session.ErrUnknownEpoch)

	c3 := send(t, a, b, 3, "three")
	deliver(t, a, execute(t, b, c3))
	handshake(t, a, b)
	deliver(t, a, execute(t, b, send(t, a, b, 4, "four"))) // confirms the new session
	mustReject(t, b, c3, session.ErrUnknownSession)
}

func TestThreat06ReplayAfterNotAfter(t *testing.T) {
	a, b := pair(t)
	c1 := send(t, a, b, 1, "one")
	resp := execute(t, b, c1)
	b.clock.Advance(2 * time.Hour) // the command's lifetime was one hour
	// Still in the ledger: the recorded answer, never a second run (and never "expired", row 33).
	if out, err := b.eng.Receive(b.st, c1); err != nil || out.Kind != session.Replied || !bytes.Equal(out.Reply, resp) {
		t.Fatalf("replay past not-after: Receive = %v, %v; want the recorded answer", out.Kind, err)
	}
	// Once the ledger has let the entry go, the replay is below nothing it can answer: rejected.
	if _, err := b.st.PurgeLedger(b.clock.now.Add(-session.LedgerRetention + time.Hour)); err != nil {
		t.Fatal(err)
	}
	mustReject(t, b, c1, session.ErrReplay)
	deliver(t, a, resp)
}

func TestThreat07ReorderedCommands(t *testing.T) {
	a, b := pair(t)
	c1, c2 := send(t, a, b, 1, "one"), send(t, a, b, 2, "two")
	r2 := execute(t, b, c2)
	r1 := execute(t, b, c1)
	if o := deliver(t, a, r2); string(o.Payload) != "ok:two" {
		t.Fatalf("response 2 = %q", o.Payload)
	}
	if o := deliver(t, a, r1); string(o.Payload) != "ok:one" {
		t.Fatalf("response 1 = %q", o.Payload)
	}
	for _, c := range [][]byte{c1, c2} {
		if out, err := b.eng.Receive(b.st, c); err == nil && out.Kind == session.Execute {
			t.Fatal("a redelivered command ran again")
		}
	}
	roundTrip(t, a, b, 3)
}

func TestThreat08SequenceBelowWindow(t *testing.T) {
	a, b := pair(t)
	c1 := send(t, a, b, 1, "one")
	r1 := execute(t, b, c1) // its response is lost
	_ = r1
	// Many more commands under the same epoch (every response lost): the first MaxChildren run,
	// the rest are refused with a rekey request; all of them move the window on.
	for i := 2; i <= session.WindowSize+10; i++ {
		out, err := b.eng.Receive(b.st, send(t, a, b, i, "more"))
		if err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		if out.Kind == session.Execute {
			if _, err := b.eng.Complete(b.st, out.Ticket, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	mustReject(t, b, c1, session.ErrReplay)

	// The requester retries under a new session; the ledger answers without running it again.
	handshake(t, a, b)
	retry, err := a.eng.Retry(a.st, cmdID(1))
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.eng.Receive(b.st, retry)
	if err != nil || out.Kind != session.Replied {
		t.Fatalf("retry: Receive = %v, %v; want replied from the ledger", out.Kind, err)
	}
	if o := deliver(t, a, out.Reply); string(o.Payload) != "ok:one" {
		t.Fatalf("retried response = %q", o.Payload)
	}
}

// TestBurstReorderedByTheServer: a burst of commands that the mail server delivers in reverse
// order (as Postfix + Dovecot do in part, with several deliveries at once) is taken in whole: none
// is rejected as below the window, which would leave it to its retry, hours later.
func TestBurstReorderedByTheServer(t *testing.T) {
	a, b := pair(t)
	const burst = 600
	pkgs := make([][]byte, 0, burst)
	for i := 1; i <= burst; i++ {
		pkgs = append(pkgs, send(t, a, b, i, "burst"))
	}
	for i := len(pkgs) - 1; i >= 0; i-- {
		out, err := b.eng.Receive(b.st, pkgs[i])
		if err != nil {
			t.Fatalf("command %d of the burst, delivered %d places late: %v", i+1, len(pkgs)-1-i, err)
		}
		if out.Kind == session.Execute {
			if _, err := b.eng.Complete(b.st, out.Ticket, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestThreat09LostResponse(t *testing.T) {
	a, b := pair(t)
	execute(t, b, send(t, a, b, 1, "one")) // response lost
	o := roundTrip(t, a, b, 2)
	if o.Epoch != 1 {
		t.Fatalf("epoch after the second response = %d, want 1", o.Epoch)
	}
	for i := 3; i < 6; i++ {
		roundTrip(t, a, b, i)
	}
}

// Every response is lost, more times than the window of unconfirmed epochs holds: the commands
// past the window still run, and the first answer that gets through carries the null share, the
// authenticated request for a new handshake. After it, every command has run exactly once.
func TestThreat10ResponsesLostBeyondWindow(t *testing.T) {
	a, b := pair(t)
	runs := map[session.CommandID]int{}
	n := session.MaxChildren + 1
	var last []byte
	for i := 1; i <= n; i++ {
		out, err := b.eng.Receive(b.st, send(t, a, b, i, "x"))
		if err != nil || out.Kind != session.Execute {
			t.Fatalf("command %d: %v, %v; want execute (the window never refuses a command)", i, out.Kind, err)
		}
		runs[out.Command]++
		if last, err = b.eng.Complete(b.st, out.Ticket, []byte("done")); err != nil {
			t.Fatal(err)
		}
	}
	if st := bobSession(t, b); len(st.Children) != session.MaxChildren {
		t.Fatalf("responder holds %d children, want %d", len(st.Children), session.MaxChildren)
	}
	before := aliceSession(t, a, b)
	rekey := deliver(t, a, last) // the only answer that gets through
	if rekey.Kind != session.Delivered || !rekey.Rekey {
		t.Fatalf("answer past the window: %v rekey=%v; want delivered with a rekey request", rekey.Kind, rekey.Rekey)
	}
	if after := aliceSession(t, a, b); after.Current.ID != before.Current.ID {
		t.Fatal("the null share moved the initiator's epoch")
	}
	handshake(t, a, b)
	for _, id := range a.st.PendingIDs() {
		pkg, err := a.eng.Retry(a.st, id)
		if err != nil {
			t.Fatal(err)
		}
		out, err := b.eng.Receive(b.st, pkg)
		if err != nil {
			t.Fatal(err)
		}
		if out.Kind == session.Execute {
			runs[out.Command]++
			t.Fatalf("command %s ran again after the re-handshake", out.Command)
		}
		if got := deliver(t, a, out.Reply); got.Kind != session.Delivered || got.Rekey {
			t.Fatalf("answer under the new session: %v rekey=%v", got.Kind, got.Rekey)
		}
	}
	if len(a.st.PendingIDs()) != 0 {
		t.Fatalf("%d commands still pending", len(a.st.PendingIDs()))
	}
	for i := 1; i <= n; i++ {
		if runs[cmdID(i)] != 1 {
			t.Fatalf("command %d ran %d times, want 1", i, runs[cmdID(i)])
		}
	}
	roundTrip(t, a, b, n+1) // the new session rotates
}

// A backlog: 500 commands sent under one epoch before the responder reads any of them, as when
// it was away. Every one runs once; the responder never holds more than MaxChildren children;
// the answers, read in order, rotate the initiator once and ask for no handshake; and the next
// command confirms the child and deletes the rest.
func TestBacklogPastWindow(t *testing.T) {
	const n = 500
	a, b := pair(t)
	pkgs := make([][]byte, 0, n)
	for i := 1; i <= n; i++ {
		pkgs = append(pkgs, send(t, a, b, i, fmt.Sprint(i)))
	}
	start := aliceSession(t, a, b).Current
	replies := make([][]byte, 0, n)
	for _, pkg := range pkgs {
		replies = append(replies, execute(t, b, pkg))
		if st := bobSession(t, b); len(st.Children) > session.MaxChildren {
			t.Fatalf("responder holds %d children", len(st.Children))
		}
	}
	for i, r := range replies {
		out := deliver(t, a, r)
		if out.Kind != session.Delivered || out.Rekey || string(out.Payload) != fmt.Sprintf("ok:%d", i+1) {
			t.Fatalf("answer %d: %v rekey=%v %q", i+1, out.Kind, out.Rekey, out.Payload)
		}
	}
	if cur := aliceSession(t, a, b).Current; cur.Gen != start.Gen+1 {
		t.Fatalf("initiator at epoch gen %d after the backlog, want %d", cur.Gen, start.Gen+1)
	}
	if len(a.st.PendingIDs()) != 0 {
		t.Fatalf("%d commands still pending", len(a.st.PendingIDs()))
	}
	roundTrip(t, a, b, n+1)
	st := bobSession(t, b)
	if st.Current.Gen != start.Gen+1 || len(st.Children) != 1 {
		t.Fatalf("responder at gen %d with %d children after the next command; want gen %d and its one child", st.Current.Gen, len(st.Children), start.Gen+1)
	}
}

func aliceSession(t *testing.T, a, b *node) *session.State {
	t.Helper()
	ids, err := a.st.SessionsOf(b.fp())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if s, ok, _ := a.st.Session(id); ok && s.Role == session.Initiator && s.Status == session.Confirmed {
			return s
		}
	}
	t.Fatal("alice has no confirmed session")
	return nil
}

func TestThreat11TwoInFlightSupersededDeleted(t *testing.T) {
	a, b := pair(t)
	c1, c2 := send(t, a, b, 1, "one"), send(t, a, b, 2, "two")
	r1, r2 := execute(t, b, c1), execute(t, b, c2)
	st := bobSession(t, b)
	if len(st.Children) != 2 {
		t.Fatalf("responder holds %d children, want 2", len(st.Children))
	}
	parent, sibling := st.Current.ID, st.Children[1].ID
	deliver(t, a, r1)
	deliver(t, a, execute(t, b, send(t, a, b, 3, "three"))) // under r1's child: confirms it
	deliver(t, a, r2)
	st = bobSession(t, b)
	if st.Current.ID == parent || st.Current.Gen != 1 || len(st.Children) != 1 {
		t.Fatalf("responder holds epoch gen %d with %d children, want the confirmed child (gen 1) and its one child", st.Current.Gen, len(st.Children))
	}
	for _, e := range append([]session.Epoch{st.Current}, st.Children...) {
		if e.ID == parent || e.ID == sibling {
			t.Fatalf("superseded epoch %s survived", e.ID)
		}
	}
	roundTrip(t, a, b, 4)
}

func bobSession(t *testing.T, b *node) *session.State {
	t.Helper()
	for _, p := range []*node{b} {
		ids, _ := p.st.SessionsOf(fpOf(t, "alice"))
		for _, id := range ids {
			s, _, _ := p.st.Session(id)
			if s.Role == session.Responder && s.Status == session.Confirmed {
				return s
			}
		}
	}
	t.Fatal("no confirmed responder session")
	return nil
}

func fpOf(t *testing.T, name string) session.Fingerprint {
	seed := map[string]uint64{"alice": 1, "bob": 2}[name]
	id, err := session.NewIdentity(seededReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	return id.Fingerprint()
}

func TestThreat12ResponseReplayed(t *testing.T) {
	a, b := pair(t)
	r1 := execute(t, b, send(t, a, b, 1, "one"))
	deliver(t, a, r1)
	mustReject(t, a, r1, session.ErrReplay)
}

func TestThreat13TypeRelabelled(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			for typ := session.TypePair; typ <= session.TypeError; typ++ {
				if byte(typ) == s.pkg[5] {
					continue
				}
				c := bytes.Clone(s.pkg)
				c[5] = byte(typ)
				mustReject(t, s.to, c, nil)
			}
		})
	}
}

func TestThreat14ReflectedOrSpliced(t *testing.T) {
	a, b := pair(t)
	c1 := send(t, a, b, 1, "one")
	mustReject(t, a, c1, session.ErrNotForUs) // our own command mailed back to us
	r1 := execute(t, b, c1)
	mustReject(t, b, r1, session.ErrNotForUs)

	// Carol has her own session with bob. Alice's ciphertext under carol's header, and alice's
	// package relabelled as carol's, are both refused.
	carol := newNode(t, "carol", 3, b.clock, fixtures.NewMemStore(), session.Config{})
	pin(t, carol, b)
	handshake(t, carol, b)
	c2 := send(t, a, b, 2, "two")
	cc := send(t, carol, b, 1, "carol")
	spliced := append(bytes.Clone(cc[:session.HeaderSize]), c2[session.HeaderSize:]...)
	mustReject(t, b, spliced, session.ErrAuth)
	relabelled := bytes.Clone(c2)
	cfp := carol.fp()
	copy(relabelled[8:24], cfp[:])
	mustReject(t, b, relabelled, session.ErrUnknownSession)
}

// countingStore records which Store methods a Receive call used.
type countingStore struct {
	*fixtures.MemStore
	calls []string
}

func (c *countingStore) Peer(fp session.Fingerprint) (session.PinnedPeer, bool, error) {
	c.calls = append(c.calls, "Peer")
	return c.MemStore.Peer(fp)
}

func (c *countingStore) Session(id session.SessionID) (*session.State, bool, error) {
	c.calls = append(c.calls, "Session")
	return c.MemStore.Session(id)
}

func TestThreat16UnknownSenderOrRecipient(t *testing.T) {
	a, b := pair(t)
	cmd := send(t, a, b, 1, "x")
	req, _, err := a.eng.StartSession(a.st, b.fp())
	if err != nil {
		t.Fatal(err)
	}
	stranger := newNode(t, "mallory", 9, b.clock, fixtures.NewMemStore(), session.Config{})
	for _, pkg := range [][]byte{cmd, req} {
		// Unknown recipient: nothing is looked up at all.
		cs := &countingStore{MemStore: b.st}
		other := bytes.Clone(pkg)
		other[30] ^= 0xff
		if _, err := b.eng.Receive(cs, other); !errors.Is(err, session.ErrNotForUs) || len(cs.calls) != 0 {
			t.Fatalf("unknown recipient: err %v, store calls %v; want ErrNotForUs and none", err, cs.calls)
		}
		// Unknown sender: only the peer lookup, so no key, session or epoch was touched.
		cs = &countingStore{MemStore: b.st}
		forged := bytes.Clone(pkg)
		sfp := stranger.fp()
		copy(forged[8:24], sfp[:])
		if _, err := b.eng.Receive(cs, forged); !errors.Is(err, session.ErrUnknownPeer) || !slices.Equal(cs.calls, []string{"Peer"}) {
			t.Fatalf("unknown sender: err %v, store calls %v; want ErrUnknownPeer after one Peer lookup", err, cs.calls)
		}
		mustReject(t, b, forged, session.ErrUnknownPeer)
	}
}

func TestThreat17UnknownVersionSuiteFlags(t *testing.T) {
	for _, s := range samples(t) {
		t.Run(s.name, func(t *testing.T) {
			for _, v := range []byte{0, 2, 255} {
				c := bytes.Clone(s.pkg)
				c[4] = v
				mustReject(t, s.to, c, session.ErrMalformed)
				c = bytes.Clone(s.pkg)
				c[6] = v
				mustReject(t, s.to, c, session.ErrMalformed)
			}
			for bit := range 8 {
				mustReject(t, s.to, flip(s.pkg, 7, 1<<bit), session.ErrMalformed)
			}
		})
	}
}

func TestThreat18ForgedOrSplicedInitResp(t *testing.T) {
	a, b := pair(t)
	req, _, err := a.eng.StartSession(a.st, b.fp())
	if err != nil {
		t.Fatal(err)
	}
	hs, err := b.eng.Receive(b.st, req)
	if err != nil {
		t.Fatal(err)
	}
	resp := hs.Reply

	// Forged: the same bytes signed by someone else.
	mallory, _ := session.NewIdentity(seededReader(9))
	forged := bytes.Clone(resp)
	copy(forged[len(forged)-session.SigSize:], ed25519.Sign(mallory.PrivateKey(), forged[:len(forged)-session.SigSize]))
	mustReject(t, a, forged, session.ErrAuth)

	// Spliced: the RSA ciphertext of another handshake. Even re-signed by bob's own key (a
	// responder bug, since an attacker cannot sign), the OAEP label binds it to its INIT_REQ.
	a2, b2 := pair(t)
	req2, _, err := a2.eng.StartSession(a2.st, b2.fp())
	if err != nil {
		t.Fatal(err)
	}
	hs2, err := b2.eng.Receive(b2.st, req2)
	if err != nil {
		t.Fatal(err)
	}
	unsigned := bytes.Clone(resp)
	copy(unsigned[session.HeaderSize:session.HeaderSize+384], hs2.Reply[session.HeaderSize:session.HeaderSize+384])
	mustReject(t, a, unsigned, session.ErrAuth)
	resigned := bytes.Clone(unsigned)
	copy(resigned[len(resigned)-session.SigSize:], ed25519.Sign(b.id.PrivateKey(), resigned[:len(resigned)-session.SigSize]))
	if _, err := a.eng.Receive(a.st, resigned); !errors.Is(err, session.ErrHandshakeAborted) {
		t.Fatalf("spliced RSA ciphertext: %v, want ErrHandshakeAborted", err)
	}
	// The genuine INIT_RESP no longer completes (the handshake was aborted) and the old
	// session keeps working.
	mustReject(t, a, resp, session.ErrUnknownSession)
	roundTrip(t, a, b, 1)
}

func TestThreat19ReplayedInitReq(t *testing.T) {
	a, b := pair(t)
	req, _, err := a.eng.StartSession(a.st, b.fp())
	if err != nil {
		t.Fatal(err)
	}
	hs, err := b.eng.Receive(b.st, req)
	if err != nil {
		t.Fatal(err)
	}
	mustReject(t, b, req, session.ErrReplay) // the same INIT_REQ again
	if _, err := a.eng.Receive(a.st, hs.Reply); err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a, b, 1) // confirms the new session
	old := req
	req2, _, _ := a.eng.StartSession(a.st, b.fp())
	a.clock.Advance(time.Second)
	if _, err := b.eng.Receive(b.st, req2); err != nil {
		t.Fatal(err)
	}
	mustReject(t, b, old, session.ErrReplay) // an older handshake than one already answered
	roundTrip(t, a, b, 2)                    // the current session keeps working
}

// TestThreat19InitReqReusesSessionID: a pinned peer (or whoever replays its INIT_REQ to another
// node) names a session id this node already holds: its own initiator session to that peer, or
// a session with somebody else. Rejected as a replay before any RSA/ML-KEM work, state unchanged;
// the sessions keep working.
func TestThreat19InitReqReusesSessionID(t *testing.T) {
	a, b := pair(t)
	c := &clock{now: t0}
	carol := newNode(t, "carol", 3, c, fixtures.NewMemStore(), session.Config{})
	carol.clock = a.clock
	pin(t, a, carol)
	pin(t, carol, a)
	withCarol := handshake(t, carol, a) // a is carol's responder
	withBob := session.SessionID{}
	{
		ids, err := a.st.SessionsOf(b.fp())
		if err != nil || len(ids) != 1 {
			t.Fatalf("alice's sessions with bob: %v, %v", ids, err)
		}
		withBob = ids[0] // alice is bob's initiator
	}
	for _, reuse := range []struct {
		name string
		id   session.SessionID
	}{{"alice's own session to bob", withBob}, {"alice's session with carol", withCarol}} {
		t.Run(reuse.name, func(t *testing.T) {
			// bob's INIT_REQ draws its session id first from its randomness. It is made on a
			// copy of bob's state: the id is bob's too (a session's id is shared by its two ends).
			forger := b.withConfig(t, session.Config{Rand: io.MultiReader(bytes.NewReader(reuse.id[:]), seededReader(99))})
			req, sid, err := forger.eng.StartSession(b.st.Clone(), a.fp())
			if err != nil || sid != reuse.id {
				t.Fatalf("StartSession = %s, %v; want session %s", sid, err, reuse.id)
			}
			mustReject(t, a, req, session.ErrReplay)
		})
	}
	roundTrip(t, a, b, 1)
	if out := roundTrip(t, carol, a, 1); out.Kind != session.Delivered {
		t.Fatalf("carol's command: %v", out.Kind)
	}
}

func TestThreat20PairingWrongCode(t *testing.T) {
	c := &clock{now: t0}
	a := newNode(t, "alice", 1, c, fixtures.NewMemStore(), session.Config{})
	b := newNode(t, "bob", 2, c, fixtures.NewMemStore(), session.Config{})
	pa, err := a.eng.ArmPairing(a.st, session.PairRequest{Name: "bob", Address: b.addr, Code: "AAAA-BBBB", Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.eng.ArmPairing(b.st, session.PairRequest{Name: "alice", Address: a.addr, Code: "CCCC-DDDD", Attempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		if _, err := a.eng.Receive(a.st, pb); !errors.Is(err, session.ErrPairingCode) {
			t.Fatalf("alice, attempt %d: %v, want ErrPairingCode", attempt, err)
		}
		if _, err := b.eng.Receive(b.st, pa); !errors.Is(err, session.ErrPairingCode) {
			t.Fatalf("bob, attempt %d: %v, want ErrPairingCode", attempt, err)
		}
	}
	for _, n := range []*node{a, b} {
		if _, ok, _ := n.st.Pairing(map[*node]string{a: b.addr, b: a.addr}[n]); ok {
			t.Fatalf("%s: pairing still armed after its attempt limit", n.name)
		}
		if _, ok, _ := n.st.Peer(map[*node]session.Fingerprint{a: b.fp(), b: a.fp()}[n]); ok {
			t.Fatalf("%s: a peer was pinned with the wrong code", n.name)
		}
	}
	// Disarmed: even the right code is refused now, without touching state.
	mustReject(t, a, pb, session.ErrUnknownPeer)
}

func TestPairingByCodeAndFingerprint(t *testing.T) {
	for _, byCode := range []bool{true, false} {
		c := &clock{now: t0}
		a := newNode(t, "alice", 1, c, fixtures.NewMemStore(), session.Config{})
		b := newNode(t, "bob", 2, c, fixtures.NewMemStore(), session.Config{})
		code, err := session.GenerateCode(seededReader(5))
		if err != nil {
			t.Fatal(err)
		}
		ra := session.PairRequest{Name: "bob", Address: b.addr}
		rb := session.PairRequest{Name: "alice", Address: "ALICE@example.test"}
		if byCode {
			ra.Code, rb.Code = code, " "+code[:4]+code[5:]+" " // spacing and separators do not matter
		} else {
			ra.Fingerprint, rb.Fingerprint = b.fp(), a.fp()
		}
		pa, err := a.eng.ArmPairing(a.st, ra)
		if err != nil {
			t.Fatal(err)
		}
		// bob arms late: alice's PAIR arrives first and is refused, bob's own PAIR then pairs
		// alice, whose reply pairs bob.
		mustReject(t, b, pa, session.ErrUnknownPeer)
		pb, err := b.eng.ArmPairing(b.st, rb)
		if err != nil {
			t.Fatal(err)
		}
		out, err := a.eng.Receive(a.st, pb)
		if err != nil || out.Kind != session.Paired || out.Reply == nil {
			t.Fatalf("alice Receive(PAIR) = %v, %v; want paired with a reply", out.Kind, err)
		}
		out2, err := b.eng.Receive(b.st, out.Reply)
		if err != nil || out2.Kind != session.Paired || out2.Reply != nil {
			t.Fatalf("bob Receive(PAIR reply) = %v, %v; want paired without reply", out2.Kind, err)
		}
		if _, ok, _ := a.st.Pairing(b.addr); ok {
			t.Fatal("pairing key kept after pairing")
		}
		handshake(t, a, b)
		roundTrip(t, a, b, 1)
	}
}

func TestThreat21ExpiredOrTTLAboveCap(t *testing.T) {
	t.Run("past not-after", func(t *testing.T) {
		a, b := pair(t)
		pkg := send(t, a, b, 1, "late")
		b.clock.Advance(2 * time.Hour)
		assertAuthError(t, a, b, pkg, session.CodeExpired)
	})
	t.Run("TTL above the responder's cap", func(t *testing.T) {
		a, b := pair(t)
		b = b.withConfig(t, session.Config{MaxTTL: 30 * time.Minute})
		assertAuthError(t, a, b, send(t, a, b, 1, "long"), session.CodeExpired)
	})
}

func TestThreat22ClockSkew(t *testing.T) {
	a, b := pair(t)
	ahead := &clock{now: b.clock.now.Add(time.Hour)}
	a2 := newNode(t, "alice", 1, ahead, a.st, session.Config{})
	out := assertAuthError(t, a2, b, send(t, a2, b, 1, "x"), session.CodeClock)
	if !out.Err.Time.Equal(b.clock.now.Truncate(time.Millisecond)) {
		t.Fatalf("clock error carries %v, want the responder's clock %v", out.Err.Time, b.clock.now)
	}
}

// assertAuthError checks that b answers pkg with an authenticated error of the given code without
// running anything, that the refusal is recorded as the command's fate (a replay and a retry get
// the same error, whatever the clocks say by then: THREATS row 34), and that a opens it.
func assertAuthError(t *testing.T, a, b *node, pkg []byte, code session.ErrorCode) session.Outcome {
	t.Helper()
	out, err := b.eng.Receive(b.st, pkg)
	if err != nil || out.Kind != session.Replied || out.Err == nil || out.Err.Code != code || out.Reply == nil {
		t.Fatalf("Receive = %v, %v, %v; want replied with %v", out.Kind, out.Err, err, code)
	}
	le, ok, err := b.st.Ledger(a.fp(), out.Command)
	if err != nil || !ok || le.State != session.Done || le.Err == nil || le.Err.Code != code {
		t.Fatalf("ledger after a %v refusal: %+v, %v, %v; want it recorded as the command's answer", code, le, ok, err)
	}
	got, err := a.eng.Receive(a.st, out.Reply)
	if err != nil || got.Kind != session.Failed || got.Err.Code != code {
		t.Fatalf("requester Receive(ERROR) = %v, %v; want failed with %v", got.Kind, err, code)
	}
	return got
}

func TestThreat25CrashAfterExecuting(t *testing.T) {
	a, b := pair(t)
	pkg := send(t, a, b, 1, "reboot")
	out, err := b.eng.Receive(b.st, pkg)
	if err != nil || out.Kind != session.Execute {
		t.Fatal(out.Kind, err)
	}
	// Accepted, not yet started: a redelivery is not run a second time.
	mustReject(t, b, pkg, session.ErrReplay)
	if err := b.eng.Start(b.st, out.Ticket); err != nil {
		t.Fatal(err)
	}
	// Crash after the start: no Complete. A redelivery and a retry are not run again.
	mustReject(t, b, pkg, session.ErrReplay)
	retry, _ := a.eng.Retry(a.st, cmdID(1))
	mustReject(t, b, retry, session.ErrReplay)

	// On restart the node answers every Executing entry "outcome unknown".
	var replies [][]byte
	for _, le := range b.st.LedgerEntries() {
		if le.State == session.Executing {
			r, err := b.eng.Fail(b.st, le.Ticket, session.CodeOutcomeUnknown, "agent restarted while the command ran")
			if err != nil {
				t.Fatal(err)
			}
			replies = append(replies, r)
		}
	}
	if len(replies) != 1 {
		t.Fatalf("%d executing entries, want 1", len(replies))
	}
	got, err := a.eng.Receive(a.st, replies[0])
	if err != nil || got.Kind != session.Failed || got.Err.Code != session.CodeOutcomeUnknown {
		t.Fatalf("requester: %v, %v; want failed outcome-unknown", got.Kind, err)
	}
	// Even a later retry is answered from the ledger, never run.
	out, err = b.eng.Receive(b.st, retry)
	if err != nil || out.Kind != session.Replied || out.Err == nil || out.Err.Code != session.CodeOutcomeUnknown {
		t.Fatalf("retry after recovery: %v, %v; want the recorded outcome-unknown", out.Kind, err)
	}
}

func TestThreat26RestoredStateFloor(t *testing.T) {
	a, b := pair(t)
	roundTrip(t, a, b, 1)
	backup := b.st.Clone()
	var later [][]byte
	for i := 2; i <= 4; i++ {
		pkg := send(t, a, b, i, "after backup")
		later = append(later, pkg)
		deliver(t, a, execute(t, b, pkg))
	}
	pendingPkg := send(t, a, b, 5, "in flight at restore")
	execute(t, b, pendingPkg) // ran, response lost

	// The state is restored from the backup and the node knows (keystore detects it); it sets
	// the floor to the detection time. Nothing sent before the floor may run again.
	b.clock.Advance(time.Minute)
	restored := &node{name: "bob", id: b.id, addr: b.addr, st: backup, clock: b.clock}
	restored = restored.withConfig(t, session.Config{Floor: b.clock.now})
	for _, pkg := range append(later, pendingPkg) {
		out, err := restored.eng.Receive(restored.st, pkg)
		if err == nil && out.Kind == session.Execute {
			t.Fatalf("a command from before the restore ran again")
		}
	}
	// After a new handshake, a retry of the in-flight command is answered "outcome unknown";
	// new commands created once the floor plus the allowed skew has passed run.
	handshake(t, a, restored)
	retry, err := a.eng.Retry(a.st, cmdID(5))
	if err != nil {
		t.Fatal(err)
	}
	out, err := restored.eng.Receive(restored.st, retry)
	if err != nil || out.Err == nil || out.Err.Code != session.CodeOutcomeUnknown {
		t.Fatalf("retry after restore: %v, %v, %v; want outcome-unknown", out.Kind, out.Err, err)
	}
	a.clock.Advance(session.DefaultSkew)
	roundTrip(t, a, restored, 6)
}

func TestThreat27DeniedIsAuthenticated(t *testing.T) {
	a, b := pair(t)
	pkg := send(t, a, b, 1, "rm -rf /")
	out, err := b.eng.Receive(b.st, pkg)
	if err != nil || out.Kind != session.Execute {
		t.Fatal(out.Kind, err)
	}
	denied, err := b.eng.Fail(b.st, out.Ticket, session.CodeDenied, "rm is not in bob's allowlist for alice")
	if err != nil {
		t.Fatal(err)
	}
	// The denial is sealed: a flipped byte does not open.
	mustReject(t, a, flip(denied, len(denied)-1, 1), session.ErrAuth)
	got, err := a.eng.Receive(a.st, denied)
	if err != nil || got.Kind != session.Failed || got.Err.Code != session.CodeDenied {
		t.Fatalf("Receive(denied) = %v, %v", got.Kind, err)
	}
	retry, _ := a.eng.Send(a.st, b.fp(), cmdID(1), []byte("rm -rf /"), a.clock.now.Add(time.Hour))
	out, err = b.eng.Receive(b.st, retry)
	if err != nil || out.Kind != session.Replied || out.Err == nil || out.Err.Code != session.CodeDenied {
		t.Fatalf("same command id again: %v, %v; want the recorded denial, not an execution", out.Kind, err)
	}
}

// TestWindowFromSmallerBuild: a session stored when the window held 256 numbers decodes with
// them in place (the newest), and the numbers further back read as not seen.
func TestWindowFromSmallerBuild(t *testing.T) {
	var w session.Window
	if err := json.Unmarshal([]byte(`{"Highest":300,"Bits":[1,0,0,9223372036854775808]}`), &w); err != nil {
		t.Fatalf("a 256-number window does not decode: %v", err)
	}
	if w.Highest != 300 || w.Bits[0] != 1 || w.Bits[3] != 1<<63 || w.Bits[4] != 0 {
		t.Fatalf("decoded %d %v, want the four words in place", w.Highest, w.Bits[:5])
	}
}
