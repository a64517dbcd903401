package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
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

// pairTagged pairs the controller's state with a peer's as their users do, the controller
// tagging the peer: `peer add NAME --tag ...` prints a code, which the peer's `peer add
// CONTROLLER --code` takes, allowing the programs in allow.
func pairTagged(t *testing.T, env []string, ctl, ctlName, peer, peerName string, tags, allow []string) {
	t.Helper()
	args := []string{"--state", ctl, "peer", "add", peerName, "--address", peerName + "@example.test"}
	for _, tag := range tags {
		args = append(args, "--tag", tag)
	}
	added := mustOK(t, sp(t, env, args...), "peer add "+peerName)
	code := regexp.MustCompile(`Pairing code for \S+: (\S+)`).FindStringSubmatch(added.stdout)
	if code == nil || !strings.Contains(added.stdout, "is tagged: "+strings.Join(tags, " ")) {
		t.Fatalf("peer add %s --tag printed:\n%s", peerName, added.stdout)
	}
	args = []string{"--state", peer, "peer", "add", ctlName, "--address", ctlName + "@example.test", "--code", code[1]}
	for _, a := range allow {
		args = append(args, "--allow", a)
	}
	mustOK(t, sp(t, env, args...), "peer add "+ctlName+" on "+peerName)
}

