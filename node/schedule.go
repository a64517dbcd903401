package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/cron"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// Schedules: commands the controller's agent sends by itself, every interval or at the times a
// cron expression names, to a target, keeping each run's outcome as a history.
//
// # Firing: once per slot, never twice, never lost
//
// A slot fires in ONE transaction (fireIn), after the handshake keys its peers without a session
// need were made outside it (fireKeys): the commands to every peer are recorded and sealed
// into the outbox (submitIn, as Submit does), the run is recorded with their ids, and the
// schedule's next slot is set. A crash before the commit leaves nothing, and the slot is still
// due at the next start; a crash after it leaves the mails in the durable outbox, which the
// sender mails at the next start, and the slot done. So a slot fires at most once and is never
// lost, and a command goes out at least once (a peer's ledger makes a mail that arrives twice
// run once). Only after the commit is the sender kicked.
//
// Slots missed while no agent ran fire once, when the agent starts: the schedule is overdue,
// fires one run (Slot says the first missed slot), and the next slot counts from then (an
// interval) or is the cron expression's next time after then.
//
// # Outcome
//
// A run is judged when every peer's command is final, or when the schedule's next run is due
// (its Deadline), whichever comes first: it failed when a peer's command did not end with exit
// status 0, a peer did not answer by then, or a peer could not be sent the command. A failed
// run of a schedule with a failure hook runs the hook (/bin/sh -c, the run as JSON on stdin,
// bounded by hookTimeout, in a process group of its own that ends with it: runHook) in the
// agent, beside the serving loop; a hook cut off by the agent stopping runs again at the next
// start (the run stays pending until its hook has run).

// ScheduleSpec is a schedule as `sealpost schedule add` gives it. Exactly one of Every and
// Cron is set.
type ScheduleSpec struct {
	Name      string           `json:"name"`
	Target    string           `json:"target"`
	Request   commands.Request `json:"request"`
	Every     time.Duration    `json:"every,omitempty"`
	Cron      string           `json:"cron,omitempty"`
	Jitter    time.Duration    `json:"jitter,omitempty"`
	OnFailure string           `json:"on_failure,omitempty"`
}

// ScheduleInfo is a schedule as `schedule list` shows it.
type ScheduleInfo struct {
	ScheduleSpec
	Created time.Time `json:"created"`
	// Next is when it fires next (its slot plus the jitter chosen for it).
	Next time.Time `json:"next"`
	// LastRun is the newest run, judged or not.
	LastRun *ScheduleRun `json:"last_run,omitempty"`
}

// ScheduleRun is one run of a schedule (keystore's record, under node's name).
type ScheduleRun = keystore.ScheduleRun

// ScheduleRunPeer is one peer's part of a run.
type ScheduleRunPeer = keystore.ScheduleRunPeer

var (
	// ErrNoSchedule: no schedule has the name given.
	ErrNoSchedule = errors.New("no such schedule")
	// ErrScheduleExists: a schedule with the name given exists already.
	ErrScheduleExists = errors.New("a schedule with this name exists")
)

// ScheduleError says which part of a schedule cannot be used, and why.
type ScheduleError struct {
	Field  string // name, every, cron, jitter, target, request, on-failure
	Reason string
}

func (e *ScheduleError) Error() string { return fmt.Sprintf("schedule %s: %s", e.Field, e.Reason) }

// hookTimeout bounds a failure hook.
var hookTimeout = time.Minute

// scheduleRetry is how soon the scheduler tries again what failed (a fire, a judgement).
const scheduleRetry = 5 * time.Second

