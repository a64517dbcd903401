package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
)

// binary is the sealpost binary built once for the end-to-end tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealpost-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "sealpost")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build sealpost:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a sealpost process started in the background; it is stopped (by its PID) at cleanup.
type proc struct {
	cmd    *exec.Cmd
	stdout *bufio.Reader
	stderr *bytes.Buffer
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdout: bufio.NewReader(out), stderr: &bytes.Buffer{}}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", strings.Join(args, " "), p.stderr)
		}
	})
	return p
}

type result struct {
	code           int
	stdout, stderr string
}

// sp runs one sealpost command to completion.
func sp(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sealpost %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

func mustOK(t *testing.T, r result, what string) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("%s: exit %d\nstdout: %s\nstderr: %s", what, r.code, r.stdout, r.stderr)
	}
	return r
}

type peerJSON struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Epoch  uint64 `json:"epoch"`
}

func peerList(t *testing.T, env []string, state string) map[string]peerJSON {
	t.Helper()
	r := mustOK(t, sp(t, env, "--state", state, "peer", "list", "--json"), "peer list")
	var ps []peerJSON
	if err := json.Unmarshal([]byte(r.stdout), &ps); err != nil {
		t.Fatalf("peer list --json: %v\n%s", err, r.stdout)
	}
	out := map[string]peerJSON{}
	for _, p := range ps {
		out[p.Name] = p
	}
	return out
}

// cliNode is how the end-to-end scenario initialises one node.
type cliNode struct {
	addr string   // the node's mail address (also its login)
	init []string // `sealpost init` flags besides --address: servers, login, password source, TLS
}

// cliScenario is what the end-to-end scenario needs of its mail servers.
type cliScenario struct {
	env        []string // environment of every sealpost process: the passwords the init flags name
	alice, bob cliNode
	// bobIMAP (plaintext IMAP, loopback) and bobPassword reach bob's mailbox for the re-injection.
	bobIMAP, bobPassword string
}

// TestEndToEndCLI drives two nodes in separate processes through a `sealpost relay` process with
// the commands a user types (runEndToEndCLI).
func TestEndToEndCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relayNode, imapAddr := startRelay(t)
	runEndToEndCLI(t, cliScenario{
		env:   []string{"PW=relay-password"},
		alice: relayNode("alice@example.test"), bob: relayNode("bob@example.test"),
		bobIMAP: imapAddr, bobPassword: "relay-password",
	})
}

// startRelay starts a `sealpost relay` process for alice@example.test and bob@example.test
// (password relay-password, taken from $PW) and returns the settings of a node on it and the
// relay's IMAP address.
func startRelay(t *testing.T) (relayNode func(addr string) cliNode, imapAddr string) {
	t.Helper()
	relay := start(t, nil, "relay", "--listen", "127.0.0.1", "--smtp-port", "0", "--imap-port", "0",
		"--user", "alice@example.test:relay-password", "--user", "bob@example.test:relay-password")
	line, err := relay.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("relay did not start: %v\n%s", err, relay.stderr)
	}
	m := regexp.MustCompile(`SMTP (\S+), IMAP (\S+),`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("relay printed %q", line)
	}
	smtpAddr, imapAddr := m[1], m[2]
	return func(addr string) cliNode {
		return cliNode{addr: addr, init: []string{"--imap", imapAddr, "--smtp", smtpAddr,
			"--login", addr, "--password-env", "PW", "--tls", "none"}}
	}, imapAddr
}

