package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// lab is two nodes, alice (controller) and bob (agent), on an embedded relay.
type lab struct {
	t      testing.TB
	ctx    context.Context
	relay  *mailbox.Relay
	dirs   map[string]string
	users  map[string]string
	alice  *Node
	bob    *Node
	bobRun context.CancelFunc
	bobEnd chan struct{}
	// clocks, when set for a node, is its clock from its next open on.
	clocks map[string]func() time.Time
}

func newLab(t *testing.T) *lab { return newLabTB(t) }

func newLabTB(t testing.TB) *lab { return newLabRelay(t, mailbox.RelayConfig{}) }

// newLabRelay is newLab on a relay configured by cfg (its users are the lab's).
func newLabRelay(t testing.TB, cfg mailbox.RelayConfig) *lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	l := &lab{t: t, ctx: ctx, dirs: map[string]string{}, users: map[string]string{"alice@example.test": "pw-a", "bob@example.test": "pw-b", "carol@example.test": "pw-c"}}
	var err error
	cfg.Users = l.users
	l.relay, err = mailbox.StartRelay(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.relay.Close() })
	for _, name := range []string{"alice", "bob", "carol"} {
		l.dirs[name] = filepath.Join(t.TempDir(), name)
	}
	l.alice = l.open("alice", nil, true)
	l.bob = l.open("bob", nil, true)
	l.pair()
	return l
}

func (l *lab) transport(name string, wrap func(mailbox.Transport) mailbox.Transport) mailbox.Transport {
	addr := name + "@example.test"
	tr, err := mailbox.New(mailbox.Config{Address: addr, IMAPAddr: l.relay.IMAPAddr(), SMTPAddr: l.relay.SMTPAddr(),
		Username: addr, Password: l.users[addr], TLS: "none", AllowPlaintextAuth: true, CommandTimeout: 5 * time.Second})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { tr.Close() })
	if wrap != nil {
		return wrap(tr)
	}
	return tr
}

func (l *lab) open(name string, wrap func(mailbox.Transport) mailbox.Transport, init bool) *Node {
	l.t.Helper()
	addr := name + "@example.test"
	opts := Options{Dir: l.dirs[name], Transport: l.transport(name, wrap), RetryAfter: time.Hour, Now: l.clocks[name]}
	var n *Node
	var err error
	if init {
		n, err = Init(opts, MailConfig{Address: addr, IMAP: l.relay.IMAPAddr(), SMTP: l.relay.SMTPAddr(), TLS: "none"})
	} else {
		n, err = Open(opts)
	}
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { n.Close() })
	return n
}

// serveBob runs bob's agent until stopBob.
func (l *lab) serveBob() {
	ctx, cancel := context.WithCancel(l.ctx)
	l.bobRun, l.bobEnd = cancel, make(chan struct{})
	go func() { defer close(l.bobEnd); l.bob.Serve(ctx, false) }()
}

func (l *lab) stopBob() {
	if l.bobRun != nil {
		l.bobRun()
		<-l.bobEnd
		l.bobRun = nil
	}
}

func (l *lab) pair() {
	l.t.Helper()
	added, err := l.alice.AddPeer(l.ctx, PeerSpec{Name: "bob", Address: "bob@example.test"})
	if err != nil {
		l.t.Fatal(err)
	}
	script := filepath.Join(l.t.TempDir(), "count")
	counter := filepath.Join(l.t.TempDir(), "runs")
	os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+counter+"\n"), 0o755)
	countFile = counter
	countScript = script
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Address: "alice@example.test", Code: added.GeneratedCode, Allow: []string{"echo", script}}); err != nil {
		l.t.Fatal(err)
	}
	for range 3 {
		l.alice.Pump(l.ctx, false, 0)
		l.bob.Pump(l.ctx, false, 0)
	}
	ps, _ := l.alice.Peers(l.ctx)
	if len(ps) != 1 || ps[0].Status != "paired" {
		l.t.Fatalf("alice's peers after pairing: %+v", ps)
	}
}

var countFile, countScript string

func runs(t *testing.T) int {
	b, _ := os.ReadFile(countFile)
	return len(b) / len("ran\n")
}

func (l *lab) run(argv ...string) Result {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
	defer cancel()
	r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: argv}}, true, nil)
	if err != nil {
		l.t.Fatalf("run %v: %v (result %+v)", argv, err, r)
	}
	return r
}