// CheckScheduleSpec checks the form of spec without the state: a name, exactly one of an
// interval of at least 1s and a cron expression that parses, a jitter below the interval (for a
// cron expression, the shortest time between two of its runs: cronMinGap), a target and a
// request that can be sent. Errors are *ScheduleError.
func CheckScheduleSpec(spec ScheduleSpec, now time.Time) error {
	bad := func(field, format string, args ...any) error {
		return &ScheduleError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if spec.Name == "" || len(spec.Name) > 128 || strings.ContainsFunc(spec.Name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) {
		return bad("name", "%q: want 1 to 128 characters without spaces or control characters", spec.Name)
	}
	var interval time.Duration
	switch {
	case (spec.Every != 0) == (spec.Cron != ""):
		return bad("every", "give exactly one of --every and --cron")
	case spec.Every != 0 && spec.Every < time.Second:
		return bad("every", "%s is below the least interval, 1s", spec.Every)
	case spec.Every != 0:
		interval = spec.Every
	default:
		e, err := cron.Parse(spec.Cron)
		if err != nil {
			return bad("cron", "%v", err)
		}
		if e.Next(now).IsZero() {
			return bad("cron", "%q names no time in the next years", spec.Cron)
		}
		interval = cronMinGap(e, now)
	}
	if spec.Jitter < 0 || interval > 0 && spec.Jitter >= interval {
		return bad("jitter", "%s: want at least 0 and below the shortest time between two runs (%s)", spec.Jitter, interval)
	}
	if _, err := ParseTarget(spec.Target); err != nil {
		return bad("target", "%v", err)
	}
	if _, err := encodeRequest(spec.Request); err != nil {
		return bad("request", "%v", err)
	}
	if len(spec.OnFailure) > 4096 || strings.ContainsFunc(spec.OnFailure, unicode.IsControl) || strings.TrimSpace(spec.OnFailure) != spec.OnFailure {
		return bad("on-failure", "want one line of at most 4096 bytes, without control characters or spaces around it")
	}
	return nil
}

// nextSlot is the schedule's slot after after: an interval on, or the cron expression's next
// time (zero when it names none).
func nextSlot(s keystore.Schedule, after time.Time) time.Time {
	if s.Every > 0 {
		return after.Add(s.Every)
	}
	e, err := cron.Parse(s.Cron)
	if err != nil {
		return time.Time{}
	}
	return e.Next(after)
}

// cronGapMatches and cronGapWindow bound cronMinGap's search: an expression's next 400 times, or
// a year of them, show every gap it has (its pattern repeats within a year, leap days aside).
const (
	cronGapMatches = 400
	cronGapWindow  = 366 * 24 * time.Hour
)

// cronMinGap is the shortest time between two consecutive times of e from now on (over its
// next cronGapMatches times or a year of them, and at least the first two); 0 when e names
// fewer than two. A jitter must stay below it: the first gap alone (`0 3,4 * * *`: 23 hours
// from 03:30) let a jitter push a run past the next slot, which was then skipped. It is counted
// in UTC, so that a clock change (an hour repeated) does not refuse a daily schedule's jitter;
// jittered keeps each slot's jitter below that slot's own gap.
func cronMinGap(e *cron.Expr, now time.Time) time.Duration {
	t := e.Next(now.UTC())
	if t.IsZero() {
		return 0
	}
	end := t.Add(cronGapWindow)
	var gap time.Duration
	for range cronGapMatches {
		next := e.Next(t)
		if next.IsZero() {
			break
		}
		if d := next.Sub(t); gap == 0 || d < gap {
			gap = d
		}
		if next.After(end) {
			break
		}
		t = next
	}
	return gap
}

// jittered is slot delayed by a random part of s's jitter, kept below the slot after it: a
// run never fires past its next slot (which would then be skipped), even where a cron
// expression's gaps differ or a clock change shortens one.
func jittered(s keystore.Schedule, slot time.Time) time.Time {
	j := s.Jitter
	if j <= 0 || slot.IsZero() || slot.Equal(neverDue) {
		return slot
	}
	if next := nextSlot(s, slot); !next.IsZero() {
		j = min(j, next.Sub(slot))
	}
	if j <= 0 {
		return slot
	}
	return slot.Add(mrand.N(j))
}

// neverDue stands for "no next slot" (a cron expression that names no more times): far enough
// that it never fires, and a valid slot for the record.
var neverDue = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// AddSchedule checks spec (CheckScheduleSpec, and its target must name peers now) and stores
// it; its first run is one interval (or the cron expression's next time) from now.
func (n *Node) AddSchedule(ctx context.Context, spec ScheduleSpec) (ScheduleInfo, error) {
	now := n.now()
	if err := CheckScheduleSpec(spec, now); err != nil {
		return ScheduleInfo{}, err
	}
	var info ScheduleInfo
	err := n.update(func(tx *keystore.Tx, _ TxStore) error {
		if _, ok, err := tx.Schedule(spec.Name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%w: %q (remove it first: sealpost schedule remove %s)", ErrScheduleExists, spec.Name, spec.Name)
		}
		if _, err := n.resolveTarget(tx, spec.Target); err != nil {
			return err
		}
		s := keystore.Schedule{Name: spec.Name, Target: spec.Target, Command: spec.Request.Name, Argv: spec.Request.Argv,
			Timeout: spec.Request.Timeout, Every: spec.Every, Cron: spec.Cron, Jitter: spec.Jitter, OnFailure: spec.OnFailure, Created: now}
		s.Slot = nextSlot(s, now)
		if s.Slot.IsZero() {
			s.Slot = neverDue
		}
		s.Due = jittered(s, s.Slot)
		if err := tx.PutSchedule(s); err != nil {
			return err
		}
		info = scheduleInfo(s, nil)
		return nil
	})
	if err == nil {
		n.wakeScheduler()
	}
	return info, err
}

func scheduleInfo(s keystore.Schedule, last *keystore.ScheduleRun) ScheduleInfo {
	return ScheduleInfo{ScheduleSpec: ScheduleSpec{Name: s.Name, Target: s.Target,
		Request: commands.Request{Name: s.Command, Argv: s.Argv, Timeout: s.Timeout},
		Every:   s.Every, Cron: s.Cron, Jitter: s.Jitter, OnFailure: s.OnFailure}, Created: s.Created, Next: s.Due, LastRun: last}
}

// Schedules lists the schedules, by name, each with its newest run.
func (n *Node) Schedules(ctx context.Context) ([]ScheduleInfo, error) {
	var out []ScheduleInfo
	err := n.view(func(tx *keystore.Tx, _ TxStore) error {
		return tx.ForEachSchedule(func(s keystore.Schedule) error {
			r, ok, err := tx.LastScheduleRun(s.Name)
			if err != nil {
				return err
			}
			var last *ScheduleRun
			if ok {
				last = &r
			}
			out = append(out, scheduleInfo(s, last))
			return nil
		})
	})
	return out, err
}

// RemoveSchedule removes a schedule and its history (ErrNoSchedule when there is none). The
// commands of its runs stay in the results.
func (n *Node) RemoveSchedule(ctx context.Context, name string) error {
	err := n.update(func(tx *keystore.Tx, _ TxStore) error { return tx.DeleteSchedule(name) })
	if errors.Is(err, keystore.ErrNotFound) || errors.Is(err, keystore.ErrInvalid) {
		return fmt.Errorf("%w named %q (see `sealpost schedule list`)", ErrNoSchedule, name)
	}
	return err
}

// ScheduleRuns returns the history of a schedule, oldest first.
func (n *Node) ScheduleRuns(ctx context.Context, name string) ([]ScheduleRun, error) {
	var runs []ScheduleRun
	err := n.view(func(tx *keystore.Tx, _ TxStore) error {
		if _, ok, err := tx.Schedule(name); err != nil || !ok {
			return errors.Join(err, fmt.Errorf("%w named %q (see `sealpost schedule list`)", ErrNoSchedule, name))
		}
		var err error
		runs, err = tx.ScheduleRuns(name)
		return err
	})
	return runs, err
}

// RunSchedule fires a schedule now, outside its slots (which stay as they were), and mails the
// commands. The run is judged by the schedule's next slot.
func (n *Node) RunSchedule(ctx context.Context, name string) (ScheduleRun, error) {
	var run ScheduleRun
	keys, err := n.fireKeys(ctx, name)
	if err != nil {
		return run, err
	}
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		var err error
		run, _, err = n.fireIn(tx, st, name, n.now(), true, keys)
		return err
	})
	if err != nil {
		return run, err
	}
	n.wakeScheduler()
	if err := n.flushSoon(ctx); err != nil {
		n.log.Warn("schedule fired; mailing its commands failed and will be retried", "op", "schedule", "name", name, "err", err)
		return run, fmt.Errorf("%w: %v", ErrNotMailed, err)
	}
	return run, nil
}