// runEndToEndCLI is the end-to-end scenario: pairing, handshake, an allowed command, a denied
// one, a failing one, the epoch advancing after each response, a re-injected mail that must not
// run twice, ping, sysinfo, usage errors and removing the peer. Alice has no agent; bob's runs
// throughout.
func runEndToEndCLI(t *testing.T, sc cliScenario) {
	t.Helper()
	dir := t.TempDir()
	env := sc.env
	bobAddr, aliceAddr := sc.bob.addr, sc.alice.addr
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	// init logs in first: with a wrong password it says which server refused, and stores nothing.
	wrong := slices.Clone(sc.alice.init)
	if i := slices.Index(wrong, "--password-env"); i >= 0 && i+1 < len(wrong) {
		wrong[i+1] = "SEALPOST_TEST_WRONG_PW"
	} else {
		t.Fatalf("alice's init flags %q name no --password-env", wrong)
	}
	r := sp(t, append(slices.Clone(env), "SEALPOST_TEST_WRONG_PW=not-the-password"), append([]string{"--state", alice, "init", "--address", aliceAddr}, wrong...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "IMAP server") || !strings.Contains(r.stderr, "nothing was stored") {
		t.Fatalf("init with a wrong password: exit %d, stderr %q; want a failure naming the IMAP server", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(alice, "state.db")); err == nil {
		t.Fatal("init stored settings it could not log in with")
	}
	for _, n := range []struct {
		state string
		node  cliNode
	}{{alice, sc.alice}, {bob, sc.bob}} {
		args := append([]string{"--state", n.state, "init", "--address", n.node.addr}, n.node.init...)
		mustOK(t, sp(t, env, args...), "init "+n.node.addr)
	}
	fp := strings.TrimSpace(mustOK(t, sp(t, env, "--state", bob, "id"), "id").stdout)
	if !regexp.MustCompile(`^[0-9a-f]{4}(-[0-9a-f]{4}){7}$`).MatchString(fp) {
		t.Fatalf("id printed %q", fp)
	}

	// bob's agent runs for the rest of the test; bob's CLI reaches it through its control socket.
	start(t, env, "--state", bob, "agent")
	waitForSocket(t, bob)

	counter := filepath.Join(dir, "runs.txt")
	script := filepath.Join(dir, "count")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+counter+"\necho counted\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	killself := filepath.Join(dir, "killself")
	if err := os.WriteFile(killself, []byte("#!/bin/sh\nkill -9 $$\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pairCLI(t, env, alice, aliceAddr, bob, bobAddr, "echo", "false", script, killself)

	// alice has no agent: `run` reads her mailbox itself (bob's PAIR answer, then the answers).
	r = sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "echo", "hello", "$(rm -rf /)")
	if r.code != 0 || r.stdout != "hello $(rm -rf /)\n" {
		t.Fatalf("run echo: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	peers := peerList(t, env, alice)
	if p := peers["bob"]; p.Status != "Confirmed" || p.Epoch != 1 {
		t.Fatalf("after one response alice sees bob as %+v, want Confirmed at epoch 1", p)
	}

	r = sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "rm", "-rf", "/tmp/nothing")
	if r.code != exitRefused || !strings.Contains(r.stderr, "denied") {
		t.Fatalf("denied command: exit %d, stderr %q; want %d and a message that says denied", r.code, r.stderr, exitRefused)
	}
	r = sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "false")
	if r.code != 1 {
		t.Fatalf("false: exit %d, want 1 (the remote status)", r.code)
	}
	if p := peerList(t, env, alice)["bob"]; p.Epoch != 2 {
		t.Fatalf("epoch after the failing program's response = %d, want 2 (a denial does not rotate)", p.Epoch)
	}
	r = sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--json", "--", script)
	var rj struct {
		Status   string `json:"status"`
		ExitCode int    `json:"exit_code"`
		Stdout   string `json:"stdout"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &rj); err != nil || r.code != 0 || rj.Stdout != "counted\n" {
		t.Fatalf("run --json: exit %d, %q (%v)", r.code, r.stdout, err)
	}
	if p := peerList(t, env, alice)["bob"]; p.Epoch != 3 {
		t.Fatalf("epoch = %d, want 3", p.Epoch)
	}
	if p := peerList(t, env, bob)["alice"]; p.Status != "Confirmed" {
		t.Fatalf("bob sees alice as %+v, want Confirmed", p)
	}

	// The mail that carried the counting command, appended again to bob's inbox: it must not run
	// a second time (the ledger answers it).
	n := fixtures.ReinjectProcessed(t, sc.bobIMAP, bobAddr, sc.bobPassword, 1)
	if n == 0 {
		t.Fatal("found no processed mail to re-inject")
	}
	mustOK(t, sp(t, env, "--state", alice, "agent", "--once"), "agent --once")
	time.Sleep(500 * time.Millisecond) // bob's agent sees the appended mail through IDLE
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && fixtures.InboxCount(t, sc.bobIMAP, bobAddr, sc.bobPassword) > 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if left := fixtures.InboxCount(t, sc.bobIMAP, bobAddr, sc.bobPassword); left > 0 {
		t.Fatalf("bob's agent did not process the re-injected mail (%d left in the inbox)", left)
	}
	runs, _ := os.ReadFile(counter)
	if got := strings.Count(string(runs), "ran"); got != 1 {
		t.Fatalf("the counting command ran %d times, want 1", got)
	}
	res := mustOK(t, sp(t, env, "--state", alice, "results", "--json"), "results")
	if strings.Count(res.stdout, `"status": "done"`) != 3 || !strings.Contains(res.stdout, `"status": "denied"`) {
		t.Fatalf("results --json:\n%s", res.stdout)
	}
	// A program killed on the peer by signal 9 exits 137, as in a shell; --json says how it ended.
	r = sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", killself)
	if r.code != 128+9 {
		t.Fatalf("a program that kills itself with SIGKILL: exit %d, stderr %q; want 137", r.code, r.stderr)
	}
	r = sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--json", "--", killself)
	var kj struct {
		Outcome string `json:"outcome"`
		Signal  int    `json:"signal"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &kj); err != nil || kj.Outcome != "signaled" || kj.Signal != 9 {
		t.Fatalf("run --json of a program killed by SIGKILL: %q (%v); want outcome signaled, signal 9", r.stdout, err)
	}

	// status: bob's comes from his agent, through its socket; alice has no agent.
	var bobStatus, aliceStatus struct {
		Agent    bool `json:"agent"`
		AgentPID int  `json:"agent_pid"`
		Peers    int  `json:"peers"`
		Waiting  int  `json:"commands_waiting"`
		Outbox   int  `json:"outbox"`
	}
	for _, s := range []struct {
		state string
		into  any
	}{{bob, &bobStatus}, {alice, &aliceStatus}} {
		r := mustOK(t, sp(t, env, "--state", s.state, "status", "--json"), "status --json")
		if err := json.Unmarshal([]byte(r.stdout), s.into); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.stdout)
		}
	}
	if !bobStatus.Agent || bobStatus.AgentPID == 0 || bobStatus.Peers != 1 || bobStatus.Outbox != 0 {
		t.Fatalf("bob's status: %+v; want his agent, one peer and an empty outbox", bobStatus)
	}
	if aliceStatus.Agent || aliceStatus.Peers != 1 || aliceStatus.Waiting != 0 || aliceStatus.Outbox != 0 {
		t.Fatalf("alice's status: %+v; want no agent, one peer, nothing waiting", aliceStatus)
	}
	if r := mustOK(t, sp(t, env, "--state", alice, "status"), "status"); !strings.Contains(r.stdout, "agent     not running") {
		t.Fatalf("alice's status says:\n%s", r.stdout)
	}

	if r := mustOK(t, sp(t, env, "--state", alice, "ping", "bob"), "ping"); !strings.HasPrefix(r.stdout, "answer from bob: time=") {
		t.Fatalf("ping printed %q", r.stdout)
	}
	if r := mustOK(t, sp(t, env, "--state", alice, "sysinfo", "bob"), "sysinfo"); !strings.Contains(r.stdout, "hostname:") {
		t.Fatalf("sysinfo printed %q", r.stdout)
	}
	if r := sp(t, env, "--state", alice, "run", "nobody", "--", "true"); r.code != exitSealpost || !strings.Contains(r.stderr, "peer add") {
		t.Fatalf("run on an unknown peer: exit %d, %q; want %d and advice", r.code, r.stderr, exitSealpost)
	}
	if r := sp(t, env, "--state", alice, "run", "bob", "ls", "-l"); r.code != exitUsage || !strings.Contains(r.stderr, "--") {
		t.Fatalf("remote option without --: exit %d, %q; want %d and a hint", r.code, r.stderr, exitUsage)
	}
	mustOK(t, sp(t, env, "--state", alice, "peer", "remove", "bob"), "peer remove")
	if _, ok := peerList(t, env, alice)["bob"]; ok {
		t.Fatal("bob still listed after peer remove")
	}
}

func waitForSocket(t *testing.T, state string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(state, "agent.sock")); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the agent did not open its control socket")
}

// pairCLI pairs two states as their users do: alice's `peer add bob` prints a code, which bob's
// `peer add alice --code` takes, allowing alice the programs in allow.
func pairCLI(t *testing.T, env []string, alice, aliceAddr, bob, bobAddr string, allow ...string) {
	t.Helper()
	added := mustOK(t, sp(t, env, "--state", alice, "peer", "add", "bob", "--address", bobAddr), "peer add (alice)")
	code := regexp.MustCompile(`Pairing code for bob: (\S+)`).FindStringSubmatch(added.stdout)
	if code == nil {
		t.Fatalf("peer add printed no code:\n%s", added.stdout)
	}
	args := []string{"--state", bob, "peer", "add", "alice", "--address", aliceAddr, "--code", code[1]}
	for _, a := range allow {
		args = append(args, "--allow", a)
	}
	mustOK(t, sp(t, env, args...), "peer add (bob)")
}
