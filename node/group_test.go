package node

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// generation reads n's store generation: its count of commits.
func generation(t *testing.T, n *Node) uint64 {
	t.Helper()
	var g uint64
	if err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		g, err = tx.Generation()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return g
}

// warmUp runs one ping through bob's agent, for the handshake, and stops the agent.
func (l *lab) warmUp() {
	l.t.Helper()
	l.serveBob()
	ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
	defer cancel()
	if r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}, true, nil); err != nil || r.Status != StatusDone {
		l.t.Fatalf("warm-up ping: %+v, %v", r, err)
	}
	l.stopBob()
}

// submitN mails n commands from alice to bob.
func (l *lab) submitN(n int, req commands.Request) []session.CommandID {
	l.t.Helper()
	ids := make([]session.CommandID, 0, n)
	for range n {
		id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: req})
		if err != nil {
			l.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// waitAll waits until alice holds a final result of every command and checks it is done.
func (l *lab) waitAll(ids []session.CommandID) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	actx, stopAlice := context.WithCancel(l.ctx)
	aliceDone := make(chan struct{})
	go func() { defer close(aliceDone); l.alice.Serve(actx, false) }()
	defer func() { stopAlice(); <-aliceDone }()
	for _, id := range ids {
		if r, err := l.alice.Wait(ctx, id, nil); err != nil || r.Status != StatusDone {
			l.t.Fatalf("command %s: %+v, %v", id, r, err)
		}
	}
}

// TestRunOfMailInOneCommit: a backlog of mail is applied a run at a time, one commit (one sync
// to disk) per run instead of one per mail (docs/PROTOCOL.md section 11), and a ping, which
// changes nothing, is answered in that same commit: no Executing record, no commit of its own
// (section 12). Before, 20 pings cost at least 20 commits.
func TestRunOfMailInOneCommit(t *testing.T) {
	l := newLab(t)
	l.warmUp()
	ids := l.submitN(20, commands.Request{Name: commands.CmdPing})
	before := generation(t, l.bob)
	if n, err := l.bob.Pump(l.ctx, false, 0); err != nil || n != 20 {
		t.Fatalf("bob's Pump = %d, %v; want the 20 pings", n, err)
	}
	// One for the run, one for the notes of the moved mail, one for the sent mail leaving the
	// outbox.
	if commits := generation(t, l.bob) - before; commits > 3 {
		t.Fatalf("bob committed %d times for 20 pings in one read; want at most 3", commits)
	}
	l.waitAll(ids)
}

// TestGroupWithARejectedMail: a run of mail with a forged one in its middle: the run is applied
// mail by mail instead, the forged one is moved aside, and every command around it runs once.
func TestGroupWithARejectedMail(t *testing.T) {
	l := newLab(t)
	l.warmUp()
	count := commands.Request{Name: commands.CmdExec, Argv: []string{countScript}}
	ids := l.submitN(3, count)
	tr, err := l.alice.transport()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(l.ctx, "bob@example.test", forgedPair(t, "x")); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, l.submitN(3, count)...)
	inspect := fixtures.IMAPInspector(l.relay.IMAPAddr(), l.users, nil)
	before := len(inspect(t, "bob@example.test", "sealpost/rejected"))
	if n, err := l.bob.Pump(l.ctx, false, 0); err != nil || n != 7 {
		t.Fatalf("bob's Pump = %d, %v; want the 6 commands and the forged mail", n, err)
	}
	if got := len(inspect(t, "bob@example.test", "sealpost/rejected")) - before; got != 1 {
		t.Fatalf("%d mails moved to bob's rejected folder, want the forged one", got)
	}
	l.serveBob()
	l.waitAll(ids)
	if n := runs(t); n != 6 {
		t.Fatalf("the 6 commands ran %d times in all, want 6", n)
	}
}

