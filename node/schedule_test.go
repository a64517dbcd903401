package node

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// offsetClock is the real clock moved on by what the test adds: alice's schedules see time
// pass at once, and bob (on the real clock) still accepts her commands (the skew stays below
// session.DefaultSkew).
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time          { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.off.Add(int64(d)) }

// schedLab is the two-node lab with alice reopened on an offset clock and bob's agent running.
func schedLab(t *testing.T) (*lab, *offsetClock) {
	l := newLab(t)
	clock := &offsetClock{}
	l.alice.Close()
	l.clocks = map[string]func() time.Time{"alice": clock.now}
	l.alice = l.open("alice", nil, false)
	l.serveBob()
	t.Cleanup(l.stopBob)
	return l, clock
}

// settle reads alice's mailbox until every command of the schedules' pending runs is final.
func settle(t *testing.T, l *lab) {
	t.Helper()
	for range 200 {
		waiting := false
		l.alice.view(func(tx *keystore.Tx, _ TxStore) error {
			return tx.ForEachSchedule(func(s keystore.Schedule) error {
				for _, p := range s.Pending {
					r, _, _ := tx.ScheduleRun(s.Name, p)
					for _, pr := range r.Peers {
						id, _ := ParseCommandID(pr.ID)
						if res, ok, _ := tx.Result(id); pr.ID != "" && (!ok || !Final(res.Status)) {
							waiting = true
						}
					}
				}
				return nil
			})
		})
		if !waiting {
			return
		}
		if _, err := l.alice.Pump(l.ctx, true, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("the scheduled commands got no answer")
}

func history(t *testing.T, n *Node, name string) []ScheduleRun {
	t.Helper()
	runs, err := n.ScheduleRuns(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

// TestScheduleFiresJudgesAndCatchesUp: a schedule fires at its slots, keeps a history, judges a
// run by its answers, fires ONCE for slots missed while no agent ran and goes on from then, a
// peer that does not answer by the next slot fails the run, and a failed run calls the hook
// with the run on stdin.
func TestScheduleFiresJudgesAndCatchesUp(t *testing.T) {
	l, clock := schedLab(t)
	ctx := l.ctx
	hookOut := filepath.Join(t.TempDir(), "hook.json")
	exec := func(argv ...string) commands.Request { return commands.Request{Name: "exec", Argv: argv} }
	if _, err := l.alice.AddSchedule(ctx, ScheduleSpec{Name: "ok", Target: "bob", Request: exec("echo", "hi"), Every: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.alice.AddSchedule(ctx, ScheduleSpec{Name: "bad", Target: "@all", Request: exec("false"), Every: 10 * time.Second,
		OnFailure: "cat > " + hookOut}); err != nil {
		t.Fatal(err)
	}
	sc := &scheduler{running: map[string]bool{}}
	start := clock.now()
	if next, _ := l.alice.tickSchedules(ctx, sc); next.Before(start.Add(9*time.Second)) || next.After(start.Add(10*time.Second)) {
		t.Fatalf("next wake-up %s after adding, want 10s on", next.Sub(start))
	}
	if got := history(t, l.alice, "ok"); len(got) != 0 {
		t.Fatalf("fired before its slot: %+v", got)
	}

	// The first slot: both fire; bob answers; "ok" succeeds, "bad" (false is not allowed on
	// bob: denied) fails and its hook gets the run.
	clock.advance(10 * time.Second)
	_, ids := l.alice.tickSchedules(ctx, sc)
	if len(ids) != 2 {
		t.Fatalf("after the first slot the scheduler waits for %d answers, want 2", len(ids))
	}
	settle(t, l)
	l.alice.tickSchedules(ctx, sc)
	sc.hooks.Wait()
	okRuns, badRuns := history(t, l.alice, "ok"), history(t, l.alice, "bad")
	if len(okRuns) != 1 || !okRuns[0].Done || okRuns[0].Failed || !okRuns[0].Peers[0].Answered || okRuns[0].Peers[0].Status != StatusDone {
		t.Fatalf("ok's history: %+v", okRuns)
	}
	if len(badRuns) != 1 || !badRuns[0].Done || !badRuns[0].Failed || badRuns[0].Hook != keystore.HookRan {
		t.Fatalf("bad's history: %+v", badRuns)
	}
	var in HookInput
	raw, err := os.ReadFile(hookOut)
	if err != nil || json.Unmarshal(raw, &in) != nil || in.Schedule != "bad" || len(in.Peers) != 1 || in.Peers[0].Peer != "bob" ||
		in.Peers[0].Status == StatusDone || !in.Fired.Equal(badRuns[0].Fired) {
		t.Fatalf("the hook read %q (%v); want bad's run with bob's refusal", raw, err)
	}
	if st, err := l.alice.Status(ctx); err != nil || !slices.Equal(st.FailedSchedules, []string{"bad"}) {
		t.Fatalf("Status().FailedSchedules = %v, %v; want [bad]", st.FailedSchedules, err)
	}
	if err := l.alice.RemoveSchedule(ctx, "bad"); err != nil {
		t.Fatal(err)
	}

	// No agent across four slots: one run when it comes back, for the first missed slot, and
	// the next slot an interval after that run.
	missed := okRuns[0].Deadline
	clock.advance(45 * time.Second)
	now := clock.now()
	l.alice.tickSchedules(ctx, sc)
	l.alice.tickSchedules(ctx, sc)
	okRuns = history(t, l.alice, "ok")
	if len(okRuns) != 2 || okRuns[1].Manual || !okRuns[1].Slot.Equal(missed) {
		t.Fatalf("after four missed slots: %d runs (%+v); want one more, for the slot at %s", len(okRuns), okRuns, missed)
	}
	list, err := l.alice.Schedules(ctx)
	if err != nil || len(list) != 1 || list[0].Next.Before(now.Add(10*time.Second)) || list[0].Next.After(clock.now().Add(10*time.Second)) {
		t.Fatalf("Schedules() = %+v, %v; want ok next due 10s after the catch-up run", list, err)
	}
	settle(t, l)

	// bob's agent stops: the run gets no answer by the next slot, and fails then.
	l.stopBob()
	clock.advance(10 * time.Second)
	l.alice.tickSchedules(ctx, sc)
	clock.advance(10 * time.Second)
	l.alice.tickSchedules(ctx, sc)
	okRuns = history(t, l.alice, "ok")
	if len(okRuns) != 4 {
		t.Fatalf("%d runs, want 4", len(okRuns))
	}
	if r := okRuns[2]; !r.Done || !r.Failed || r.Peers[0].Answered {
		t.Fatalf("the run bob did not answer: %+v; want failed, bob not answered", r)
	}
	if st, _ := l.alice.Status(ctx); !slices.Equal(st.FailedSchedules, []string{"ok"}) {
		t.Fatalf("Status().FailedSchedules = %v, want [ok]", st.FailedSchedules)
	}

	// schedule run: a run now, its slots unchanged.
	before, _ := l.alice.Schedules(ctx)
	r, err := l.alice.RunSchedule(ctx, "ok")
	if err != nil || !r.Manual || len(r.Peers) != 1 || r.Peers[0].ID == "" {
		t.Fatalf("RunSchedule = %+v, %v", r, err)
	}
	if after, _ := l.alice.Schedules(ctx); !after[0].Next.Equal(before[0].Next) {
		t.Fatalf("RunSchedule moved the next slot from %s to %s", before[0].Next, after[0].Next)
	}
}

func TestAddScheduleChecks(t *testing.T) {
	l := newLab(t)
	ctx := l.ctx
	echo := commands.Request{Name: "exec", Argv: []string{"echo"}}
	for what, spec := range map[string]ScheduleSpec{
		"no name":         {Target: "bob", Request: echo, Every: time.Hour},
		"both":            {Name: "x", Target: "bob", Request: echo, Every: time.Hour, Cron: "* * * * *"},
		"neither":         {Name: "x", Target: "bob", Request: echo},
		"below 1s":        {Name: "x", Target: "bob", Request: echo, Every: 500 * time.Millisecond},
		"jitter":          {Name: "x", Target: "bob", Request: echo, Every: time.Minute, Jitter: time.Minute},
		"bad cron":        {Name: "x", Target: "bob", Request: echo, Cron: "61 * * * *"},
		"cron jitter":     {Name: "x", Target: "bob", Request: echo, Cron: "* * * * *", Jitter: 2 * time.Minute},
		"bad target":      {Name: "x", Target: "bob,,", Request: echo, Every: time.Hour},
		"bad request":     {Name: "x", Target: "bob", Request: commands.Request{Name: "nope"}, Every: time.Hour},
		"hook with a NL":  {Name: "x", Target: "bob", Request: echo, Every: time.Hour, OnFailure: "a\nb"},
		"name with space": {Name: "a b", Target: "bob", Request: echo, Every: time.Hour},
	} {
		var se *ScheduleError
		if _, err := l.alice.AddSchedule(ctx, spec); !errors.As(err, &se) {
			t.Errorf("AddSchedule(%s) = %v, want a *ScheduleError", what, err)
		}
	}
	var te *TargetError
	if _, err := l.alice.AddSchedule(ctx, ScheduleSpec{Name: "x", Target: "@nobody", Request: echo, Every: time.Hour}); !errors.As(err, &te) {
		t.Errorf("AddSchedule to a tag nobody has = %v, want a *TargetError", err)
	}
	info, err := l.alice.AddSchedule(ctx, ScheduleSpec{Name: "x", Target: "bob", Request: echo, Every: time.Hour, Jitter: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if d := info.Next.Sub(info.Created); d < time.Hour || d >= 70*time.Minute {
		t.Errorf("first run %s after adding, want within [1h, 1h10m)", d)
	}
	if _, err := l.alice.AddSchedule(ctx, ScheduleSpec{Name: "x", Target: "bob", Request: echo, Every: time.Hour}); !errors.Is(err, ErrScheduleExists) {
		t.Errorf("adding x again = %v, want ErrScheduleExists", err)
	}
	info, err = l.alice.AddSchedule(ctx, ScheduleSpec{Name: "nightly", Target: "bob", Request: echo, Cron: "0 3 * * *"})
	if err != nil || info.Next.Hour() != 3 || info.Next.Minute() != 0 || !info.Next.After(info.Created) {
		t.Errorf("a cron schedule's first run: %s, %v; want the next 03:00", info.Next, err)
	}
	for _, f := range []func() error{
		func() error { return l.alice.RemoveSchedule(ctx, "nope") },
		func() error { _, err := l.alice.RunSchedule(ctx, "nope"); return err },
		func() error { _, err := l.alice.ScheduleRuns(ctx, "nope"); return err },
	} {
		if err := f(); !errors.Is(err, ErrNoSchedule) {
			t.Errorf("an unknown schedule: %v, want ErrNoSchedule", err)
		}
	}
}

// TestScheduleFireMakesHandshakeKeysAhead: a schedule's first fire to a peer without a session
// starts the handshake with a key made before the transaction that fires it (fireKeys), so
// that a first fire to a large fleet does not hold the state's one writer for half a second
// per peer. Both ways to fire: the scheduler's slot and `schedule run`.
func TestScheduleFireMakesHandshakeKeysAhead(t *testing.T) {
	l := newLab(t) // bob's agent does not run: alice's handshakes stay Initializing
	clock := &offsetClock{}
	l.alice.Close()
	l.clocks = map[string]func() time.Time{"alice": clock.now}
	l.alice = l.open("alice", nil, false)
	l.pairCarol()
	var madeInside atomic.Int32
	count := func() { madeInside.Add(1) }
	noKeyHook.Store(&count)
	t.Cleanup(func() { noKeyHook.Store(nil) })

	initializing := func(peer string) bool {
		t.Helper()
		var open bool
		if err := l.alice.view(func(tx *keystore.Tx, st TxStore) error {
			p, ok, err := tx.Peer(peer)
			if err != nil || !ok {
				return errors.Join(err, errors.New("no peer "+peer))
			}
			ids, err := st.SessionsOf(p.Fingerprint)
			for _, id := range ids {
				s, ok, err := st.Session(id)
				if err != nil {
					return err
				}
				open = open || ok && s.Role == session.Initiator && s.Status == session.Initializing
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return open
	}
	echo := commands.Request{Name: "exec", Argv: []string{"echo", "hi"}}
	for _, peer := range []string{"bob", "carol"} {
		if initializing(peer) {
			t.Fatalf("alice has a session with %s before the test", peer)
		}
	}
	if _, err := l.alice.AddSchedule(l.ctx, ScheduleSpec{Name: "slot", Target: "bob", Request: echo, Every: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.alice.AddSchedule(l.ctx, ScheduleSpec{Name: "manual", Target: "carol", Request: echo, Every: time.Hour}); err != nil {
		t.Fatal(err)
	}
	clock.advance(10 * time.Second)
	l.alice.tickSchedules(l.ctx, &scheduler{running: map[string]bool{}})
	if runs := history(t, l.alice, "slot"); len(runs) != 1 || len(runs[0].Peers) != 1 || runs[0].Peers[0].ID == "" {
		t.Fatalf("slot's history after its slot: %+v; want one run with a command to bob", runs)
	}
	if _, err := l.alice.RunSchedule(l.ctx, "manual"); err != nil && !errors.Is(err, ErrNotMailed) {
		t.Fatal(err)
	}
	if !initializing("bob") || !initializing("carol") {
		t.Fatalf("no handshake under way with bob (%v) or carol (%v) after the fires", initializing("bob"), initializing("carol"))
	}
	if n := madeInside.Load(); n != 0 {
		t.Fatalf("%d handshake keys were made inside the fire's transaction, want 0 (made ahead by fireKeys)", n)
	}
}

// TestCronJitterNeverSkipsASlot: `0 3,4 * * *` has a 23-hour gap and a 1-hour one. Checked at
// 03:30, the first gap is the long one, and a 5-hour jitter used to be accepted: a run fired at
// 03:00 plus up to 5 hours then passed the 04:00 slot, which was skipped. The jitter is checked
// against the shortest gap, and each slot's jitter is kept below the time to the slot after it
// (for a schedule stored before, or a clock change).
func TestCronJitterNeverSkipsASlot(t *testing.T) {
	echo := commands.Request{Name: "exec", Argv: []string{"echo"}}
	at0330 := time.Date(2031, 3, 4, 3, 30, 0, 0, time.UTC)
	spec := ScheduleSpec{Name: "x", Target: "bob", Request: echo, Cron: "0 3,4 * * *", Jitter: 5 * time.Hour}
	var se *ScheduleError
	if err := CheckScheduleSpec(spec, at0330); !errors.As(err, &se) || se.Field != "jitter" {
		t.Errorf("CheckScheduleSpec(%q, jitter 5h) at 03:30 = %v, want a jitter *ScheduleError", spec.Cron, err)
	}
	spec.Jitter = 59 * time.Minute
	if err := CheckScheduleSpec(spec, at0330); err != nil {
		t.Errorf("CheckScheduleSpec(%q, jitter 59m) = %v, want accepted", spec.Cron, err)
	}
	spec.Cron, spec.Jitter = "0 3 * * *", 5*time.Hour
	if err := CheckScheduleSpec(spec, at0330); err != nil {
		t.Errorf("CheckScheduleSpec(%q, jitter 5h) = %v, want accepted", spec.Cron, err)
	}

	s := keystore.Schedule{Name: "x", Cron: "0 3,4 * * *", Jitter: 5 * time.Hour}
	slot := time.Date(2031, 3, 5, 3, 0, 0, 0, time.UTC)
	next := slot.Add(time.Hour)
	for range 200 {
		if due := jittered(s, slot); due.Before(slot) || !due.Before(next) {
			t.Fatalf("the 03:00 slot with a 5h jitter fires at %s, want in [03:00, 04:00)", due.Format(time.TimeOnly))
		}
	}
	s = keystore.Schedule{Name: "y", Every: time.Hour, Jitter: 10 * time.Minute}
	for range 200 {
		if due := jittered(s, slot); due.Before(slot) || !due.Before(slot.Add(10*time.Minute)) {
			t.Fatalf("an hourly slot with a 10m jitter fires at %s, want in [03:00, 03:10)", due.Format(time.TimeOnly))
		}
	}
}