// fireKeys makes, before the transaction that fires schedule name, the handshake keys of its
// peers that have no session yet (handshakeKeys, on every core). Made inside it, each RSA key
// would hold the state's one writer for about half a second: minutes when a schedule first
// fires to a large fleet. The transaction resolves the target again and checks again that the
// slot is due; a key it does not use costs only the time it took.
func (n *Node) fireKeys(ctx context.Context, name string) (*keySupply, error) {
	var specs []RunSpec
	if err := n.view(func(tx *keystore.Tx, _ TxStore) error {
		s, ok, err := tx.Schedule(name)
		if err != nil || !ok {
			return err // fireIn says what is wrong
		}
		names, err := n.resolveTarget(tx, s.Target)
		if err != nil {
			return nil // fireIn records it in the run
		}
		for _, p := range names {
			specs = append(specs, RunSpec{Peer: p})
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return n.handshakeKeys(ctx, specs)
}

// fireIn fires schedule name in tx (see "Firing" above): a due slot, or with manual a run now.
// fired: false when the schedule was not due (another fire got there first). keys holds the
// handshake keys made ahead (fireKeys).
func (n *Node) fireIn(tx *keystore.Tx, st TxStore, name string, now time.Time, manual bool, keys *keySupply) (run ScheduleRun, fired bool, err error) {
	s, ok, err := tx.Schedule(name)
	if err != nil {
		return run, false, err
	}
	if !ok {
		return run, false, fmt.Errorf("%w named %q (see `sealpost schedule list`)", ErrNoSchedule, name)
	}
	if !manual && s.Due.After(now) {
		return run, false, nil
	}
	if len(s.Pending) >= keystore.MaxPendingRuns {
		return run, false, fmt.Errorf("schedule %q has %d runs waiting for their outcome; wait for them", name, len(s.Pending))
	}
	// Two runs of a schedule never share a fired time (its key): a clock that did not move
	// between two fires moves the second a nanosecond on.
	at := now
	for {
		if _, taken, err := tx.ScheduleRun(name, at); err != nil {
			return run, false, err
		} else if !taken {
			break
		}
		at = at.Add(time.Nanosecond)
	}
	slot, due := s.Slot, s.Due
	if manual {
		slot = at
	} else {
		// The next slot: an interval on from this one, or from now when that passed too (slots
		// missed while no agent ran fire once); the cron expression's next time after now.
		next := nextSlot(s, s.Slot)
		if s.Every == 0 || !next.After(now) {
			next = nextSlot(s, now)
		}
		if next.IsZero() {
			next = neverDue
		}
		s.Slot, s.Due = next, jittered(s, next)
		due = s.Due
	}
	if !due.After(now) { // a manual run while the schedule is overdue: judged by its next slot
		due = nextSlot(s, now)
	}
	run = ScheduleRun{Schedule: name, Fired: at, Slot: slot, Manual: manual, Deadline: due}
	req := commands.Request{Name: s.Command, Argv: s.Argv, Timeout: s.Timeout, Sent: now}
	frame, err := encodeRequest(req)
	if err != nil {
		return run, false, err
	}
	// The command may wait for its peer until the run is judged (at least a minute, at most a day).
	ttl := min(max(due.Sub(now), time.Minute), 24*time.Hour)
	names, err := n.resolveTarget(tx, s.Target)
	if err != nil {
		run.Error = clip(err.Error(), maxRunText)
	}
	for _, peer := range names {
		if _, pinned, err := tx.Peer(peer); err != nil {
			return run, false, err
		} else if !pinned {
			run.Peers = append(run.Peers, ScheduleRunPeer{Peer: peer, Error: "not paired yet: nothing sent"})
			continue
		}
		var id session.CommandID
		if _, err := rand.Read(id[:]); err != nil {
			return run, false, err
		}
		if _, err := n.submitIn(tx, st, id, RunSpec{ID: id, Peer: peer, Request: req, TTL: ttl}, frame, now, keys); err != nil {
			return run, false, fmt.Errorf("schedule %s: command to %s: %w", name, peer, err)
		}
		run.Peers = append(run.Peers, ScheduleRunPeer{Peer: peer, ID: id.String()})
	}
	if err := tx.PutScheduleRun(run); err != nil {
		return run, false, err
	}
	s.Pending = append(s.Pending, at)
	if !manual {
		s.LastFired = at
	}
	return run, true, tx.PutSchedule(s)
}

const maxRunText = 1000

// succeeded reports whether a final result counts as a success for a schedule: the command
// ran and exited with status 0.
func succeeded(r Result) bool {
	if r.Status != StatusDone || r.ExitCode != 0 || r.Signal != 0 {
		return false
	}
	return r.Outcome == commands.OutcomeExited || r.Outcome == commands.OutcomeUnknown && r.Error == ""
}

// judgeIn judges the pending runs of schedule name that can be (all answers in, or the
// deadline passed), and drops from its pending list the runs that are done with no hook due.
// It returns the runs whose hook is due, with the hook command.
func (n *Node) judgeIn(tx *keystore.Tx, name string, now time.Time) ([]hookJob, error) {
	s, ok, err := tx.Schedule(name)
	if err != nil || !ok {
		return nil, err
	}
	var keep []time.Time
	var hooks []hookJob
	for _, fired := range s.Pending {
		r, ok, err := tx.ScheduleRun(name, fired)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if !r.Done {
			results := make([]Result, len(r.Peers))
			all := true
			for i, p := range r.Peers {
				if p.ID == "" {
					continue
				}
				id, err := ParseCommandID(p.ID)
				if err != nil {
					return nil, err
				}
				kr, ok, err := tx.Result(id)
				if err != nil {
					return nil, err
				}
				if !ok {
					results[i] = Result{CommandID: id, Status: StatusMissing}
					continue
				}
				results[i] = resultOf(kr)
				all = all && Final(kr.Status)
			}
			if !all && now.Before(r.Deadline) {
				keep = append(keep, fired)
				continue
			}
			r.Done, r.Judged, r.Failed = true, now, r.Error != ""
			for i := range r.Peers {
				p := &r.Peers[i]
				if p.ID == "" {
					r.Failed = true
					continue
				}
				res := results[i]
				p.Answered = Final(res.Status) && res.Status != StatusMissing
				p.Status, p.ExitCode, p.Error = res.Status, res.ExitCode, clip(res.Error, maxRunText)
				if res.Outcome != commands.OutcomeUnknown {
					p.Outcome = res.Outcome.String()
				}
				if !p.Answered || !succeeded(res) {
					r.Failed = true
				}
			}
			if r.Failed && s.OnFailure != "" {
				r.Hook = keystore.HookDue
			}
			if err := tx.PutScheduleRun(r); err != nil {
				return nil, err
			}
			if r.Failed {
				n.log.Warn("a scheduled run failed", "op", "schedule", "name", name, "fired", r.Fired)
			}
		}
		if r.Hook == keystore.HookDue {
			keep = append(keep, fired)
			hooks = append(hooks, hookJob{run: r, target: s.Target, command: s.OnFailure})
		}
	}
	if slices.Equal(keep, s.Pending) {
		return hooks, nil
	}
	s.Pending = keep
	return hooks, tx.PutSchedule(s)
}

// scheduler is the agent's part that fires schedules, while Serve runs.
type scheduler struct {
	wake    chan struct{}
	hooks   sync.WaitGroup
	mu      sync.Mutex
	running map[string]bool // hooks under way, by schedule name and fired time
}

// wakeScheduler makes the running scheduler look at the schedules again (one was added or run).
func (n *Node) wakeScheduler() {
	if sc := n.sched.Load(); sc != nil {
		select {
		case sc.wake <- struct{}{}:
		default:
		}
	}
}

// startScheduler runs the scheduler until the returned stop is called: it fires what is due,
// judges runs as their answers come in (it is notified with the waiters of their commands) or
// their deadlines pass, and starts failure hooks. stop waits for the hooks under way (which end
// with the agent, and run again at the next start).
func (n *Node) startScheduler(ctx context.Context) (stop func()) {
	sc := &scheduler{wake: make(chan struct{}, 1), running: map[string]bool{}}
	n.sched.Store(sc)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		unwatch := func() {}
		defer func() { unwatch() }()
		for {
			next, ids := n.tickSchedules(ctx, sc)
			unwatch()
			unwatch = n.watchResults(sc.wake, ids)
			var timer <-chan time.Time
			t := time.NewTimer(time.Hour)
			if !next.IsZero() {
				t.Reset(max(next.Sub(n.now()), 0))
				timer = t.C
			}
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-sc.wake:
			case <-timer:
			}
			t.Stop()
		}
	}()
	return func() {
		n.sched.Store(nil)
		cancel()
		<-done
		sc.hooks.Wait()
	}
}

// runSchedulesOnce is the scheduler for `agent --once`: fire what is due, judge what can be,
// and run the hooks due, waiting for them.
func (n *Node) runSchedulesOnce(ctx context.Context) {
	sc := &scheduler{running: map[string]bool{}}
	n.tickSchedules(ctx, sc)
	sc.hooks.Wait()
}

// watchResults registers ch with the waiters of ids, so that a result becoming final wakes the
// scheduler; the function returned forgets them.
func (n *Node) watchResults(ch chan struct{}, ids []session.CommandID) func() {
	if len(ids) == 0 {
		return func() {}
	}
	n.waitMu.Lock()
	for _, id := range ids {
		n.waiters[id] = append(n.waiters[id], ch)
	}
	n.waitMu.Unlock()
	return func() {
		n.waitMu.Lock()
		defer n.waitMu.Unlock()
		for _, id := range ids {
			n.waiters[id] = slices.DeleteFunc(n.waiters[id], func(c chan struct{}) bool { return c == ch })
			if len(n.waiters[id]) == 0 {
				delete(n.waiters, id)
			}
		}
	}
}

// tickSchedules does what is due now; it returns when it next has something to do (zero:
// nothing scheduled) and the commands whose answers it waits for.
func (n *Node) tickSchedules(ctx context.Context, sc *scheduler) (time.Time, []session.CommandID) {
	now := n.now()
	var names, due []string
	if err := n.view(func(tx *keystore.Tx, _ TxStore) error {
		return tx.ForEachSchedule(func(s keystore.Schedule) error {
			if len(s.Pending) > 0 {
				names = append(names, s.Name)
			}
			if !s.Due.After(now) {
				due = append(due, s.Name)
			}
			return nil
		})
	}); err != nil {
		n.log.Warn("could not read the schedules", "op", "schedule", "err", err)
		return now.Add(time.Minute), nil
	}
	// Judge first: a run whose deadline is the slot firing now is judged before the next run.
	for _, name := range names {
		var hooks []hookJob
		if err := n.update(func(tx *keystore.Tx, _ TxStore) error {
			var err error
			hooks, err = n.judgeIn(tx, name, now)
			return err
		}); err != nil {
			n.log.Warn("could not judge a scheduled run", "op", "schedule", "name", name, "err", err)
			continue
		}
		for _, h := range hooks {
			n.startHook(ctx, sc, h)
		}
	}
	fired := false
	for _, name := range due {
		var ok bool
		keys, err := n.fireKeys(ctx, name)
		if err == nil {
			err = n.update(func(tx *keystore.Tx, st TxStore) error {
				var err error
				_, ok, err = n.fireIn(tx, st, name, now, false, keys)
				return err
			})
		}
		if err != nil {
			n.log.Warn("a schedule could not fire; it is tried again", "op", "schedule", "name", name, "err", err)
			continue
		}
		if ok {
			fired = true
			n.log.Info("a schedule fired", "op", "schedule", "name", name)
		}
	}
	if fired {
		if err := n.flushSoon(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("scheduled commands queued; mailing them failed and will be retried", "op", "flush", "err", err)
		}
	}
	var next time.Time
	var ids []session.CommandID
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	err := n.view(func(tx *keystore.Tx, _ TxStore) error {
		return tx.ForEachSchedule(func(s keystore.Schedule) error {
			soonest(s.Due)
			for _, p := range s.Pending {
				r, ok, err := tx.ScheduleRun(s.Name, p)
				if err != nil || !ok || r.Done {
					continue
				}
				soonest(r.Deadline)
				for _, pr := range r.Peers {
					if id, err := ParseCommandID(pr.ID); err == nil && pr.ID != "" {
						ids = append(ids, id)
					}
				}
			}
			return nil
		})
	})
	if err != nil {
		return now.Add(time.Minute), nil
	}
	if !next.IsZero() && !next.After(now) {
		// Still due after this tick: a fire or a judgement failed (the store, say). Try again
		// a little later, not in a busy loop.
		next = now.Add(scheduleRetry)
	}
	return next, ids
}

// hookJob is a failure hook to run: the run it is for, and the command.
type hookJob struct {
	run     ScheduleRun
	target  string
	command string
}

// HookInput is what a failure hook reads on its stdin, as JSON.
type HookInput struct {
	Schedule    string            `json:"schedule"`
	Target      string            `json:"target"`
	Fired       time.Time         `json:"fired"`
	Slot        time.Time         `json:"slot"`
	Manual      bool              `json:"manual,omitempty"`
	Error       string            `json:"error,omitempty"`
	Peers       []ScheduleRunPeer `json:"peers"`
	NotAnswered []string          `json:"not_answered"`
}

// startHook runs a failure hook in its own goroutine (unless it already runs), bounded by
// hookTimeout, and records how it went; the agent stopping ends it, and the run keeps its hook
// due for the next start.
func (n *Node) startHook(ctx context.Context, sc *scheduler, h hookJob) {
	key := h.run.Schedule + "\x00" + h.run.Fired.String()
	sc.mu.Lock()
	if sc.running[key] {
		sc.mu.Unlock()
		return
	}
	sc.running[key] = true
	sc.mu.Unlock()
	sc.hooks.Add(1)
	go func() {
		defer sc.hooks.Done()
		defer func() { sc.mu.Lock(); delete(sc.running, key); sc.mu.Unlock() }()
		in := HookInput{Schedule: h.run.Schedule, Target: h.target, Fired: h.run.Fired, Slot: h.run.Slot, Manual: h.run.Manual,
			Error: h.run.Error, Peers: h.run.Peers, NotAnswered: []string{}}
		for _, p := range h.run.Peers {
			if p.ID != "" && !p.Answered {
				in.NotAnswered = append(in.NotAnswered, p.Peer)
			}
		}
		stdin, _ := json.Marshal(in)
		out, err := runHook(ctx, h.command, append(stdin, '\n'), hookTimeout)
		if ctx.Err() != nil {
			return // the agent stops: the hook stays due and runs again at the next start
		}
		state, why := keystore.HookRan, ""
		if err != nil {
			state = keystore.HookFailed
			why = clip(strings.TrimSpace(fmt.Sprintf("%v: %s", err, lastLines(out, 400))), maxRunText)
			n.log.Warn("a schedule's failure hook failed", "op", "schedule", "name", h.run.Schedule, "err", why)
		}
		uerr := n.update(func(tx *keystore.Tx, _ TxStore) error {
			r, ok, err := tx.ScheduleRun(h.run.Schedule, h.run.Fired)
			if err != nil || !ok {
				return err // the schedule was removed meanwhile
			}
			r.Hook, r.HookError = state, why
			if err := tx.PutScheduleRun(r); err != nil {
				return err
			}
			s, ok, err := tx.Schedule(h.run.Schedule)
			if err != nil || !ok {
				return err
			}
			s.Pending = slices.DeleteFunc(s.Pending, h.run.Fired.Equal)
			return tx.PutSchedule(s)
		})
		if uerr != nil {
			n.log.Warn("could not record a failure hook's end; it may run again", "op", "schedule", "name", h.run.Schedule, "err", uerr)
		}
	}()
}

// runHook runs command with /bin/sh -c, stdin on its standard input, bounded by timeout and
// ctx, and returns its output. The shell runs in a process group of its own (hookProcGroup),
// and the whole group is killed when the hook times out or the agent stops, and once the shell
// has ended, so that a child it started does not outlive it (THREATS.md row 39: killing the
// shell alone left its children running). A child that leaves the group (setsid) escapes this.
func runHook(ctx context.Context, command string, stdin []byte, timeout time.Duration) (string, error) {
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, "/bin/sh", "-c", command)
	cmd.Stdin = bytes.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second // a child holding the output open does not keep the hook
	hookProcGroup(cmd)
	err := cmd.Run()
	if cmd.Process != nil {
		endHookGroup(cmd.Process.Pid)
	}
	return out.String(), err
}

