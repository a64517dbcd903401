package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

// TestPeerMaxOutputE2E: bob caps alice's output with `peer set alice --max-output 100K` (to the
// running agent, through its control socket); alice's `run --wait` of a command printing 300,000
// bytes then prints the first 102,400 and exits 77; back at the default the same command prints
// all of it and exits 0. A size that is not one is a usage error.
func TestPeerMaxOutputE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relayNode, _ := startRelay(t)
	dir := t.TempDir()
	env := []string{"PW=relay-password"}
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	an, bn := relayNode("alice@example.test"), relayNode("bob@example.test")
	mustOK(t, sp(t, env, append([]string{"--state", alice, "init", "--address", an.addr}, an.init...)...), "init alice")
	mustOK(t, sp(t, env, append([]string{"--state", bob, "init", "--address", bn.addr}, bn.init...)...), "init bob")
	pairCLI(t, env, alice, an.addr, bob, bn.addr, "/bin/sh")
	startAgent(t, env, bob)

	if r := sp(t, env, "--state", bob, "peer", "set", "alice", "--max-output", "1.5M"); r.code != exitUsage {
		t.Fatalf("peer set --max-output 1.5M: exit %d (%s); want %d", r.code, r.stderr, exitUsage)
	}
	mustOK(t, sp(t, env, "--state", bob, "peer", "set", "alice", "--max-output", "100K"), "peer set")
	var peers []struct {
		Name      string `json:"name"`
		MaxOutput int64  `json:"max_output"`
	}
	r := mustOK(t, sp(t, env, "--state", bob, "peer", "list", "--json"), "peer list")
	if err := json.Unmarshal([]byte(r.stdout), &peers); err != nil || len(peers) != 1 || peers[0].MaxOutput != 100<<10 {
		t.Fatalf("peer list --json = %s (%v); want alice with max_output %d", r.stdout, err, 100<<10)
	}

	const prog = "yes sealpost | head -c 300000"
	r = sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "/bin/sh", "-c", prog)
	if r.code != exitTruncated || len(r.stdout) != 100<<10 || r.stdout != strings.Repeat("sealpost\n", 300000/9+1)[:100<<10] {
		t.Fatalf("capped run: exit %d, %d bytes of stdout, stderr %q; want exit %d and the first %d bytes", r.code, len(r.stdout), r.stderr, exitTruncated, 100<<10)
	}
	mustOK(t, sp(t, env, "--state", bob, "peer", "set", "alice", "--max-output", "default"), "peer set default")
	r = mustOK(t, sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "/bin/sh", "-c", prog), "run at the default cap")
	if len(r.stdout) != 300000 {
		t.Fatalf("run at the default cap: %d bytes; want 300000", len(r.stdout))
	}
}