// TestCrashAfterExecutingNode: a crash between the "executing" commit and the run leaves the
// command answered "outcome unknown" after restart and never run (THREATS row 25, node level).
func TestCrashAfterExecutingNode(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	if r := l.run("echo", "warm-up"); r.Status != StatusDone {
		t.Fatalf("warm-up: %+v", r)
	}
	l.stopBob()

	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{countScript}}})
	if err != nil {
		t.Fatal(err)
	}
	// The process "dies" after the Executing commit, before the run: the command is neither run
	// nor answered.
	l.bob.beforeExecute = func() bool { return true }
	if _, err := l.bob.Pump(l.ctx, false, 0); err != nil {
		t.Fatal(err)
	}
	l.bob.Close()
	l.bob = l.open("bob", nil, false) // restart
	l.serveBob()
	ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
	defer cancel()
	r, err := l.alice.Wait(ctx, id, nil)
	if err != nil || r.Status != "outcome-unknown" {
		t.Fatalf("after the crash: %+v, %v; want outcome-unknown", r, err)
	}
	if n := runs(t); n != 0 {
		t.Fatalf("the command ran %d times after a crash before its run; want 0", n)
	}
}

// flakySend fails the first n sends as a temporarily unavailable SMTP server would.
type flakySend struct {
	mailbox.Transport
	fail atomic.Int32
}

func (f *flakySend) Send(ctx context.Context, to string, pkg []byte) error {
	if f.fail.Add(-1) >= 0 {
		return &mailbox.SendError{Temporary: true, Code: 451, Err: io.ErrUnexpectedEOF}
	}
	return f.Transport.Send(ctx, to, pkg)
}

// reopenFlaky reopens the node called name over a transport whose next fails sends fail, as a
// temporarily unavailable SMTP server's would.
func (l *lab) reopenFlaky(name string, fails int32) *flakySend {
	l.t.Helper()
	var flaky *flakySend
	wrap := func(tr mailbox.Transport) mailbox.Transport { flaky = &flakySend{Transport: tr}; return flaky }
	if name == "alice" {
		l.alice.Close()
		l.alice = l.open(name, wrap, false)
	} else {
		l.bob.Close()
		l.bob = l.open(name, wrap, false)
	}
	flaky.fail.Store(fails)
	return flaky
}

// TestOutboxKeepsMailThroughSMTPFailure: while SMTP fails, answers stay in the outbox and leave
// once it works again; nothing is lost and nothing runs twice.
func TestOutboxKeepsMailThroughSMTPFailure(t *testing.T) {
	l := newLab(t)
	flaky := l.reopenFlaky("bob", 3)
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{countScript}}})
	if err != nil {
		t.Fatal(err)
	}
	// Handshake and command: bob's answers fail to send at first.
	for i := 0; i < 20; i++ {
		l.alice.Pump(l.ctx, false, 0)
		l.bob.Pump(l.ctx, false, 0)
		var queued []keystore.OutboxItem
		l.bob.store.View(func(tx *keystore.Tx) error { queued, _ = tx.Outbox(); return nil })
		for _, it := range queued {
			it.NextAttempt = time.Time{} // do not wait out the backoff in a test
			l.bob.store.Update(func(tx *keystore.Tx) error { return tx.PutOutbox(it) })
		}
		l.bob.Flush(l.ctx)
		if r, _, _ := l.alice.Result(id); Final(r.Status) {
			if r.Status != StatusDone {
				t.Fatalf("result %+v", r)
			}
			if n := runs(t); n != 1 {
				t.Fatalf("ran %d times, want 1", n)
			}
			if flaky.fail.Load() >= 0 {
				t.Fatal("the failures were never exercised")
			}
			return
		}
	}
	t.Fatal("the answer never arrived after SMTP recovered")
}