// lastLines is the end of s, at most max bytes.
func lastLines(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "…" + s[len(s)-max:]
}

// failedSchedules names the schedules whose last judged run failed (Status).
func failedSchedules(tx *keystore.Tx) ([]string, error) {
	var out []string
	err := tx.ForEachSchedule(func(s keystore.Schedule) error {
		runs, err := tx.ScheduleRuns(s.Name)
		if err != nil {
			return err
		}
		for i := len(runs) - 1; i >= 0; i-- {
			if runs[i].Done {
				if runs[i].Failed {
					out = append(out, s.Name)
				}
				break
			}
		}
		return nil
	})
	return out, err
}

// scheduleOp is the control socket's schedule operation: Do is add, list, remove, run or runs.
type scheduleOp struct {
	Do   string        `json:"do"`
	Name string        `json:"name,omitempty"`
	Spec *ScheduleSpec `json:"spec,omitempty"`
}

// scheduleOut is its answer.
type scheduleOut struct {
	Info *ScheduleInfo  `json:"info,omitempty"`
	List []ScheduleInfo `json:"list,omitempty"`
	Run  *ScheduleRun   `json:"run,omitempty"`
	Runs []ScheduleRun  `json:"runs,omitempty"`
}

func (n *Node) serveSchedule(ctx context.Context, op scheduleOp) (*scheduleOut, error) {
	out := &scheduleOut{}
	var err error
	switch op.Do {
	case "add":
		if op.Spec == nil {
			return nil, errors.New("control operation schedule add without a schedule")
		}
		var info ScheduleInfo
		info, err = n.AddSchedule(ctx, *op.Spec)
		out.Info = &info
	case "list":
		out.List, err = n.Schedules(ctx)
	case "remove":
		err = n.RemoveSchedule(ctx, op.Name)
	case "run":
		var r ScheduleRun
		r, err = n.RunSchedule(ctx, op.Name)
		out.Run = &r
	case "runs":
		out.Runs, err = n.ScheduleRuns(ctx, op.Name)
	default:
		return nil, fmt.Errorf("unknown schedule operation %q (is this client a different sealpost version than the agent?)", op.Do)
	}
	return out, err
}

