package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node"
)

// TestScheduleUsage: help on stdout with an example; mistakes exit 2 before any state is opened.
func TestScheduleUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	missing := filepath.Join(t.TempDir(), "no-state")
	for _, c := range []struct {
		args []string
		code int
		has  string
	}{
		{[]string{"schedule", "--help"}, 0, "add NAME (--every 1h | --cron"},
		{[]string{"help", "schedule", "add"}, 0, "Example:\n  sealpost schedule add"},
		{[]string{"schedule"}, exitUsage, "list [--json]"},
		{[]string{"schedule", "nope"}, exitUsage, "nope"},
		{[]string{"--state", missing, "schedule", "add", "x", "--every", "500ms", "bob", "--", "true"}, exitUsage, "1s"},
		{[]string{"--state", missing, "schedule", "add", "x", "--every", "1h", "--cron", "* * * * *", "bob", "--", "true"}, exitUsage, "exactly one"},
		{[]string{"--state", missing, "schedule", "add", "x", "--cron", "61 * * * *", "bob", "--", "true"}, exitUsage, "minute"},
		{[]string{"--state", missing, "schedule", "add", "x", "--every", "1m", "--jitter", "2m", "bob", "--", "true"}, exitUsage, "jitter"},
		{[]string{"--state", missing, "schedule", "add", "x", "--every", "1m", "bob"}, exitUsage, "PROGRAM"},
		{[]string{"--state", missing, "schedule", "add", "x", "--every", "1m", "bob", "alice", "--", "true"}, exitUsage, `"alice"`},
		{[]string{"--state", missing, "schedule", "add", "x", "--every", "1m", "--ping", "bob", "--", "true"}, exitUsage, "no PROGRAM"},
		{[]string{"--state", missing, "schedule", "remove"}, exitUsage, "NAME"},
		{[]string{"--state", missing, "results", "--schedule", "x", "abc"}, exitUsage, "--schedule"},
	} {
		r := sp(t, nil, c.args...)
		out := r.stdout
		if c.code != 0 {
			out = r.stderr
		}
		if r.code != c.code || !strings.Contains(out, c.has) || (c.code != 0 && r.stdout != "") {
			t.Errorf("sealpost %q: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d and %q", c.args, r.code, r.stdout, r.stderr, c.code, c.has)
		}
	}
}

