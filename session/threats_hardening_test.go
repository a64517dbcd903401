package session_test

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/session"
)

// Rows 32-34 and 38 of THREATS.md: the ledger, the restore floor and the clocks.

func TestThreat32RestoreFloorCoversSkew(t *testing.T) {
	a, b := pair(t)
	backup := b.st.Clone()
	// Alice's clock runs 8 minutes ahead of Bob's, within the allowed skew.
	a = newNode(t, "alice", 1, &clock{now: b.clock.now.Add(8 * time.Minute)}, a.st, session.Config{Rand: seededReader(4242)})
	pkg := send(t, a, b, 1, "ran just before the restore")
	execute(t, b, pkg) // ran; its response is lost

	// Bob's state is put back from the backup and the restore is detected a minute later.
	b.clock.Advance(time.Minute)
	restored := (&node{name: "bob", id: b.id, addr: b.addr, st: backup, clock: b.clock}).withConfig(t, session.Config{Floor: b.clock.now})
	handshake(t, a, restored)
	retry, err := a.eng.Retry(a.st, cmdID(1))
	if err != nil {
		t.Fatal(err)
	}
	out, err := restored.eng.Receive(restored.st, retry)
	if err != nil || out.Kind == session.Execute || out.Err == nil || out.Err.Code != session.CodeOutcomeUnknown {
		t.Fatalf("retry of a command created %s ahead of the floor: %v, %v, %v; want outcome-unknown, never a second run", 7*time.Minute, out.Kind, out.Err, err)
	}
}

func TestThreat33RanCommandNeverReportedExpired(t *testing.T) {
	for _, c := range []struct {
		name    string
		advance time.Duration // Bob's clock, after the command ran
	}{
		{"retry delivered past not-after", 2 * time.Hour},
		{"responder's clock set back past the skew", -time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := pair(t)
			b.clock = &clock{now: b.clock.now} // Bob's own clock from here on
			b = b.withConfig(t, session.Config{})
			execute(t, b, send(t, a, b, 1, "date")) // ran; its response is lost
			b.clock.Advance(c.advance)
			retry, err := a.eng.Retry(a.st, cmdID(1))
			if err != nil {
				t.Fatal(err)
			}
			out, err := b.eng.Receive(b.st, retry)
			if err != nil || out.Kind != session.Replied || out.Err != nil {
				t.Fatalf("retry: Receive = %v, %v, %v; want the recorded result", out.Kind, out.Err, err)
			}
			if got := deliver(t, a, out.Reply); string(got.Payload) != "ok:date" {
				t.Fatalf("requester got %q, want the real result", got.Payload)
			}
		})
	}
}

func TestThreat34ClockRefusalIsFinalOnBothSides(t *testing.T) {
	a, b := pair(t)
	b.clock = &clock{now: b.clock.now.Add(-time.Hour)} // Bob's clock is an hour slow
	b = b.withConfig(t, session.Config{})
	pkg := send(t, a, b, 1, "x")
	out, err := b.eng.Receive(b.st, pkg)
	if err != nil || out.Err == nil || out.Err.Code != session.CodeClock {
		t.Fatalf("Receive = %v, %v, %v; want a clock refusal", out.Kind, out.Err, err)
	}
	if got, err := a.eng.Receive(a.st, out.Reply); err != nil || got.Kind != session.Failed {
		t.Fatalf("requester: %v, %v; want the refusal final", got.Kind, err)
	}
	// Bob's clock is fixed; the relay replays the command mail. The requester was told it was
	// refused, so it must not run now.
	b.clock.Advance(time.Hour)
	out, err = b.eng.Receive(b.st, pkg)
	if err != nil || out.Kind == session.Execute || out.Err == nil || out.Err.Code != session.CodeClock {
		t.Fatalf("replay after the clock was fixed: %v, %v, %v; want the recorded clock refusal", out.Kind, out.Err, err)
	}
}

func TestThreat38ReplaysDoNotMultiplyAnswers(t *testing.T) {
	a, b := pair(t)
	pkg := send(t, a, b, 1, "date")
	execute(t, b, pkg)
	answers := func(n int) int {
		sent := 0
		for range n {
			out, err := b.eng.Receive(b.st, pkg)
			if err != nil || out.Kind != session.Replied {
				t.Fatalf("replay: %v, %v; want replied", out.Kind, err)
			}
			if out.Reply != nil {
				sent++
			}
			b.clock.Advance(time.Second)
		}
		return sent
	}
	if n := answers(10); n != 0 {
		t.Fatalf("10 replays right after the answer went out mailed it %d more times, want 0", n)
	}
	b.clock.Advance(session.DefaultResendInterval)
	if n := answers(10); n != 1 {
		t.Fatalf("10 replays after the resend interval mailed the answer %d times, want 1", n)
	}
}

// TestAcceptedCommandStartsOnce: an accepted command waits for its turn as Accepted, with its
// payload, and Start moves it to Executing once; it cannot be started twice.
func TestAcceptedCommandStartsOnce(t *testing.T) {
	a, b := pair(t)
	out, err := b.eng.Receive(b.st, send(t, a, b, 1, "later"))
	if err != nil || out.Kind != session.Execute {
		t.Fatal(out.Kind, err)
	}
	le, ok, _ := b.st.Ledger(a.fp(), cmdID(1))
	if !ok || le.State != session.Accepted || string(le.Payload) != "later" {
		t.Fatalf("ledger after Receive: %+v; want Accepted with the payload", le)
	}
	if err := b.eng.Start(b.st, out.Ticket); err != nil {
		t.Fatal(err)
	}
	if le, _, _ := b.st.Ledger(a.fp(), cmdID(1)); le.State != session.Executing || le.Payload != nil {
		t.Fatalf("ledger after Start: %+v; want Executing without the payload", le)
	}
	if err := b.eng.Start(b.st, out.Ticket); err == nil {
		t.Fatal("a command was started twice")
	}
}