// TestRestoredStateNode: bob's database is put back from an older copy. Bob drops its sessions,
// nothing from before runs again, and after a new handshake commands work.
func TestRestoredStateNode(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	l.run("echo", "one")
	l.stopBob()
	l.bob.Close()
	backup, err := os.ReadFile(filepath.Join(l.dirs["bob"], "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	l.bob = l.open("bob", nil, false)
	l.serveBob()
	if r := l.run(countScript); r.Status != StatusDone || runs(t) != 1 {
		t.Fatalf("count: %+v, runs %d", r, runs(t))
	}
	l.stopBob()
	l.bob.Close()
	if err := os.WriteFile(filepath.Join(l.dirs["bob"], "state.db"), backup, 0o600); err != nil {
		t.Fatal(err)
	}
	// The mail that carried the counting command comes back (an attacker kept a copy).
	n := reinject(t, l)
	if n == 0 {
		t.Fatal("nothing was re-injected")
	}
	// Bob's clock runs behind by more than the allowed skew while he detects the restore, so that
	// the floor (detection time plus the skew, which covers a requester's clock running ahead)
	// lies in the past once his clock is right again, and the command below may run.
	var behind atomic.Int64
	behind.Store(int64(session.DefaultSkew + time.Minute))
	l.clocks = map[string]func() time.Time{"bob": func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) }}
	l.bob = l.open("bob", nil, false)
	behind.Store(0)
	var sessions int
	l.bob.store.View(func(tx *keystore.Tx) error {
		sessions, _ = countSessions(tx)
		return nil
	})
	if sessions != 0 {
		t.Fatalf("%d sessions survived a restore", sessions)
	}
	l.bob.Pump(l.ctx, false, 0)
	if runs(t) != 1 {
		t.Fatalf("a command from before the restore ran again (%d re-injected)", n)
	}
	// alice's next command gets no answer from the old session; after three unanswered sends she
	// opens a new session alongside, and it works. (A handshake gets 5 s to be answered: a new
	// one replaces an unanswered one, so a shorter timeout than a round trip would never finish.)
	l.alice.opts.HandshakeTimeout = 5 * time.Second
	l.alice.opts.RetryAfter = time.Millisecond
	l.serveBob()
	if r := l.run("echo", "after restore"); r.Status != StatusDone || string(r.Stdout) != "after restore\n" {
		t.Fatalf("after restore: %+v", r)
	}
}

func countSessions(tx *keystore.Tx) (int, error) {
	n := 0
	peers, err := tx.Peers()
	for _, p := range peers {
		ids, _ := tx.SessionsOf(p.Fingerprint)
		n += len(ids)
	}
	return n, err
}

func reinject(t *testing.T, l *lab) int {
	t.Helper()
	return fixtures.ReinjectProcessed(t, l.relay.IMAPAddr(), "bob@example.test", l.users["bob@example.test"], 5)
}

// TestLongCommandOutlivesMailWait: a command that runs longer than one bounded mailbox wait is
// not cut short by it.
func TestLongCommandOutlivesMailWait(t *testing.T) {
	l := newLab(t)
	slow := filepath.Join(t.TempDir(), "slow")
	os.WriteFile(slow, []byte("#!/bin/sh\nsleep 1\necho slept\n"), 0o755)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{slow}}); err != nil {
		t.Fatal(err)
	}
	l.bob.opts.RetryAfter = time.Millisecond // bob's mailbox waits are bounded at 200 ms
	l.serveBob()
	r := l.run(slow)
	if r.Status != StatusDone || r.ExitCode != 0 || string(r.Stdout) != "slept\n" {
		t.Fatalf("slow command: %+v", r)
	}
}

// TestHandshakesDoNotPileUp: repeated handshake attempts to a peer that reads its mail late
// leave one handshake to answer, and the session that comes of it is one the peer kept.
func TestHandshakesDoNotPileUp(t *testing.T) {
	l := newLab(t)
	l.alice.opts.HandshakeTimeout = time.Millisecond
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		time.Sleep(2 * time.Millisecond)
		if err := l.alice.Maintain(l.ctx); err != nil {
			t.Fatal(err)
		}
	}
	var initializing int
	l.alice.store.View(func(tx *keystore.Tx) error {
		ids, _ := tx.SessionsOf(l.bob.Fingerprint())
		initializing = len(ids)
		return nil
	})
	if initializing != 1 {
		t.Fatalf("alice keeps %d unanswered handshakes, want 1", initializing)
	}
	l.alice.opts.HandshakeTimeout = time.Hour
	l.serveBob()
	ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
	defer cancel()
	if r, err := l.alice.Wait(ctx, id, nil); err != nil || r.Status != StatusDone {
		t.Fatalf("ping after repeated handshakes: %+v, %v", r, err)
	}
}

