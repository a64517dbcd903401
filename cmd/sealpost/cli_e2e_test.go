package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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

// spIn is sp with the process started in dir.
func spIn(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = dir
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

// TestCLIAsUsed drives two nodes through a relay as an operator would and checks what issue 10
// asked of the command line: a relative --password-file still works from another directory;
// peer allow and deny change what a peer may run, while its agent runs, and peer list shows
// it; results ID shows one command's output, exit code and timings (and --json); Ctrl-C during
// run --wait exits 130 and says the command goes on, with the id that finds it.
func TestCLIAsUsed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relayNode, imapAddr := startRelay(t)
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	env := []string{"PW=relay-password"}

	// bob's password in a file named relative to where init runs.
	initDir, elsewhere := filepath.Join(dir, "setup"), filepath.Join(dir, "cron")
	for _, d := range []string{initDir, elsewhere} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(initDir, "bob.pw"), []byte("relay-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bobInit := relayNode("bob@example.test").init
	i := slices.Index(bobInit, "--password-env")
	bobInit = slices.Concat(bobInit[:i], []string{"--password-file", "bob.pw"}, bobInit[i+2:])
	mustOK(t, spIn(t, initDir, env, append([]string{"--state", bob, "init", "--address", "bob@example.test"}, bobInit...)...), "init bob --password-file bob.pw")
	mustOK(t, sp(t, env, append([]string{"--state", alice, "init", "--address", "alice@example.test"}, relayNode("alice@example.test").init...)...), "init alice")
	// As cron would run it: another directory. The password file is still found.
	mustOK(t, spIn(t, elsewhere, env, "--state", bob, "agent", "--once"), "bob's agent --once from another directory")

	bobAgent := start(t, env, "--state", bob, "agent")
	waitForSocket(t, bob)
	pairCLI(t, env, alice, "alice@example.test", bob, "bob@example.test", "echo")
	r := sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "echo", "hello")
	if r.code != 0 || r.stdout != "hello\n" {
		t.Fatalf("run echo: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}

	// peer allow / deny, through bob's running agent.
	trueProg, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	mustOK(t, sp(t, env, "--state", bob, "peer", "allow", "alice", "true"), "peer allow alice true")
	var listed []struct {
		Name  string   `json:"name"`
		Allow []string `json:"allow"`
	}
	if err := json.Unmarshal([]byte(mustOK(t, sp(t, env, "--state", bob, "peer", "list", "--json"), "peer list --json").stdout), &listed); err != nil ||
		len(listed) != 1 || !slices.Contains(listed[0].Allow, trueProg) {
		t.Fatalf("peer list --json after peer allow: %+v (%v); want alice allowed %s", listed, err, trueProg)
	}
	if r := mustOK(t, sp(t, env, "--state", bob, "peer", "list"), "peer list"); !strings.Contains(r.stdout, "ALLOWED") || !strings.Contains(r.stdout, trueProg) {
		t.Fatalf("peer list does not show the allow list:\n%s", r.stdout)
	}
	if r := sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "true"); r.code != 0 {
		t.Fatalf("run true after peer allow: exit %d, stderr %q", r.code, r.stderr)
	}
	mustOK(t, sp(t, env, "--state", bob, "peer", "deny", "alice", "true"), "peer deny alice true")
	if r := sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "true"); r.code != exitRefused {
		t.Fatalf("run true after peer deny: exit %d, stderr %q; want %d (refused)", r.code, r.stderr, exitRefused)
	}
	if r := sp(t, env, "--state", bob, "peer", "deny", "alice", "true"); r.code != exitError {
		t.Fatalf("peer deny of a program not on the list: exit %d, stderr %q; want %d", r.code, r.stderr, exitError)
	}
	if r := sp(t, env, "--state", bob, "peer", "allow", "nobody", "true"); r.code != exitError {
		t.Fatalf("peer allow for an unknown peer: exit %d, stderr %q; want %d", r.code, r.stderr, exitError)
	}

	// results ID: one command, by a unique start of its id.
	var all []resultJSON
	if err := json.Unmarshal([]byte(mustOK(t, sp(t, env, "--state", alice, "results", "--json"), "results --json").stdout), &all); err != nil || len(all) != 3 {
		t.Fatalf("results --json: %+v (%v); want 3 commands", all, err)
	}
	first := all[0] // echo hello
	prefix := uniquePrefix(first.ID, all)
	r = mustOK(t, sp(t, env, "--state", alice, "results", prefix), "results "+prefix)
	for _, want := range []string{first.ID, "echo hello", "done, exit code 0", "round trip", "stdout:\nhello\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("results %s does not show %q:\n%s", prefix, want, r.stdout)
		}
	}
	var one resultJSON
	r = mustOK(t, sp(t, env, "--state", alice, "results", first.ID, "--json"), "results ID --json")
	if err := json.Unmarshal([]byte(r.stdout), &one); err != nil || one.ID != first.ID || one.Stdout != "hello\n" || one.ExitCode != 0 || one.Finished.IsZero() || one.Finished.Before(one.Sent) {
		t.Fatalf("results %s --json = %+v (%v)\n%s", first.ID, one, err, r.stdout)
	}
	if r := sp(t, env, "--state", alice, "results", strings.Repeat("0", 32)); r.code != exitError {
		t.Fatalf("results of an id never recorded: exit %d, stderr %q; want %d", r.code, r.stderr, exitError)
	}

	// Ctrl-C during run --wait, while bob has no agent to answer.
	bobAgent.cmd.Process.Signal(syscall.SIGTERM)
	bobAgent.cmd.Wait()
	before := fixtures.InboxCount(t, imapAddr, "bob@example.test", "relay-password")
	cmd := exec.Command(binary, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--json", "--", "echo", "late")
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The command is recorded before it is mailed: once it is in bob's inbox, it is on record.
	fixtures.Eventually(t, 30*time.Second, "the command mailed to bob", func() bool {
		return fixtures.InboxCount(t, imapAddr, "bob@example.test", "relay-password") > before
	})
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitSignal+int(syscall.SIGINT) {
		t.Fatalf("run --wait interrupted: %v, stderr %q; want exit 130", err, errOut.String())
	}
	m := regexp.MustCompile("continues on bob; see `sealpost results ([0-9a-f]{32})`").FindStringSubmatch(errOut.String())
	if m == nil {
		t.Fatalf("run --wait interrupted said %q; want that the command continues on bob and its results id", errOut.String())
	}
	// --json printed the command as it stood, and results shows it the same later.
	for _, got := range []string{out.String(), mustOK(t, sp(t, env, "--state", alice, "results", m[1], "--json"), "results of the interrupted command").stdout} {
		if err := json.Unmarshal([]byte(got), &one); err != nil || one.ID != m[1] || one.Status != "sent" || strings.Join(one.Command, " ") != "echo late" {
			t.Fatalf("the interrupted command as JSON = %+v (%v)\n%s\nwant echo late, sent", one, err, got)
		}
	}
}

// uniquePrefix is the shortest start of id that no other result's id shares.
func uniquePrefix(id string, all []resultJSON) string {
	for n := 1; n < len(id); n++ {
		shared := 0
		for _, r := range all {
			if strings.HasPrefix(r.ID, id[:n]) {
				shared++
			}
		}
		if shared == 1 {
			return id[:n]
		}
	}
	return id
}
