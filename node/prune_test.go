package node

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/keystore"
)

// TestPruneProcessedMail: the agent deletes processed mail once it is older than the keep time,
// looks at most once a day (the time is kept in the state), and never when told to keep mail
// forever. Mail that is still new is kept.
func TestPruneProcessedMail(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	l.run("echo", "one")
	l.run("echo", "two")
	l.stopBob()

	inspect := fixtures.IMAPInspector(l.relay.IMAPAddr(), l.users, nil)
	processed := func() int { return len(inspect(t, "bob@example.test", "sealpost/processed")) }
	lastPrune := func() time.Time {
		var last time.Time
		l.bob.store.View(func(tx *keystore.Tx) error {
			last, _, _ = tx.LastPrune()
			return nil
		})
		return last
	}
	held := processed()
	if held < 2 { // the two commands, and the handshake
		t.Fatalf("bob's processed folder holds %d mails after two commands", held)
	}

	// Serve looked when it started, and found nothing old enough.
	first := lastPrune()
	if first.IsZero() {
		t.Fatal("the agent's first look was not recorded")
	}
	at := func(d time.Duration) { now := time.Now().Add(d); l.bob.now = func() time.Time { return now } }

	// 23 hours on, with every mail already past a one-hour keep time: not looked at yet.
	l.bob.opts.KeepProcessed = time.Hour
	at(23 * time.Hour)
	l.bob.pruneProcessed(l.ctx)
	if got := processed(); got != held || !lastPrune().Equal(first) {
		t.Fatalf("looked again within a day: %d processed mails left of %d, last look %v (first %v)", got, held, lastPrune(), first)
	}

	// Kept forever: never looked at, however long ago the last look was.
	l.bob.opts.KeepProcessed = -1
	at(31 * 24 * time.Hour)
	l.bob.pruneProcessed(l.ctx)
	if got := processed(); got != held {
		t.Fatalf("KeepProcessed < 0 deleted mail: %d left of %d", got, held)
	}

	// 31 days on, with the default keep time of 30 days: every processed mail arrived today,
	// before the cut-off a day from now.
	l.bob.opts.KeepProcessed = 0
	l.bob.pruneProcessed(l.ctx)
	if got := processed(); got != 0 {
		t.Fatalf("%d processed mails left after they were 31 days old", got)
	}
	if !lastPrune().After(first) {
		t.Fatalf("the second look was not recorded: %v", lastPrune())
	}

	// The agent goes on: a command still runs, and its mail is kept (the next look is a day
	// away, and the mail is new).
	l.bob.now = time.Now
	l.serveBob()
	if r := l.run("echo", "three"); r.Status != "done" {
		t.Fatalf("a command after pruning: %+v", r)
	}
	l.stopBob()
	if got := processed(); got == 0 {
		t.Fatal("the new command's mail is not in the processed folder")
	}

	// A restarted agent (cron's --once) knows the last look from the state: an hour after it,
	// it does not look again.
	looked := lastPrune()
	l.bob.Close()
	l.bob = l.open("bob", nil, false)
	l.bob.opts.KeepProcessed = time.Hour
	at(time.Hour)
	l.bob.pruneProcessed(l.ctx)
	if !lastPrune().Equal(looked) {
		t.Fatalf("a restarted agent looked again an hour after the last look (%v, now %v)", looked, lastPrune())
	}
}

// TestResultsPrunedAfterRetention: the results of finished commands older than the retention
// are deleted as new commands are recorded, so the history does not grow without bound; one
// still waiting for its answer stays however old.
func TestResultsPrunedAfterRetention(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	l.alice.opts.KeepResults = time.Hour
	if err := l.alice.storeKeepResults(); err != nil {
		t.Fatal(err)
	}
	first := l.run("echo", "one")
	if first.Status != StatusDone {
		t.Fatalf("first command: %+v", first)
	}
	l.stopBob()
	// A command that stays unanswered: bob's agent is stopped.
	waiting, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}})
	if err != nil {
		t.Fatal(err)
	}
	// Two hours on, a new command is recorded: the first result goes, the waiting one stays.
	later := time.Now().Add(2 * time.Hour)
	l.alice.now = func() time.Time { return later }
	if _, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.alice.Result(first.CommandID); ok {
		t.Fatal("the result of a command finished past the retention is still kept")
	}
	if _, ok, _ := l.alice.Result(waiting); !ok {
		t.Fatal("the result of a command still waiting for its answer was deleted")
	}
}

// TestKeepResultsHoldsForEveryProcess: the retention an agent was started with is kept in the
// state, so a `run` that opens the state itself (no agent) prunes by it, not by the default.
func TestKeepResultsHoldsForEveryProcess(t *testing.T) {
	l := newLab(t)
	old := keystore.Result{CommandID: [16]byte{1}, Peer: "bob", Command: []string{"uptime"}, Status: StatusDone,
		Sent: time.Now().Add(-200 * 24 * time.Hour), Finished: time.Now().Add(-200 * 24 * time.Hour)}
	if err := l.alice.store.Update(func(tx *keystore.Tx) error { return tx.PutResult(old) }); err != nil {
		t.Fatal(err)
	}
	// The agent ran with --keep-results forever, then stopped.
	l.alice.Close()
	opts := l.alice.opts
	opts.KeepResults = -1
	n, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	// `sealpost run` opens the state with the default options.
	opts.KeepResults = 0
	if l.alice, err = Open(opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.alice.Close() })
	if _, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.alice.Result(old.CommandID); !ok {
		t.Fatal("a result kept forever by the agent's setting was deleted by a run that opened the state itself")
	}
}