// TestScheduleE2E is issue 11's acceptance for schedules, with real processes on the embedded
// relay: `schedule add --every 2s` fires under alice's agent and keeps a history; with her
// agent stopped across several slots, it fires once when the agent is back and goes on from
// there; a run where bob's command exits non-zero fails, calls the --on-failure hook with the
// run on stdin, and shows in status.
func TestScheduleE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relayNode, _ := startRelay(t)
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	env := []string{"PW=relay-password"}
	mustOK(t, sp(t, env, append([]string{"--state", alice, "init", "--address", "alice@example.test"}, relayNode("alice@example.test").init...)...), "init alice")
	mustOK(t, sp(t, env, append([]string{"--state", bob, "init", "--address", "bob@example.test"}, relayNode("bob@example.test").init...)...), "init bob")
	start(t, env, "--state", bob, "agent")
	waitForSocket(t, bob)
	pairCLI(t, env, alice, "alice@example.test", bob, "bob@example.test", "test")
	aliceAgent := start(t, env, "--state", alice, "agent")
	waitForSocket(t, alice)

	flag, hookOut := filepath.Join(dir, "flag"), filepath.Join(dir, "hook.json")
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	mustOK(t, sp(t, env, "--state", alice, "schedule", "add", "check", "--every", "2s", "--on-failure", "cat >> "+hookOut, "bob", "--", "test", "-e", flag), "schedule add")
	history := func() []node.ScheduleRun {
		t.Helper()
		var runs []node.ScheduleRun
		r := mustOK(t, sp(t, env, "--state", alice, "results", "--schedule", "check", "--json", "--limit", "0"), "results --schedule")
		if err := json.Unmarshal([]byte(r.stdout), &runs); err != nil {
			t.Fatalf("results --schedule --json: %v\n%s", err, r.stdout)
		}
		return runs
	}
	succeeded := func(runs []node.ScheduleRun) int {
		n := 0
		for _, r := range runs {
			if r.Done && !r.Failed && len(r.Peers) == 1 && r.Peers[0].ExitCode == 0 && r.Peers[0].Answered {
				n++
			}
		}
		return n
	}
	poll(t, "two runs answered by bob", 60*time.Second, func() bool { return succeeded(history()) >= 2 })

	// Several slots with no agent: once it is back, one run makes up for them all.
	stop(t, aliceAgent)
	before := history()
	// Wall time must pass while no agent runs: the condition is that the schedule's next slot
	// (as `schedule list` reads it from the state) lies three slots behind the clock.
	poll(t, "three slots missed while no agent runs", 60*time.Second, func() bool {
		var list []struct {
			Next time.Time `json:"next"`
		}
		r := mustOK(t, sp(t, env, "--state", alice, "schedule", "list", "--json"), "schedule list --json")
		if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 1 {
			t.Fatalf("schedule list --json: %v\n%s", err, r.stdout)
		}
		return time.Since(list[0].Next) > 3*2*time.Second
	})
	restarted := time.Now()
	aliceAgent = start(t, env, "--state", alice, "agent")
	waitForSocket(t, alice)
	var after []node.ScheduleRun
	poll(t, "the catch-up run and the next one answered", 60*time.Second, func() bool {
		after = history()
		return len(after) >= len(before)+2 && succeeded(after[len(before):len(before)+2]) == 2
	})
	late := 0
	for _, r := range after[len(before):] {
		if r.Slot.Before(restarted) {
			late++
		}
	}
	if late != 1 || after[len(before)].Fired.Sub(before[len(before)-1].Fired) < 7*time.Second {
		t.Fatalf("after a stop across several slots, %d runs were for slots before the restart, want 1:\nbefore: %+v\nafter: %+v", late, before, after[len(before):])
	}
	if next := after[len(before)+1]; next.Slot.Sub(after[len(before)].Fired) != 2*time.Second {
		t.Errorf("the run after the catch-up is for %s, want 2s after the catch-up fired (%s)", next.Slot, after[len(before)].Fired)
	}

	// bob's check fails: the run fails, the hook gets it, status names the schedule.
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	// The hook appends each run it is given. On a loaded machine an earlier run may have failed
	// too (bob not answering within the 2 s slot): the one looked for is the run bob answered 1.
	var in node.HookInput
	var seen []node.HookInput
	poll(t, "the failure hook given bob's exit code 1", 60*time.Second, func() bool {
		raw, err := os.ReadFile(hookOut)
		if err != nil {
			return false
		}
		seen = seen[:0]
		dec := json.NewDecoder(bytes.NewReader(raw))
		for {
			var h node.HookInput
			if dec.Decode(&h) != nil {
				break
			}
			seen = append(seen, h)
			if len(h.Peers) == 1 && h.Peers[0].ExitCode == 1 && h.Peers[0].Status == node.StatusDone {
				in = h
				return true
			}
		}
		return false
	})
	if in.Schedule != "check" || in.Target != "bob" || len(in.Peers) != 1 || in.Peers[0].Peer != "bob" || len(in.NotAnswered) != 0 {
		t.Fatalf("the hook read %+v; want check's run with bob's exit code 1 (all it read: %+v)", in, seen)
	}
	var st struct {
		FailedSchedules []string `json:"failed_schedules"`
	}
	if err := json.Unmarshal([]byte(mustOK(t, sp(t, env, "--state", alice, "status", "--json"), "status").stdout), &st); err != nil || !slices.Contains(st.FailedSchedules, "check") {
		t.Fatalf("status --json: failed schedules %v (%v); want check", st.FailedSchedules, err)
	}
	if r := mustOK(t, sp(t, env, "--state", alice, "status"), "status"); !strings.Contains(r.stdout, "whose last run failed: check") {
		t.Errorf("status does not name the failing schedule:\n%s", r.stdout)
	}
	if r := mustOK(t, sp(t, env, "--state", alice, "results", "--schedule", "check"), "results --schedule"); !strings.Contains(r.stdout, "FAILED") || !strings.Contains(r.stdout, "bob") {
		t.Errorf("results --schedule check does not show the failed run:\n%s", r.stdout)
	}
	var list []scheduleJSON
	if err := json.Unmarshal([]byte(mustOK(t, sp(t, env, "--state", alice, "schedule", "list", "--json"), "schedule list").stdout), &list); err != nil ||
		len(list) != 1 || list[0].Name != "check" || list[0].Every != "2s" || list[0].LastRun == nil {
		t.Fatalf("schedule list --json = %+v (%v)", list, err)
	}
	if r := mustOK(t, sp(t, env, "--state", alice, "schedule", "run", "check"), "schedule run"); !strings.Contains(r.stdout, "1 command (bob)") {
		t.Errorf("schedule run said %q", r.stdout)
	}
	mustOK(t, sp(t, env, "--state", alice, "schedule", "remove", "check"), "schedule remove")
	if r := sp(t, env, "--state", alice, "results", "--schedule", "check"); r.code != exitError {
		t.Errorf("results --schedule of a removed schedule: exit %d, want %d", r.code, exitError)
	}
}