func (cl *Client) schedule(ctx context.Context, op scheduleOp) (*scheduleOut, error) {
	r, err := cl.call(ctx, controlRequest{Op: "schedule", Schedule: &op})
	if r.Schedule == nil {
		r.Schedule = &scheduleOut{}
	}
	return r.Schedule, err
}

func (cl *Client) AddSchedule(ctx context.Context, spec ScheduleSpec) (ScheduleInfo, error) {
	out, err := cl.schedule(ctx, scheduleOp{Do: "add", Spec: &spec})
	if out.Info == nil {
		return ScheduleInfo{}, err
	}
	return *out.Info, err
}

func (cl *Client) Schedules(ctx context.Context) ([]ScheduleInfo, error) {
	out, err := cl.schedule(ctx, scheduleOp{Do: "list"})
	return out.List, err
}

func (cl *Client) RemoveSchedule(ctx context.Context, name string) error {
	_, err := cl.schedule(ctx, scheduleOp{Do: "remove", Name: name})
	return err
}

func (cl *Client) RunSchedule(ctx context.Context, name string) (ScheduleRun, error) {
	out, err := cl.schedule(ctx, scheduleOp{Do: "run", Name: name})
	if out.Run == nil {
		return ScheduleRun{}, err
	}
	return *out.Run, err
}

func (cl *Client) ScheduleRuns(ctx context.Context, name string) ([]ScheduleRun, error) {
	out, err := cl.schedule(ctx, scheduleOp{Do: "runs", Name: name})
	return out.Runs, err
}
