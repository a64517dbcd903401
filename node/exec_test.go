package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// The executor's turn rules: what waits for its turn is checked again when the turn comes, stays
// Accepted when the agent stops first, and runs in order after a crash.

// holdSlots takes the executor's only slot, so that accepted commands wait their turn until
// releaseSlots.
func holdSlots(n *Node) {
	n.exec.slots = make(chan struct{}, 1)
	n.exec.slots <- struct{}{}
}

func releaseSlots(n *Node) { <-n.exec.slots }

// acceptQueued has bob accept what is in his inbox while his executor holds it queued.
func acceptQueued(t *testing.T, l *lab) {
	t.Helper()
	holdSlots(l.bob)
	l.bob.serving.Store(true) // Pump does not wait for the executor
	defer l.bob.serving.Store(false)
	if _, err := l.bob.Pump(l.ctx, false, 0); err != nil {
		t.Fatal(err)
	}
}

func ledgerState(t *testing.T, n *Node, id session.CommandID) session.LedgerState {
	t.Helper()
	var state session.LedgerState
	if err := n.view(func(tx *keystore.Tx, st TxStore) error {
		e, ok, err := st.Ledger(n.peerFingerprint(t, "alice"), id)
		if ok {
			state = e.State
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return state
}

func (n *Node) peerFingerprint(t *testing.T, name string) session.Fingerprint {
	t.Helper()
	var fp session.Fingerprint
	if err := n.store.View(func(tx *keystore.Tx) error {
		p, ok, err := tx.Peer(name)
		if ok {
			fp = p.Fingerprint
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return fp
}

func submitCount(t *testing.T, l *lab, ttl time.Duration) session.CommandID {
	t.Helper()
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{countScript}}, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func warmUp(t *testing.T, l *lab) {
	t.Helper()
	l.serveBob()
	l.run("echo", "warm-up")
	l.stopBob()
}

func TestRemovedPeersQueuedCommandDoesNotRun(t *testing.T) {
	l := newLab(t)
	warmUp(t, l)
	id := submitCount(t, l, 0)
	acceptQueued(t, l)
	fp := l.bob.peerFingerprint(t, "alice")
	if err := l.bob.RemovePeer(l.ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	releaseSlots(l.bob)
	l.bob.exec.drain()
	if n := runs(t); n != 0 {
		t.Fatalf("the removed peer's queued command ran %d time(s)", n)
	}
	if err := l.bob.view(func(tx *keystore.Tx, st TxStore) error {
		e, ok, err := st.Ledger(fp, id)
		if err == nil && (!ok || e.State != session.Done || e.Err == nil || e.Err.Code != session.CodeDenied) {
			t.Errorf("ledger: %+v, %v; want the command answered denied", e, ok)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestQueuedPastNotAfterIsAnsweredExpired(t *testing.T) {
	l := newLab(t)
	var ahead atomic.Int64
	l.clocks = map[string]func() time.Time{"bob": func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }}
	l.bob.Close()
	l.bob = l.open("bob", nil, false)
	warmUp(t, l)
	id := submitCount(t, l, time.Minute)
	acceptQueued(t, l)
	ahead.Store(int64(2 * time.Hour)) // the command ahead of it took two hours
	releaseSlots(l.bob)
	l.bob.exec.drain()
	if n := runs(t); n != 0 {
		t.Fatalf("a command ran %d time(s) two hours past its not-after", n)
	}
	ahead.Store(0)
	l.serveBob()
	ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
	defer cancel()
	if r, err := l.alice.Wait(ctx, id, nil); err != nil || r.Status != "expired" {
		t.Fatalf("alice's result: %+v, %v; want expired", r, err)
	}
}

func TestStopLeavesQueuedCommandsToRunAfterRestart(t *testing.T) {
	l := newLab(t)
	warmUp(t, l)
	id := submitCount(t, l, 0)
	acceptQueued(t, l)
	// The agent stops while the command waits: the commands' context ends before its turn.
	x := l.bob.exec
	x.mu.Lock()
	current := x.ctx
	x.mu.Unlock()
	x.end(current, errAgentStopped)
	releaseSlots(l.bob)
	x.drain()
	if s := ledgerState(t, l.bob, id); s != session.Accepted || runs(t) != 0 {
		t.Fatalf("after the stop: ledger state %v, runs %d; want still accepted, not run", s, runs(t))
	}
	l.bob.Close()
	l.bob = l.open("bob", nil, false)
	l.serveBob()
	ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
	defer cancel()
	if r, err := l.alice.Wait(ctx, id, nil); err != nil || r.Status != StatusDone || runs(t) != 1 {
		t.Fatalf("after the restart: %+v, %v, runs %d; want done, run once", r, err, runs(t))
	}
}

func TestRecoverRunsAcceptedCommandsInOrder(t *testing.T) {
	l := newLab(t)
	dir := t.TempDir()
	order := filepath.Join(dir, "order")
	script := filepath.Join(dir, "rec")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$1\" >> "+order+"\n"), 0o755)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{"echo", script}}); err != nil {
		t.Fatal(err)
	}
	warmUp(t, l)
	var ids []session.CommandID
	for i := range 8 {
		id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{script, string(rune('a' + i))}}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	acceptQueued(t, l)
	// Bob dies with all eight accepted and none started: nothing of his executor survives.
	dead := l.bob
	dead.exec = newExecutor(dead, 1) // the held workers are gone with the process
	dead.Close()
	l.bob = l.open("bob", nil, false)
	l.serveBob()
	for _, id := range ids {
		if r, err := l.alice.Wait(l.ctx, id, nil); err != nil || r.Status != StatusDone {
			t.Fatalf("%v: %+v, %v", id, r, err)
		}
	}
	b, _ := os.ReadFile(order)
	if got := strings.ReplaceAll(string(b), "\n", ""); got != "abcdefgh" {
		t.Fatalf("after the restart the accepted commands ran in the order %q, want abcdefgh", got)
	}
}

// ackFails is a transport whose Ack always fails, as with a processed folder the server will not
// take mail into; it records the waits Receive was asked for.
type ackFails struct {
	mailbox.Transport
	mu    sync.Mutex
	waits []time.Duration
}

func (a *ackFails) Ack(ctx context.Context, ms ...mailbox.Message) error {
	if len(ms) == 0 {
		return nil
	}
	return errors.New("NO [OVERQUOTA] cannot create sealpost/processed")
}

func (a *ackFails) Receive(ctx context.Context, c mailbox.Cursor, wait time.Duration, max int) ([]mailbox.Message, mailbox.Cursor, error) {
	a.mu.Lock()
	a.waits = append(a.waits, wait)
	a.mu.Unlock()
	return a.Transport.Receive(ctx, c, wait, max)
}

// TestAckFailureBacksOff: when processed mail cannot be moved, Pump says so (Serve backs off) and
// the notes of that mail do not make every later Pump read without waiting.
func TestAckFailureBacksOff(t *testing.T) {
	l := newLab(t)
	var af *ackFails
	l.bob.Close()
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { af = &ackFails{Transport: tr}; return af }, false)
	submitCount(t, l, 0)
	if _, err := l.bob.Pump(l.ctx, false, 0); err == nil {
		t.Fatal("Pump = nil although the processed mail could not be moved; Serve would not back off")
	}
	var notes int
	l.bob.store.View(func(tx *keystore.Tx) error {
		ms, err := owedAcks(tx)
		notes = len(ms)
		return err
	})
	if notes == 0 {
		t.Fatal("no notes kept of the mail still to be moved")
	}
	for range 2 {
		l.bob.Pump(l.ctx, true, time.Millisecond)
	}
	af.mu.Lock()
	defer af.mu.Unlock()
	if w := af.waits[len(af.waits)-1]; w == 0 {
		t.Fatalf("Receive waits %v: with notes outstanding every Pump reads without waiting", af.waits)
	}
}

// TestNextTurnCheckedInPreviousAnswer: the command queued behind a running one takes its turn in
// the transaction of that one's answer; the allow list is checked then, so a program removed from
// it while the first command ran does not run.
func TestNextTurnCheckedInPreviousAnswer(t *testing.T) {
	l := newLab(t)
	long, started, release := blocker(t)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{long, countScript}}); err != nil {
		t.Fatal(err)
	}
	warmUp(t, l)
	first, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{long}}})
	if err != nil {
		t.Fatal(err)
	}
	second := submitCount(t, l, 0)
	l.bob.serving.Store(true) // Pump does not wait for the executor
	if _, err := l.bob.Pump(l.ctx, false, 0); err != nil {
		t.Fatal(err)
	}
	l.bob.serving.Store(false)
	if _, err := readFIFO(l.ctx, started); err != nil {
		t.Fatal(err)
	}
	if s := ledgerState(t, l.bob, second); s != session.Accepted {
		t.Fatalf("the second command is %v while the first runs, want accepted", s)
	}
	// The count script leaves bob's allow list for alice while the first command runs.
	if err := l.bob.update(func(tx *keystore.Tx, _ TxStore) error { return l.bob.putPolicy(tx, "alice", []string{long}) }); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.bob.exec.drain()
	if n := runs(t); n != 0 {
		t.Fatalf("a program taken off the allow list while it waited ran %d time(s)", n)
	}
	for id, want := range map[session.CommandID]bool{first: false, second: true} {
		if err := l.bob.view(func(tx *keystore.Tx, st TxStore) error {
			e, ok, err := st.Ledger(l.bob.peerFingerprint(t, "alice"), id)
			if err == nil && (!ok || e.State != session.Done || (e.Err != nil && e.Err.Code == session.CodeDenied) != want) {
				t.Errorf("ledger of %v: %+v; want done, denied %v", id, e, want)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
}
