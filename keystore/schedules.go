package keystore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"time"
)

// Schedules: commands a controller's agent sends by itself, every interval or by a cron
// expression, to a target (node decides what fires when; keystore keeps the records), and the
// history of their runs:
//
//	schedules      schedule name -> JSON Schedule
//	schedule_runs  schedule name || 0x00 || T(fired) -> JSON ScheduleRun
//
// A name holds no control character, so the 0x00 ends it and one schedule's runs are one key
// range. The history is bounded: PutScheduleRun keeps the newest MaxScheduleRuns runs of a
// schedule (plus those still Pending) and deletes older ones in the same transaction.

// MaxScheduleRuns is how many runs of one schedule the history keeps.
const MaxScheduleRuns = 100

// MaxPendingRuns bounds the runs of one schedule whose outcome (or failure hook) is still due.
const MaxPendingRuns = 100

const (
	maxTargetLen    = 4096
	maxOnFailureLen = 4096
	maxRunError     = 1024
)

// Schedule is one schedule. Exactly one of Every and Cron is set.
type Schedule struct {
	Name   string `json:"name"`
	Target string `json:"target"` // as given: bob, @web, @all, a,b (resolved at each run)
	// Command, Argv and Timeout are the request: a built-in command name, or "exec" with Argv.
	Command string        `json:"command"`
	Argv    []string      `json:"argv,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	Every   time.Duration `json:"every,omitempty"`
	Cron    string        `json:"cron,omitempty"`
	// Jitter delays each run by a random part of it, chosen when the run's time is set.
	Jitter    time.Duration `json:"jitter,omitempty"`
	OnFailure string        `json:"on_failure,omitempty"` // a shell command run when a run fails
	Created   time.Time     `json:"created"`
	// Slot is the next time the schedule is due; Due is when it fires (Slot plus its jitter).
	Slot time.Time `json:"slot"`
	Due  time.Time `json:"due"`
	// LastFired is when the schedule last fired (zero: never).
	LastFired time.Time `json:"last_fired,omitzero"`
	// Pending are the fired times of the runs whose outcome, or whose failure hook, is still due.
	Pending []time.Time `json:"pending,omitempty"`
}

func checkScheduleName(n string) error { return checkText("schedule name", n, maxNameLen, false) }

func (s Schedule) validate() error {
	if err := checkScheduleName(s.Name); err != nil {
		return err
	}
	if err := checkTimes("schedule "+s.Name, append([]time.Time{s.Created, s.Slot, s.Due, s.LastFired}, s.Pending...)...); err != nil {
		return err
	}
	if err := checkText("schedule target", s.Target, maxTargetLen, false); err != nil {
		return err
	}
	if err := checkText("schedule command", s.Command, maxNameLen, false); err != nil {
		return err
	}
	switch {
	case (s.Every > 0) == (s.Cron != ""):
		return invalidf("schedule %q: want exactly one of an interval and a cron expression", s.Name)
	case s.Every != 0 && s.Every < time.Second:
		return invalidf("schedule %q: interval %s is below 1s", s.Name, s.Every)
	case s.Jitter < 0 || s.Timeout < 0:
		return invalidf("schedule %q: a negative duration", s.Name)
	case s.Every > 0 && s.Jitter >= s.Every:
		return invalidf("schedule %q: jitter %s is not below the interval %s", s.Name, s.Jitter, s.Every)
	case s.Slot.IsZero() || s.Due.Before(s.Slot):
		return invalidf("schedule %q: due %s before its slot %s", s.Name, s.Due, s.Slot)
	case len(s.Pending) > MaxPendingRuns:
		return invalidf("schedule %q: %d runs pending, at most %d", s.Name, len(s.Pending), MaxPendingRuns)
	case !slices.IsSortedFunc(s.Pending, time.Time.Compare):
		return invalidf("schedule %q: pending runs out of order", s.Name)
	}
	if s.Cron != "" {
		if err := checkText("cron expression", s.Cron, maxNameLen*4, true); err != nil {
			return err
		}
	}
	if s.OnFailure != "" {
		if err := checkText("failure hook", s.OnFailure, maxOnFailureLen, true); err != nil {
			return err
		}
	}
	return nil
}

func decodeSchedule(k, v []byte) (Schedule, error) {
	var s Schedule
	if err := json.Unmarshal(v, &s); err != nil {
		return Schedule{}, corruptf("schedule %q: %v", k, err)
	}
	if s.Name != string(k) {
		return Schedule{}, corruptf("schedule under %q is named %q", k, s.Name)
	}
	if err := s.validate(); err != nil {
		return Schedule{}, corruptf("schedule %q: %v", k, err)
	}
	return s, nil
}

// Schedule returns the schedule called name.
func (tx *Tx) Schedule(name string) (Schedule, bool, error) {
	if err := checkScheduleName(name); err != nil {
		return Schedule{}, false, err
	}
	v := tx.bucket(bSchedules).Get([]byte(name))
	if v == nil {
		return Schedule{}, false, nil
	}
	s, err := decodeSchedule([]byte(name), v)
	return s, err == nil, err
}

// PutSchedule stores s, a new schedule or a change to one. Each of its Pending times must name
// a run already stored (PutScheduleRun first).
func (tx *Tx) PutSchedule(s Schedule) error {
	s.Created, s.Slot, s.Due, s.LastFired = s.Created.UTC(), s.Slot.UTC(), s.Due.UTC(), s.LastFired.UTC()
	s.Pending = slices.Clone(s.Pending)
	for i := range s.Pending {
		s.Pending[i] = s.Pending[i].UTC()
	}
	slices.SortFunc(s.Pending, time.Time.Compare)
	s.Pending = slices.CompactFunc(s.Pending, time.Time.Equal)
	if err := s.validate(); err != nil {
		return err
	}
	for _, p := range s.Pending {
		if tx.bucket(bScheduleRuns).Get(runKey(s.Name, p)) == nil {
			return notFoundf("run of schedule %q fired at %s", s.Name, p)
		}
	}
	if err := putJSON(tx.bucket(bSchedules), []byte(s.Name), s); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_schedule", slog.String("name", s.Name))
	}
	return nil
}

// DeleteSchedule removes the schedule called name and its history (ErrNotFound if absent).
func (tx *Tx) DeleteSchedule(name string) error {
	if err := checkScheduleName(name); err != nil {
		return err
	}
	if err := deleteExisting(tx, bSchedules, []byte(name), "schedule "+name, "delete_schedule", slog.String("name", name)); err != nil {
		return err
	}
	var keys [][]byte
	scanPrefix(tx.bucket(bScheduleRuns), runPrefix(name), func(k []byte) { keys = append(keys, clone(k)) })
	for _, k := range keys {
		if err := tx.bucket(bScheduleRuns).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// ForEachSchedule calls fn with every schedule, in name order.
func (tx *Tx) ForEachSchedule(fn func(Schedule) error) error {
	return tx.bucket(bSchedules).ForEach(func(k, v []byte) error {
		s, err := decodeSchedule(k, v)
		if err != nil {
			return err
		}
		return fn(s)
	})
}

// ScheduleRun is one run of a schedule: what was sent to whom, and, once known, how it went.
type ScheduleRun struct {
	Schedule string    `json:"schedule"`
	Fired    time.Time `json:"fired"`
	// Slot is the time the run was due (before jitter); for a run that catches up with slots
	// missed while no agent ran, the first of them. Manual: fired by `schedule run`.
	Slot   time.Time `json:"slot"`
	Manual bool      `json:"manual,omitempty"`
	// Deadline is the schedule's next slot when the run fired: a peer that has not answered by
	// then did not answer.
	Deadline time.Time `json:"deadline"`
	// Error says why nothing was sent (the target names no peer any more).
	Error string            `json:"error,omitempty"`
	Peers []ScheduleRunPeer `json:"peers"`
	// Done: the outcome is known (every peer answered, or the deadline passed), at Judged;
	// Failed: a peer failed, did not answer, or could not be sent the command.
	Done   bool      `json:"done,omitempty"`
	Judged time.Time `json:"judged,omitzero"`
	Failed bool      `json:"failed,omitempty"`
	// Hook is where the failure hook stands: "" none, HookDue, HookRan or HookFailed (HookError
	// says why).
	Hook      string `json:"hook,omitempty"`
	HookError string `json:"hook_error,omitempty"`
}

// Failure hook states.
const (
	HookDue    = "due"
	HookRan    = "ran"
	HookFailed = "failed"
)

// ScheduleRunPeer is one peer's part of a run.
type ScheduleRunPeer struct {
	Peer string `json:"peer"`
	// ID is the command's id, 32 lower-case hex digits; empty when none was sent (Error says why).
	ID string `json:"id,omitempty"`
	// Status, Outcome, ExitCode: the command's result when the run was judged (Answered: final
	// by then).
	Answered bool   `json:"answered"`
	Status   string `json:"status,omitempty"`
	Outcome  string `json:"outcome,omitempty"`
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
}

func (r ScheduleRun) validate() error {
	if err := checkScheduleName(r.Schedule); err != nil {
		return err
	}
	if err := checkTimes("schedule run of "+r.Schedule, r.Fired, r.Slot, r.Deadline, r.Judged); err != nil {
		return err
	}
	if r.Fired.IsZero() {
		return invalidf("run of %q: no fired time", r.Schedule)
	}
	switch r.Hook {
	case "", HookDue, HookRan, HookFailed:
	default:
		return invalidf("run of %q: hook state %q", r.Schedule, r.Hook)
	}
	if len(r.Error) > maxRunError || len(r.HookError) > maxRunError {
		return invalidf("run of %q: an error longer than %d bytes", r.Schedule, maxRunError)
	}
	for _, p := range r.Peers {
		if err := checkName(p.Peer); err != nil {
			return err
		}
		if p.ID != "" {
			if b, err := hex.DecodeString(p.ID); err != nil || len(b) != 16 || hex.EncodeToString(b) != p.ID {
				return invalidf("run of %q: command id %q of %s", r.Schedule, p.ID, p.Peer)
			}
		}
		if len(p.Error) > maxRunError {
			return invalidf("run of %q: an error longer than %d bytes", r.Schedule, maxRunError)
		}
	}
	return nil
}

func runPrefix(name string) []byte { return append([]byte(name), 0) }

func runKey(name string, fired time.Time) []byte { return append(runPrefix(name), timeKey(fired)...) }

// splitRunKey returns the name and time a schedule_runs key holds.
func splitRunKey(k []byte) (string, time.Time, bool) {
	i := bytes.IndexByte(k, 0)
	if i <= 0 || len(k)-i-1 != timeKeyLen || !canonicalTimeKey(k[i+1:]) {
		return "", time.Time{}, false
	}
	return string(k[:i]), parseTimeKey(k[i+1:]), true
}

func decodeScheduleRun(k, v []byte) (ScheduleRun, error) {
	name, fired, ok := splitRunKey(k)
	if !ok {
		return ScheduleRun{}, corruptf("schedule_runs: key %x is not a name, a zero byte and a time", k)
	}
	var r ScheduleRun
	if err := json.Unmarshal(v, &r); err != nil {
		return ScheduleRun{}, corruptf("schedule run %q %s: %v", name, fired, err)
	}
	if r.Schedule != name || !r.Fired.Equal(fired) {
		return ScheduleRun{}, corruptf("schedule run under %q %s is of %q %s", name, fired, r.Schedule, r.Fired)
	}
	if err := r.validate(); err != nil {
		return ScheduleRun{}, corruptf("schedule run %q %s: %v", name, fired, err)
	}
	return r, nil
}

// PutScheduleRun stores a run (new, or updated) of an existing schedule, and deletes the
// schedule's oldest runs beyond MaxScheduleRuns that are not pending.
func (tx *Tx) PutScheduleRun(r ScheduleRun) error {
	r.Fired, r.Slot, r.Deadline, r.Judged = r.Fired.UTC(), r.Slot.UTC(), r.Deadline.UTC(), r.Judged.UTC()
	if err := r.validate(); err != nil {
		return err
	}
	s, ok, err := tx.Schedule(r.Schedule)
	if err != nil {
		return err
	}
	if !ok {
		return notFoundf("schedule %q", r.Schedule)
	}
	b := tx.bucket(bScheduleRuns)
	if err := putJSON(b, runKey(r.Schedule, r.Fired), r); err != nil {
		return err
	}
	var old [][]byte // oldest first, not pending
	n := 0
	scanPrefix(b, runPrefix(r.Schedule), func(k []byte) {
		n++
		if _, fired, ok := splitRunKey(k); ok && !slices.ContainsFunc(s.Pending, fired.Equal) && !fired.Equal(r.Fired) {
			old = append(old, clone(k))
		}
	})
	for i := 0; n > MaxScheduleRuns && i < len(old); i, n = i+1, n-1 {
		if err := b.Delete(old[i]); err != nil {
			return err
		}
	}
	if tx.debugOn() {
		tx.logOp("put_schedule_run", slog.String("name", r.Schedule), slog.Time("fired", r.Fired))
	}
	return nil
}

// ScheduleRun returns the run of schedule name fired at fired.
func (tx *Tx) ScheduleRun(name string, fired time.Time) (ScheduleRun, bool, error) {
	if err := checkScheduleName(name); err != nil {
		return ScheduleRun{}, false, err
	}
	k := runKey(name, fired)
	v := tx.bucket(bScheduleRuns).Get(k)
	if v == nil {
		return ScheduleRun{}, false, nil
	}
	r, err := decodeScheduleRun(k, v)
	return r, err == nil, err
}

// ScheduleRuns returns the runs kept of schedule name, oldest first.
func (tx *Tx) ScheduleRuns(name string) ([]ScheduleRun, error) {
	if err := checkScheduleName(name); err != nil {
		return nil, err
	}
	var out []ScheduleRun
	c := tx.bucket(bScheduleRuns).Cursor()
	p := runPrefix(name)
	for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		r, err := decodeScheduleRun(k, v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// LastScheduleRun returns the newest run of schedule name, if any.
func (tx *Tx) LastScheduleRun(name string) (ScheduleRun, bool, error) {
	if err := checkScheduleName(name); err != nil {
		return ScheduleRun{}, false, err
	}
	c := tx.bucket(bScheduleRuns).Cursor()
	p := runPrefix(name)
	// The key after every run of name: its prefix with the zero byte raised to one.
	end := append([]byte(name), 1)
	k, v := c.Seek(end)
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, p) {
		return ScheduleRun{}, false, nil
	}
	r, err := decodeScheduleRun(k, v)
	return r, err == nil, err
}
