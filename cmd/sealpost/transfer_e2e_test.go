package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestTransferE2E: push and pull with the built binary, on the embedded relay: each file
// arrives whole (SHA-256 equal) though bob's agent is killed with SIGKILL in the middle of the
// transfer and started again; a path outside the directories bob allows is refused.
// SEALPOST_TRANSFER_MIB sets the file size (8 MiB by default; the figure is 100).
func TestTransferE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes, and moves files through a relay")
	}
	size := 8 << 20
	if s := os.Getenv("SEALPOST_TRANSFER_MIB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			t.Fatalf("SEALPOST_TRANSFER_MIB=%q: want at least 2", s)
		}
		size = n << 20
	}
	dir := t.TempDir()
	env := []string{"PW=relay-password", "SEALPOST_WITNESS_DIR=" + t.TempDir()}
	relayNode, _ := startRelay(t)
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	aliceNode, bobNode := relayNode("alice@example.test"), relayNode("bob@example.test")
	for _, n := range []struct {
		state string
		node  cliNode
	}{{alice, aliceNode}, {bob, bobNode}} {
		mustOK(t, sp(t, env, append([]string{"--state", n.state, "init", "--address", n.node.addr}, n.node.init...)...), "init")
	}
	agent := startAgent(t, env, bob)
	share, inbox := filepath.Join(dir, "share"), filepath.Join(dir, "inbox")
	for _, d := range []string{share, inbox} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	added := mustOK(t, sp(t, env, "--state", alice, "peer", "add", "bob", "--address", bobNode.addr), "peer add (alice)")
	code := regexp.MustCompile(`Pairing code for bob: (\S+)`).FindStringSubmatch(added.stdout)
	if code == nil {
		t.Fatalf("peer add printed no code:\n%s", added.stdout)
	}
	mustOK(t, sp(t, env, "--state", bob, "peer", "add", "alice", "--address", aliceNode.addr, "--code", code[1],
		"--allow-read", share, "--allow-write", inbox), "peer add --allow-read --allow-write (bob)")

	// killMidway waits until what has arrived of a transfer (the receiver's spool file) is
	// between a quarter and three quarters of it, then kills bob's agent and starts it again.
	killMidway := func(spool string) {
		t.Helper()
		poll(t, "part of the transfer arrived", 3*time.Minute, func() bool {
			fi, err := os.Stat(spool)
			return err == nil && fi.Size() >= int64(size/4)
		})
		if fi, _ := os.Stat(spool); fi.Size() >= int64(size*3/4) {
			t.Logf("the transfer was %d of %d bytes along when bob's agent was killed", fi.Size(), size)
		}
		agent.cmd.Process.Kill()
		agent.cmd.Wait()
		agent = startAgent(t, env, bob)
	}
	finish := func(p *proc, what string) {
		t.Helper()
		err := p.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok || err != nil {
			t.Fatalf("%s: %v (exit %d)\n%s", what, err, ee.ExitCode(), p.stderr)
		}
	}
	same := func(path string, want [32]byte, what string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil || sha256.Sum256(b) != want {
			t.Fatalf("%s: %d bytes, SHA-256 differs or %v", what, len(b), err)
		}
	}

	// pull, with bob's agent killed midway: alice's spool shows how far it came.
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(share, "big"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	// The baseline for the figures: copying the file locally and hashing it, in the same run.
	began := time.Now()
	if err := os.WriteFile(filepath.Join(dir, "copy"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = sha256.Sum256(data)
	base := time.Since(began)
	pullID := "00112233445566778899aabbccddeeff"
	local := filepath.Join(dir, "pulled")
	began = time.Now()
	p := start(t, env, "--state", alice, "pull", "bob", filepath.Join(share, "big"), local, "--id", pullID, "--timeout", "10m")
	killMidway(filepath.Join(alice, "spool", "in", pullID+".1"))
	finish(p, "pull")
	pullTook := time.Since(began)
	same(local, sha256.Sum256(data), "pulled file")

	// push, with bob's agent killed midway: bob's spool shows how far it came.
	rand.Read(data)
	src := filepath.Join(dir, "to-push")
	if err := os.WriteFile(src, data, 0o600); err != nil {
		t.Fatal(err)
	}
	pushID := "ffeeddccbbaa99887766554433221100"
	began = time.Now()
	p = start(t, env, "--state", alice, "push", "bob", src, filepath.Join(inbox, "big"), "--id", pushID, "--timeout", "10m")
	killMidway(filepath.Join(bob, "spool", "in", pushID+".1"))
	finish(p, "push")
	pushTook := time.Since(began)
	same(filepath.Join(inbox, "big"), sha256.Sum256(data), "pushed file")
	t.Logf("%d MiB, bob's agent killed with SIGKILL midway through each: pull %v, push %v; a local copy and SHA-256 %v (pull %.0fx, push %.0fx)",
		size>>20, pullTook.Round(time.Millisecond), pushTook.Round(time.Millisecond), base.Round(time.Millisecond),
		pullTook.Seconds()/base.Seconds(), pushTook.Seconds()/base.Seconds())
	if ents, _ := os.ReadDir(inbox); len(ents) != 1 {
		t.Fatalf("bob's directory holds %d entries after the push, want the file alone", len(ents))
	}

	// Outside the directories: refused, nothing written.
	outside := filepath.Join(dir, "elsewhere")
	if r := sp(t, env, "--state", alice, "push", "bob", src, outside, "--timeout", "2m"); r.code != exitRefused {
		t.Fatalf("push outside bob's directories: exit %d, want %d\n%s", r.code, exitRefused, r.stderr)
	}
	if _, err := os.Stat(outside); !os.IsNotExist(err) {
		t.Fatalf("the refused push wrote %s", outside)
	}
	if r := sp(t, env, "--state", alice, "pull", "bob", "/etc/hostname", filepath.Join(dir, "h"), "--timeout", "2m"); r.code != exitRefused || bytes.Contains([]byte(r.stdout), []byte("\n")) {
		t.Fatalf("pull outside bob's directories: exit %d, want %d\n%s", r.code, exitRefused, r.stderr)
	}
}