// TestPingBesideARunningCommand: a ping is answered while a command of the same peer's still
// runs; it changes nothing, so it need not wait its turn behind it (docs/PROTOCOL.md section 12).
// The peer's next command with effects does wait.
func TestPingBesideARunningCommand(t *testing.T) {
	l := newLab(t)
	long, started, release := blocker(t)
	if _, err := l.bob.Allow(l.ctx, "alice", []string{long}, nil); err != nil {
		t.Fatal(err)
	}
	l.serveBob()
	actx, stopAlice := context.WithCancel(l.ctx)
	aliceDone := make(chan struct{})
	go func() { defer close(aliceDone); l.alice.Serve(actx, false) }()
	defer func() { stopAlice(); <-aliceDone }()
	first, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{long}}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{"echo", "second"}}})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer scancel()
	if _, err := readFIFO(sctx, started); err != nil {
		t.Fatalf("the long command never started: %v", err)
	}
	ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer cancel()
	r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}, true, nil)
	if err != nil || r.Status != StatusDone {
		t.Fatalf("alice's ping while her long command runs: %+v, %v", r, err)
	}
	if bobRan(t, l.bob, second) {
		t.Fatal("alice's second command ran before her first ended")
	}
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer wcancel()
	for _, id := range []session.CommandID{first, second} {
		if r, err := l.alice.Wait(wctx, id, nil); err != nil || r.Status != StatusDone {
			t.Fatalf("alice's command after the release: %+v, %v", r, err)
		}
	}
}

// TestRunOfCommandsRunsEachOnce: a run of commands with effects, applied in one transaction:
// the first starts in it, the rest wait their turn behind it, and each runs once.
func TestRunOfCommandsRunsEachOnce(t *testing.T) {
	l := newLab(t)
	l.warmUp()
	ids := l.submitN(6, commands.Request{Name: commands.CmdExec, Argv: []string{countScript}})
	if n, err := l.bob.Pump(l.ctx, false, 0); err != nil || n != 6 {
		t.Fatalf("bob's Pump = %d, %v; want the 6 commands", n, err)
	}
	l.serveBob()
	l.waitAll(ids)
	if n := runs(t); n != 6 {
		t.Fatalf("the 6 commands ran %d times in all, want 6", n)
	}
}

// TestRunAroundARejectedMail: a forged mail in the middle of a run costs the run no more than
// a split: the mails before it commit as one run, it is rejected alone, the mails after it form
// the next run. Applying the rest mail by mail after a refusal (the first version of runs) cost a
// commit per mail.
func TestRunAroundARejectedMail(t *testing.T) {
	l := newLab(t)
	l.warmUp()
	ids := l.submitN(8, commands.Request{Name: commands.CmdPing})
	tr, err := l.alice.transport()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Send(l.ctx, "bob@example.test", forgedPair(t, "x")); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, l.submitN(8, commands.Request{Name: commands.CmdPing})...)
	before := generation(t, l.bob)
	if n, err := l.bob.Pump(l.ctx, false, 0); err != nil || n != 17 {
		t.Fatalf("bob's Pump = %d, %v; want the 16 pings and the forged mail", n, err)
	}
	// Two runs, the notes of the moved mail, the sent mail leaving the outbox.
	if commits := generation(t, l.bob) - before; commits > 5 {
		t.Fatalf("bob committed %d times for 16 pings around a forged mail; want at most 5", commits)
	}
	l.waitAll(ids)
}

// TestSendOrder: mail to one peer keeps its order (one key per address), answers excepted.
func TestSendOrder(t *testing.T) {
	pkg := func(typ session.Type) []byte { return []byte{'S', 'L', 'P', 'K', 1, byte(typ), 0, 0} }
	for _, tc := range []struct {
		typ  session.Type
		want string
	}{
		{session.TypeCommand, "bob@example.test"},
		{session.TypeInitReq, "bob@example.test"},
		{session.TypePair, "bob@example.test"},
		{session.TypeResponse, ""},
		{session.TypeError, ""},
	} {
		if got := sendOrder(keystore.OutboxItem{To: "bob@example.test", Package: pkg(tc.typ)}); got != tc.want {
			t.Errorf("sendOrder of a %v: %q, want %q", tc.typ, got, tc.want)
		}
	}
}
