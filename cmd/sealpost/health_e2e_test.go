package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAgentWithoutItsPasswordVariableFails: an agent whose password variable is not set says so
// on stderr (without -v) and ends with a non-zero status, so that a supervisor shows it failed,
// instead of retrying for ever in silence.
func TestAgentWithoutItsPasswordVariableFails(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relayNode, _ := startRelay(t)
	state := filepath.Join(t.TempDir(), "bob")
	bob := relayNode("bob@example.test")
	mustOK(t, sp(t, []string{"PW=relay-password"}, append([]string{"--state", state, "init", "--address", bob.addr}, bob.init...)...), "init")
	// The agent runs in an environment without $PW.
	// (sp ends a process still running after its deadline, which shows as exit code -1.)
	r := sp(t, nil, "--state", state, "agent")
	if r.code <= 0 || !strings.Contains(r.stderr, "$PW") {
		t.Fatalf("agent without its password variable: exit %d, stderr %q; want a failure naming $PW", r.code, r.stderr)
	}
}

type healthStatus struct {
	Agent   bool `json:"agent"`
	Servers []struct {
		Role         string    `json:"role"`
		Addr         string    `json:"addr"`
		FailingSince time.Time `json:"failing_since"`
		Problem      string    `json:"problem"`
		LastError    string    `json:"last_error"`
		LastOK       time.Time `json:"last_ok"`
	} `json:"servers"`
}

// TestStatusShowsUnreachableIMAP: `status` of an agent whose IMAP server went away says so, with
// the error and since when, in words and in --json.
func TestStatusShowsUnreachableIMAP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	// A port with nothing behind it: bound, then closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	relayNode, _ := startRelay(t)
	env := []string{"PW=relay-password"}
	state := filepath.Join(t.TempDir(), "bob")
	bob := relayNode("bob@example.test")
	args := append([]string{"--state", state, "init", "--no-check", "--address", bob.addr}, bob.init...)
	for i := range args {
		if args[i] == "--imap" {
			args[i+1] = dead
		}
	}
	mustOK(t, sp(t, env, args...), "init --no-check")
	agent := start(t, env, "--state", state, "agent")
	waitForSocket(t, state)
	var st healthStatus
	poll(t, "status shows the IMAP server failing", 30*time.Second, func() bool {
		r := mustOK(t, sp(t, env, "--state", state, "status", "--json"), "status --json")
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.stdout)
		}
		return len(st.Servers) == 2 && !st.Servers[0].FailingSince.IsZero()
	})
	if s := st.Servers[0]; !st.Agent || s.Role != "imap" || s.Addr != dead || s.Problem != "connect" || s.LastError == "" {
		t.Fatalf("status --json servers[0] = %+v; want imap %s failing with problem connect and its error", s, dead)
	}
	r := mustOK(t, sp(t, env, "--state", state, "status"), "status")
	if !strings.Contains(r.stdout, "IMAP "+dead+": cannot reach it since") || !strings.Contains(r.stdout, "running since") {
		t.Fatalf("status:\n%s\nwant the IMAP server named as unreachable, with since when", r.stdout)
	}
	// The trouble is in the log too, without -v.
	agent.cmd.Process.Signal(syscall.SIGTERM)
	agent.cmd.Wait()
	if !strings.Contains(agent.stderr.String(), "cannot reach IMAP server "+dead) {
		t.Fatalf("agent stderr:\n%s\nwant a line saying it cannot reach the IMAP server", agent.stderr)
	}
}
