package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/node"
)

func TestCheckUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	missing := filepath.Join(t.TempDir(), "no-state")
	for _, c := range []struct {
		args []string
		code int
		has  string
	}{
		{[]string{"check", "--help"}, 0, "add NAME [--timeout 30s] -- PROGRAM"},
		{[]string{"help", "check", "add"}, 0, "Example:\n  sealpost check add"},
		{[]string{"check"}, exitUsage, "run [--json]"},
		{[]string{"check", "nope"}, exitUsage, "nope"},
		{[]string{"--state", missing, "check", "add", "x"}, exitUsage, "PROGRAM"},
		{[]string{"--state", missing, "check", "add", "--", "true"}, exitUsage, "NAME"},
		{[]string{"--state", missing, "check", "add", "x", "y", "--", "true"}, exitUsage, "NAME"},
		{[]string{"--state", missing, "check", "add", "x", "--timeout", "6m", "--", "true"}, exitUsage, "--timeout"},
		{[]string{"--state", missing, "check", "remove"}, exitUsage, "NAME"},
		{[]string{"--state", missing, "check", "list", "extra"}, exitUsage, "extra"},
		{[]string{"--state", missing, "check", "run", "extra"}, exitUsage, "extra"},
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

// TestCheckCommands: check add, list --json, run (exit 1 while one fails, 0 once none does),
// remove, on a node's own state.
func TestCheckCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := filepath.Join(t.TempDir(), "state")
	t.Setenv("SEALPOST_TEST_PW", "pw")
	var out, errOut bytes.Buffer
	if err := runInit(context.Background(), &globals{state: dir, stdout: &out, stderr: &errOut},
		[]string{"--address", "alice@example.test", "--password-env", "SEALPOST_TEST_PW", "--tls", "none",
			"--imap", "127.0.0.1:1", "--smtp", "127.0.0.1:1", "--no-check"}); err != nil {
		t.Fatalf("init: %v\n%s", err, errOut.String())
	}
	mustOK(t, sp(t, nil, "--state", dir, "check", "add", "always", "--", "true"), "check add always")
	mustOK(t, sp(t, nil, "--state", dir, "check", "add", "never", "--timeout", "5s", "--", "false"), "check add never")
	var list []node.CheckSpec
	r := mustOK(t, sp(t, nil, "--state", dir, "check", "list", "--json"), "check list --json")
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 2 || !filepath.IsAbs(list[0].Argv[0]) {
		t.Fatalf("check list --json = %v, %s; want two checks with absolute programs", err, r.stdout)
	}
	if r := sp(t, nil, "--state", dir, "check", "run"); r.code != exitError || !strings.Contains(r.stdout, "FAILED") {
		t.Fatalf("check run with a failing check: exit %d\n%s%s; want exit %d and FAILED", r.code, r.stdout, r.stderr, exitError)
	}
	mustOK(t, sp(t, nil, "--state", dir, "check", "remove", "never"), "check remove never")
	var res []node.CheckResult
	r = mustOK(t, sp(t, nil, "--state", dir, "check", "run", "--json"), "check run --json")
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || len(res) != 1 || res[0].Name != "always" || !res[0].OK {
		t.Fatalf("check run --json = %v, %s; want always, ok", err, r.stdout)
	}
}