// TestQueuedCommandExpires: a command waiting for a session that never comes ends as expired
// when its lifetime is over, instead of waiting forever.
func TestQueuedCommandExpires(t *testing.T) {
	l := newLab(t)
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if r, _, _ := l.alice.Result(id); r.Status != StatusQueued {
		t.Fatalf("status %q, want queued", r.Status)
	}
	l.alice.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	if err := l.alice.Maintain(l.ctx); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := l.alice.Result(id); r.Status != StatusLocalExpired {
		t.Fatalf("status %q after the lifetime, want %q", r.Status, StatusLocalExpired)
	}
}

// TestAllowAdds: a second --allow adds to the peer's allow list instead of replacing it.
func TestAllowAdds(t *testing.T) {
	l := newLab(t)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{"true"}}); err != nil {
		t.Fatal(err)
	}
	ps, err := l.bob.Peers(l.ctx)
	if err != nil || len(ps) != 1 {
		t.Fatal(ps, err)
	}
	if got := len(ps[0].Allow); got != 3 { // echo and the counting script from pairing, and true
		t.Fatalf("allow list %v, want three programs", ps[0].Allow)
	}
}

// sizeLimit refuses for good, as a server's SIZE limit does, every package above max bytes.
type sizeLimit struct {
	mailbox.Transport
	max     int
	refused atomic.Int32
}

func (s *sizeLimit) Send(ctx context.Context, to string, pkg []byte) error {
	if len(pkg) > s.max {
		s.refused.Add(1)
		return &mailbox.SendError{Code: 552, Err: fmt.Errorf("mail of %d bytes exceeds the server's SIZE %d", len(pkg), s.max)}
	}
	return s.Transport.Send(ctx, to, pkg)
}

// TestUndeliverableResponse: bob's answer is too large for his mail server. It is refused once,
// not retried; alice's retry gets the result without its output and ends failed, saying why;
// the command ran once. (TestRealOversizeMail does the same against Postfix.)
func TestUndeliverableResponse(t *testing.T) {
	l := newLab(t)
	var lim *sizeLimit
	l.bob.Close()
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport {
		lim = &sizeLimit{Transport: tr, max: 64 << 10}
		return lim
	}, false)
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, []byte("#!/bin/sh\necho ran >> "+countFile+"\nhead -c 200000 /dev/urandom\nexit 3\n"), 0o755)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{big}}); err != nil {
		t.Fatal(err)
	}
	l.alice.Close()
	l.alice = l.open("alice", nil, false)
	l.alice.opts.RetryAfter = time.Millisecond // alice sends again at every maintenance round
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{big}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		l.alice.Maintain(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		l.bob.Pump(l.ctx, false, 0)
		if r, _, _ := l.alice.Result(id); Final(r.Status) {
			if r.Status != StatusFailed || r.ExitCode != 3 || !strings.Contains(r.Error, "could not be mailed back") || !strings.Contains(r.Error, "SIZE") {
				t.Fatalf("result %q exit %d %q; want failed, exit 3, saying the output could not be mailed back and why", r.Status, r.ExitCode, r.Error)
			}
			if n := runs(t); n != 1 {
				t.Fatalf("ran %d times, want 1", n)
			}
			if got := lim.refused.Load(); got != 1 {
				t.Fatalf("bob's mail server refused %d answers; want 1", got)
			}
			if items := outbox(t, l.bob); len(items) != 0 {
				t.Fatalf("bob's outbox keeps %d items", len(items))
			}
			return
		}
	}
	r, _, _ := l.alice.Result(id)
	t.Fatalf("alice's command never ended: %+v (refused %d)", r, lim.refused.Load())
}

// TestUndeliverableCommand: alice's command is too large for her mail server: it fails at once
// with the server's reason instead of sitting in her outbox.
func TestUndeliverableCommand(t *testing.T) {
	l := newLab(t)
	var lim *sizeLimit
	l.alice.Close()
	l.alice = l.open("alice", func(tr mailbox.Transport) mailbox.Transport {
		lim = &sizeLimit{Transport: tr, max: 16 << 10}
		return lim
	}, false)
	// Random, so that compression cannot shrink it under the limit.
	arg := make([]byte, 30000)
	for i := range arg {
		arg[i] = 'a' + byte(rand.IntN(26))
	}
	for range 3 { // the handshake first
		l.alice.Pump(l.ctx, false, 0)
		l.bob.Pump(l.ctx, false, 0)
	}
	ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
	defer cancel()
	r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{"echo", string(arg)}}}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10 && !Final(r.Status); i++ {
		l.alice.Pump(l.ctx, false, 0)
		l.bob.Pump(l.ctx, false, 0)
		r, _, _ = l.alice.Result(r.CommandID)
	}
	if r.Status != StatusFailed || !strings.Contains(r.Error, "refused the command") || !strings.Contains(r.Error, "SIZE") {
		t.Fatalf("result %q %q; want failed with the server's refusal", r.Status, r.Error)
	}
	if items := outbox(t, l.alice); len(items) != 0 {
		t.Fatalf("alice's outbox keeps %d items", len(items))
	}
	if lim.refused.Load() != 1 {
		t.Fatalf("refused %d times, want 1", lim.refused.Load())
	}
}

