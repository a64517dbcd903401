package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
)

// TestStatus: what `sealpost status` shows while SMTP fails (the command waits, its mail stays in
// the outbox with the reason) and once it works again, with and without an agent.
func TestStatus(t *testing.T) {
	l := newLab(t)
	flaky := l.reopenFlaky("alice", 1000)
	before := time.Now()
	if _, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}); err == nil {
		t.Fatal("Submit with SMTP failing succeeded")
	}
	st, err := l.alice.Status(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Agent || st.Peers != 1 || st.Waiting != 1 || st.OldestWaiting.Before(before.Add(-time.Second)) {
		t.Fatalf("status with a command waiting: %+v", st)
	}
	if st.Outbox == 0 || !strings.Contains(st.LastError, "unexpected EOF") || !st.NextAttempt.After(before) {
		t.Fatalf("status with SMTP failing: outbox %d, next %v, last error %q; want the queued mail, a later try and the SMTP error", st.Outbox, st.NextAttempt, st.LastError)
	}

	flaky.fail.Store(0)
	l.serveBob()
	ctx, cancel := context.WithTimeout(l.ctx, 20*time.Second)
	defer cancel()
	for {
		l.alice.Flush(ctx) // as her agent would on its schedule
		l.alice.Pump(ctx, true, 200*time.Millisecond)
		if st, _ = l.alice.Status(ctx); st.Waiting == 0 && st.Outbox == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("status after SMTP recovered: %+v; want nothing waiting and an empty outbox", st)
		}
	}
	if st.PeersConfirmed != 1 {
		t.Fatalf("status once the command was answered: %+v", st)
	}

	// The last error shown is that of the mail tried last, not of the one due last: a mail on
	// its ninth try waits minutes, one on its first try seconds.
	now := time.Now()
	if err := l.alice.store.Update(func(tx *keystore.Tx) error {
		for _, it := range []keystore.OutboxItem{
			{To: "x@example.test", Package: []byte("old"), Attempts: 9, LastError: "connection refused",
				NextAttempt: now.Add(-20*time.Second + backoff(outboxBase, outboxMax, 9))},
			{To: "y@example.test", Package: []byte("new"), Attempts: 1, LastError: "451 rate limited",
				NextAttempt: now.Add(backoff(outboxBase, outboxMax, 1))},
		} {
			id, err := tx.Enqueue(it)
			if err != nil {
				return err
			}
			it.ID = id
			if err := tx.PutOutbox(it); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if st, _ = l.alice.Status(l.ctx); st.Outbox != 2 || st.LastError != "451 rate limited" {
		t.Fatalf("status with two failed mails: outbox %d, last error %q; want 2 and the later failure", st.Outbox, st.LastError)
	}
	if _, err := l.bob.ListenControl(l.ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := DialControl(l.dirs["bob"])
	if err != nil {
		t.Fatal(err)
	}
	if bs, err := cl.Status(l.ctx); err != nil || !bs.Agent || bs.AgentPID == 0 || bs.Address != "bob@example.test" {
		t.Fatalf("bob's status through his agent's socket: %+v, %v", bs, err)
	}
}
