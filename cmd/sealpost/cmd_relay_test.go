package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
)

const relayPW = "relay-password"

// relayProc is a running `sealpost relay` process and the addresses it printed.
type relayProc struct {
	p                  *proc
	smtpAddr, imapAddr string
}

// startRelayProc starts `sealpost relay` for alice and bob on the given ports ("0": the relay
// binds a free one, which the restarts then take again) with extra flags.
func startRelayProc(t *testing.T, smtpPort, imapPort string, extra ...string) relayProc {
	t.Helper()
	args := append([]string{"relay", "--listen", "127.0.0.1", "--smtp-port", smtpPort, "--imap-port", imapPort,
		"--user", "alice@example.test:" + relayPW, "--user", "bob@example.test:" + relayPW}, extra...)
	p := start(t, nil, args...)
	line, err := p.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("relay did not start: %v\n%s", err, p.stderr)
	}
	m := regexp.MustCompile(`SMTP (\S+), IMAP (\S+),`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("relay printed %q", line)
	}
	return relayProc{p, m[1], m[2]}
}

// restart stops the relay with SIGTERM, as systemd or an operator would, and starts it again on
// the same ports with the same flags.
func (r relayProc) restart(t *testing.T, extra ...string) relayProc {
	t.Helper()
	stop(t, r.p)
	_, sp, _ := net.SplitHostPort(r.smtpAddr)
	_, ip, _ := net.SplitHostPort(r.imapAddr)
	n := startRelayProc(t, sp, ip, extra...)
	if n.smtpAddr != r.smtpAddr || n.imapAddr != r.imapAddr {
		t.Fatalf("the relay came back on %s and %s, want %s and %s", n.smtpAddr, n.imapAddr, r.smtpAddr, r.imapAddr)
	}
	return n
}

// stop ends a process started by start with SIGTERM and waits for it to exit.
func stop(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%v after SIGTERM: %v\n%s", p.cmd.Args[1:], err, p.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%v did not stop on SIGTERM", p.cmd.Args[1:])
	}
}

// pairOverRelay initialises alice and bob on the relay, starts bob's agent, pairs them (bob
// allows echo) and has one command answered. It returns the two state directories and bob's
// agent.
func pairOverRelay(t *testing.T, r relayProc) (alice, bob string, agent *proc) {
	t.Helper()
	env := []string{"PW=" + relayPW}
	dir := t.TempDir()
	alice, bob = filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	for _, n := range []struct{ state, addr string }{{alice, "alice@example.test"}, {bob, "bob@example.test"}} {
		mustOK(t, sp(t, env, "--state", n.state, "init", "--address", n.addr, "--imap", r.imapAddr, "--smtp", r.smtpAddr,
			"--login", n.addr, "--password-env", "PW", "--tls", "none"), "init "+n.addr)
	}
	agent = start(t, env, "--state", bob, "agent")
	waitForSocket(t, bob)
	pairCLI(t, env, alice, "alice@example.test", bob, "bob@example.test", "echo")
	if r := mustOK(t, sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "echo", "first"), "first command"); r.stdout != "first\n" {
		t.Fatalf("first command printed %q", r.stdout)
	}
	return alice, bob, agent
}

// TestRelayRestartCLI: a `sealpost relay` stopped and started again between two commands, with
// both nodes' cursors from the first start, answers the second command. (A restarted relay used
// to number its mailboxes UIDVALIDITY 1 again with UIDs from 1: the agent's cursor skipped the
// new command and the controller waited until its timeout.)
func TestRelayRestartCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	env := []string{"PW=" + relayPW}
	r := startRelayProc(t, "0", "0")
	alice, _, _ := pairOverRelay(t, r)
	r.restart(t)
	res := sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "30s", "--", "echo", "second")
	if res.code != 0 || res.stdout != "second\n" {
		t.Fatalf("second command after the relay's restart: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
}

// TestRelayDataCLI: `sealpost relay --data DIR` keeps its mail across a restart: a command
// delivered while bob's agent was down, then the relay restarted, is still in bob's inbox, and
// bob's agent answers it when it comes back.
func TestRelayDataCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	env := []string{"PW=" + relayPW}
	data := filepath.Join(t.TempDir(), "relay-data")
	r := startRelayProc(t, "0", "0", "--data", data)
	alice, bob, agent := pairOverRelay(t, r)
	stop(t, agent)

	sent := mustOK(t, sp(t, env, "--state", alice, "run", "bob", "--", "echo", "kept"), "run without --wait")
	id, _, _ := strings.Cut(sent.stdout, " ")
	fixtures.Eventually(t, 30*time.Second, "the command mail reaches bob's inbox", func() bool {
		return fixtures.InboxCount(t, r.imapAddr, "bob@example.test", relayPW) == 1
	})
	r = r.restart(t, "--data", data)
	if n := fixtures.InboxCount(t, r.imapAddr, "bob@example.test", relayPW); n != 1 {
		t.Fatalf("bob's inbox after the relay's restart holds %d mails, want the 1 command", n)
	}
	start(t, env, "--state", bob, "agent")

	// A command sent after the restart is answered after the one before it (bob answers a
	// peer's commands in order), and alice's run reads both answers.
	if res := sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "echo", "after"); res.code != 0 || res.stdout != "after\n" {
		t.Fatalf("command after the restart: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	res := mustOK(t, sp(t, env, "--state", alice, "results", "--json", "--id", id), "results --id")
	var kept []struct {
		Status string `json:"status"`
		Stdout string `json:"stdout"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &kept); err != nil || len(kept) != 1 || kept[0].Status != "done" || kept[0].Stdout != "kept\n" {
		t.Fatalf("the command sent before the restart (%s): %v\n%s", id, err, res.stdout)
	}
}
