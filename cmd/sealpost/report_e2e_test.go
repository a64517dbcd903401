package main

import (
	"encoding/json"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestStatusReportsCLI is issue 11's acceptance for status reports, with real processes on a
// relay: after `peer report bob 2s`, `fleet --json` shows bob's sysinfo with no command sent to
// bob but that one, and stopping bob's agent makes bob STALE once twice the interval passed.
// (That a later report carries only what changed is node's TestStatusReports, where the test
// controls the host's facts.)
func TestStatusReportsCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relay := startRelayProc(t, "0", "0")
	env := []string{"PW=" + relayPW}
	dir := t.TempDir()
	state := map[string]string{}
	for _, name := range []string{"alice", "bob"} {
		state[name] = filepath.Join(dir, name)
		addr := name + "@example.test"
		mustOK(t, sp(t, env, "--state", state[name], "init", "--address", addr, "--imap", relay.imapAddr, "--smtp", relay.smtpAddr,
			"--login", addr, "--password-env", "PW", "--tls", "none"), "init "+name)
	}
	bob := start(t, env, "--state", state["bob"], "agent", "--min-report-every", "1s")
	waitForSocket(t, state["bob"])
	pairTagged(t, env, state["alice"], "alice", state["bob"], "bob", []string{"web"}, nil)
	start(t, env, "--state", state["alice"], "agent")
	waitForSocket(t, state["alice"])

	mustOK(t, sp(t, env, "--state", state["alice"], "peer", "report", "bob", "2s", "--timeout", "60s"), "peer report bob 2s")
	type entry struct {
		Name       string    `json:"name"`
		Hostname   string    `json:"hostname"`
		Kernel     string    `json:"kernel"`
		LastReport time.Time `json:"last_report"`
		Stale      bool      `json:"stale"`
	}
	fleet := func() entry {
		t.Helper()
		var es []entry
		r := mustOK(t, sp(t, env, "--state", state["alice"], "fleet", "--json", "bob"), "fleet --json")
		if err := json.Unmarshal([]byte(r.stdout), &es); err != nil || len(es) != 1 {
			t.Fatalf("fleet --json bob: %v\n%s", err, r.stdout)
		}
		return es[0]
	}
	// Polls what another process shows; the reports come on the agent's own clock.
	waitFleet := func(what string, ok func(entry) bool) entry {
		t.Helper()
		var e entry
		poll(t, what, 60*time.Second, func() bool { e = fleet(); return ok(e) })
		return e
	}
	e := waitFleet("bob's first report", func(e entry) bool { return e.Hostname != "" && !e.LastReport.IsZero() })
	if e.Kernel == "" || e.Stale {
		t.Fatalf("bob after his first report: %+v", e)
	}
	var results []struct {
		Command []string `json:"command"`
	}
	r := mustOK(t, sp(t, env, "--state", state["alice"], "results", "--json"), "results --json")
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil || len(results) != 1 || results[0].Command[0] != "report-every" {
		t.Fatalf("alice's results: %+v (%v); want only the report-every", results, err)
	}

	bob.cmd.Process.Signal(syscall.SIGTERM)
	bob.cmd.Wait()
	waitFleet("bob STALE after his agent stopped", func(e entry) bool { return e.Stale })
}