// TestRemovePeer: removing a peer forgets it, its armed pairing and policy, fails its pending
// commands, and drops the mail still queued for it, but nothing queued for other peers.
func TestRemovePeer(t *testing.T) {
	l := newLab(t)
	l.reopenFlaky("alice", 1000) // nothing leaves alice's outbox
	if _, err := l.alice.AddPeer(l.ctx, PeerSpec{Name: "carol", Address: "carol@example.test"}); err != nil && !strings.Contains(err.Error(), "stays queued") {
		t.Fatal(err)
	}
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}})
	if err != nil && !strings.Contains(err.Error(), "stays in the outbox") {
		t.Fatal(err)
	}
	to := func() map[string]int {
		m := map[string]int{}
		for _, it := range outbox(t, l.alice) {
			m[it.To]++
		}
		return m
	}
	before := to()
	if before["carol@example.test"] == 0 || before["bob@example.test"] == 0 {
		t.Fatalf("alice's outbox before the removal: %v; want mail for carol and bob", before)
	}
	if err := l.alice.RemovePeer(l.ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	after := to()
	if after["carol@example.test"] != 0 || after["bob@example.test"] != before["bob@example.test"] {
		t.Fatalf("alice's outbox after removing carol: %v (before %v); want carol's mail gone, bob's kept", after, before)
	}
	if err := l.alice.RemovePeer(l.ctx, "carol"); err == nil || !strings.Contains(err.Error(), "no peer named") {
		t.Fatalf("removing carol again: %v; want 'no peer named'", err)
	}
	// Someone waits for the command to bob, as `run --wait` does through the agent's socket:
	// removing bob ends the wait (with no recheck to fall back on, only the notification can).
	l.alice.waitRecheck = time.Hour
	l.alice.serving.Store(true)
	waited := make(chan Result, 1)
	go func() {
		r, _ := l.alice.Wait(l.ctx, id, nil)
		waited <- r
	}()
	// Remove bob only once the waiter is subscribed: removed before, it would find the result at
	// once and the test would prove nothing.
	for subscribed := false; !subscribed; time.Sleep(time.Millisecond) {
		l.alice.waitMu.Lock()
		subscribed = len(l.alice.waiters[id]) > 0
		l.alice.waitMu.Unlock()
	}
	if err := l.alice.RemovePeer(l.ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := l.alice.Result(id); r.Status != StatusFailed || len(to()) != 0 {
		t.Fatalf("after removing bob: result %q, outbox %v; want failed and empty", r.Status, to())
	}
	select {
	case r := <-waited:
		if r.Status != StatusFailed {
			t.Fatalf("the waiter saw %q, want failed", r.Status)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removing bob did not end the wait for his command")
	}
}

// refuseFirstResponse refuses bob's first RESPONSE for good with a reason that is not its size.
type refuseFirstResponse struct {
	mailbox.Transport
	refused atomic.Int32
}

func (r *refuseFirstResponse) Send(ctx context.Context, to string, pkg []byte) error {
	if len(pkg) > 5 && session.Type(pkg[5]) == session.TypeResponse && r.refused.Add(1) == 1 {
		return &mailbox.SendError{Code: 550, Err: errors.New("5.2.2 mailbox full")}
	}
	return r.Transport.Send(ctx, to, pkg)
}

// TestRefusedResponseNotForSize: an answer refused for good for another reason than its size is
// dropped from the outbox but keeps its output in the ledger: alice's retry gets all of it.
func TestRefusedResponseNotForSize(t *testing.T) {
	l := newLab(t)
	var ref *refuseFirstResponse
	l.bob.Close()
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { ref = &refuseFirstResponse{Transport: tr}; return ref }, false)
	l.alice.opts.RetryAfter = time.Millisecond
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{"echo", "whole"}}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		l.alice.Maintain(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		l.bob.Pump(l.ctx, false, 0)
		if r, _, _ := l.alice.Result(id); Final(r.Status) {
			if r.Status != StatusDone || string(r.Stdout) != "whole\n" || ref.refused.Load() < 2 {
				t.Fatalf("result %q %q (%q) after %d responses; want done with the whole output after the refusal", r.Status, r.Stdout, r.Error, ref.refused.Load())
			}
			return
		}
	}
	t.Fatal("alice's command never ended")
}