// TestFanOutCLI is issue 11's acceptance for fan-out, with real processes on a relay: alice
// (no agent) controls bob and carol, both tagged web. `run @web --wait` shows both answers,
// grouped; with carol's agent stopped, `run @web --wait --deadline 5s` lists carol as not
// answered and exits 75, and Ctrl-C shows what came in and exits 130; once carol's agent is
// back (and alice's agent runs), `results` shows carol's answer; `ping @web --json` prints one
// object per peer with "peer"; a failing program exits 1; peer tag, untag and list show the
// tags.
func TestFanOutCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relay := startRelayProc(t, "0", "0", "--user", "carol@example.test:"+relayPW)
	env := []string{"PW=" + relayPW}
	dir := t.TempDir()
	state := map[string]string{}
	for _, name := range []string{"alice", "bob", "carol"} {
		state[name] = filepath.Join(dir, name)
		addr := name + "@example.test"
		mustOK(t, sp(t, env, "--state", state[name], "init", "--address", addr, "--imap", relay.imapAddr, "--smtp", relay.smtpAddr,
			"--login", addr, "--password-env", "PW", "--tls", "none"), "init "+name)
	}
	agents := map[string]*proc{}
	for _, name := range []string{"bob", "carol"} {
		agents[name] = start(t, env, "--state", state[name], "agent")
		waitForSocket(t, state[name])
		pairTagged(t, env, state["alice"], "alice", state[name], name, []string{"web"}, []string{"echo", "false"})
	}
	// The peers' PAIR answers are read by a one-peer command (alice has no agent to read them).
	for _, name := range []string{"bob", "carol"} {
		mustOK(t, sp(t, env, "--state", state["alice"], "ping", name, "--timeout", "60s"), "ping "+name)
	}

	// Tags: tag, untag, and peer list (text and JSON).
	if r := mustOK(t, sp(t, env, "--state", state["alice"], "peer", "tag", "bob", "db", "eu"), "peer tag"); !strings.Contains(r.stdout, "bob is tagged: db eu web") {
		t.Fatalf("peer tag bob db eu printed %q", r.stdout)
	}
	mustOK(t, sp(t, env, "--state", state["alice"], "peer", "untag", "bob", "db", "eu"), "peer untag")
	if r := sp(t, env, "--state", state["alice"], "peer", "untag", "bob", "db"); r.code != exitError {
		t.Fatalf("peer untag of a tag bob does not have: exit %d, stderr %q; want %d", r.code, r.stderr, exitError)
	}
	var listed []struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal([]byte(mustOK(t, sp(t, env, "--state", state["alice"], "peer", "list", "--json"), "peer list --json").stdout), &listed); err != nil ||
		len(listed) != 2 || !slices.Equal(listed[0].Tags, []string{"web"}) || !slices.Equal(listed[1].Tags, []string{"web"}) {
		t.Fatalf("peer list --json: %+v (%v); want bob and carol tagged web", listed, err)
	}
	if r := mustOK(t, sp(t, env, "--state", state["alice"], "peer", "list"), "peer list"); !strings.Contains(r.stdout, "TAGS") || strings.Count(r.stdout, " web\n") != 2 {
		t.Fatalf("peer list does not show the tags:\n%s", r.stdout)
	}

	// Both answer: one group, headed by both peers.
	r := sp(t, env, "--state", state["alice"], "run", "@web", "--wait", "--deadline", "60s", "--", "echo", "hello")
	if r.code != 0 || !strings.Contains(r.stdout, "--- bob, carol: exit 0\nhello\n") || strings.Contains(r.stdout, "not answered") {
		t.Fatalf("run @web --wait: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit 0 and one group for bob and carol", r.code, r.stdout, r.stderr)
	}
	// Not on a terminal: one line per answer on stderr.
	if !strings.Contains(r.stderr, "bob: exit 0") || !strings.Contains(r.stderr, "carol: exit 0") {
		t.Fatalf("run @web --wait said on stderr %q; want a line per answer", r.stderr)
	}
	r = sp(t, env, "--state", state["alice"], "run", "bob,carol", "--wait", "--deadline", "60s", "--", "false")
	if r.code != exitError || !strings.Contains(r.stdout, "--- bob, carol: exit 1\n") {
		t.Fatalf("run bob,carol --wait -- false: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d", r.code, r.stdout, r.stderr, exitError)
	}
	if r := sp(t, env, "--state", state["alice"], "run", "@db", "--wait", "--", "echo"); r.code != exitSealpost || !strings.Contains(r.stderr, "@db") {
		t.Fatalf("run @db (a tag nobody has): exit %d, stderr %q; want %d naming @db", r.code, r.stderr, exitSealpost)
	}
	if r := sp(t, env, "--state", state["alice"], "run", "bob,,carol", "--", "echo"); r.code != exitUsage {
		t.Fatalf("run bob,,carol: exit %d, stderr %q; want %d", r.code, r.stderr, exitUsage)
	}

	// carol's agent stops: the deadline passes without her answer.
	stop(t, agents["carol"])
	r = sp(t, env, "--state", state["alice"], "run", "@web", "--wait", "--deadline", "5s", "--", "echo", "late")
	m := regexp.MustCompile(`(?m)^not answered by the deadline: (.*)$`).FindStringSubmatch(r.stdout)
	if r.code != exitPending || m == nil || !slices.Contains(strings.Split(m[1], ", "), "carol") || !strings.Contains(r.stderr, "carol") {
		t.Fatalf("run @web --deadline 5s with carol stopped: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d and carol not answered", r.code, r.stdout, r.stderr, exitPending)
	}

	// Ctrl-C after bob's answer: what came in, carol as not answered, exit 130.
	cmd := exec.Command(binary, "--state", state["alice"], "run", "@web", "--wait", "--deadline", "60s", "--", "echo", "interrupted")
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout = &out
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	errLines := bufio.NewReader(errPipe)
	for {
		line, err := errLines.ReadString('\n')
		if err != nil {
			t.Fatalf("run @web ended before bob's answer: %v", err)
		}
		if strings.Contains(line, "bob: exit 0") {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGINT)
	rest, _ := io.ReadAll(errLines)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitSignal+int(syscall.SIGINT) || !strings.Contains(out.String(), "--- bob: exit 0\ninterrupted\n") ||
		!strings.Contains(out.String(), "not answered when interrupted: carol\n") || !strings.Contains(string(rest), "their commands go on") {
		t.Fatalf("run @web interrupted: %v\nstdout:\n%s\nstderr:\n%s\nwant exit 130, bob's answer and carol not answered", err, out.String(), rest)
	}

	// carol's agent and alice's come back: carol's answer arrives, and results shows it.
	start(t, env, "--state", state["carol"], "agent")
	start(t, env, "--state", state["alice"], "agent")
	waitForSocket(t, state["alice"])
	fixtures.Eventually(t, 60*time.Second, "carol's answer to echo late in alice's results", func() bool {
		var all []resultJSON
		if err := json.Unmarshal([]byte(mustOK(t, sp(t, env, "--state", state["alice"], "results", "--json"), "results --json").stdout), &all); err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(all, func(r resultJSON) bool {
			return r.Peer == "carol" && strings.Join(r.Command, " ") == "echo late" && r.Status == "done" && r.Stdout == "late\n"
		})
	})

	// ping @web --json, through alice's agent: one object per peer and line, with "peer".
	r = mustOK(t, sp(t, env, "--state", state["alice"], "ping", "@web", "--json", "--deadline", "60s"), "ping @web --json")
	var peers []string
	for _, line := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		var one resultJSON
		if err := json.Unmarshal([]byte(line), &one); err != nil || one.Status != "done" {
			t.Fatalf("ping @web --json line %q: %+v (%v)", line, one, err)
		}
		peers = append(peers, one.Peer)
	}
	slices.Sort(peers)
	if !slices.Equal(peers, []string{"bob", "carol"}) {
		t.Fatalf("ping @web --json printed objects for %v; want bob and carol\n%s", peers, r.stdout)
	}
	if r := mustOK(t, sp(t, env, "--state", state["alice"], "ping", "@all"), "ping @all"); !strings.Contains(r.stdout, "answer from bob: time=") || !strings.Contains(r.stdout, "answer from carol: time=") {
		t.Fatalf("ping @all printed %q", r.stdout)
	}
}