// TestMailThatKeepsFailingIsMovedAside: a mail whose handling fails for the node's own reasons
// stays in the inbox and holds up the mail behind it while the trouble may pass; after 5
// attempts over at least a minute it is moved to the rejected folder, and the next mail gets its
// turn. The count survives a restart (an agent run by cron with --once). Nothing of the mail was
// committed, so its command has not run and is still the sender's to retry.
func TestMailThatKeepsFailingIsMovedAside(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	l.run("echo", "warm-up") // opens the session
	l.stopBob()
	before := runs(t)
	count := RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{countScript}}}
	stuck, err := l.alice.Submit(l.ctx, count)
	if err != nil {
		t.Fatal(err)
	}
	behind, err := l.alice.Submit(l.ctx, count)
	if err != nil {
		t.Fatal(err)
	}
	inspect := fixtures.IMAPInspector(l.relay.IMAPAddr(), l.users, nil)
	rejectedBefore := len(inspect(t, "bob@example.test", "sealpost/rejected"))

	var head uint32
	trouble := func(m mailbox.Message) error {
		if head == 0 {
			head = m.UID
		}
		if m.UID == head {
			return errors.New("simulated trouble with the state")
		}
		return nil
	}
	base := time.Now()
	attempt := func(i int, at time.Duration) error {
		l.bob.failHandle = trouble
		l.bob.now = func() time.Time { return base.Add(at) }
		_, err := l.bob.Pump(l.ctx, false, 0)
		return err
	}
	// Five attempts within 40 s, the last three by a restarted agent: held, not moved aside.
	for i, at := range []time.Duration{0, 10, 20, 30, 40} {
		if i == 2 {
			l.bob.Close()
			l.bob = l.open("bob", nil, false)
		}
		if err := attempt(i, at*time.Second); err == nil || !strings.Contains(err.Error(), "simulated trouble") {
			t.Fatalf("attempt %d at %ds: Pump = %v, want the trouble", i+1, at, err)
		}
		if n := runs(t); n != before {
			t.Fatalf("attempt %d: %d commands ran behind the failing mail", i+1, n-before)
		}
	}
	// The sixth, 61 s after the first.
	if err := attempt(5, 61*time.Second); err != nil {
		t.Fatalf("sixth attempt: Pump = %v, want the mail moved aside and the next one handled", err)
	}
	if n := runs(t); n != before+1 {
		t.Fatalf("after the failing mail was moved aside: %d commands ran, want 1 (the one behind it)", n-before)
	}
	if got := len(inspect(t, "bob@example.test", "sealpost/rejected")); got != rejectedBefore+1 {
		t.Fatalf("bob's rejected folder holds %d mails, %d before; want the failing one added", got, rejectedBefore)
	}
	l.bob.failHandle, l.bob.now = nil, time.Now
	for range 3 {
		l.alice.Pump(l.ctx, false, 0)
	}
	if r, _, _ := l.alice.Result(behind); r.Status != StatusDone {
		t.Fatalf("the command behind the failing mail: %q, want done", r.Status)
	}
	if r, _, _ := l.alice.Result(stuck); Final(r.Status) {
		t.Fatalf("the command of the failing mail: %q; it never ran, so it is still waiting for its retry", r.Status)
	}
}

// TestSenderFlushesOnStop: mail queued while the agent stops still goes out: the sender's last
// act is one flush of what is due (bounded by senderDrain).
func TestSenderFlushesOnStop(t *testing.T) {
	l := newLab(t)
	stop := l.bob.startSender(l.ctx)
	// Queued without a kick, as an answer committed in the moment the agent is told to stop.
	if err := l.bob.update(func(tx *keystore.Tx, _ TxStore) error {
		return enqueue(tx, "alice@example.test", fixtures.Package(100))
	}); err != nil {
		t.Fatal(err)
	}
	stop()
	if items := outbox(t, l.bob); len(items) != 0 {
		t.Fatalf("bob's outbox holds %d items after the sender stopped; want its last flush to have sent them", len(items))
	}
}
