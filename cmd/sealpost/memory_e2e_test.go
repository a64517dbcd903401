package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Memory over time (issue 12): a node that answered many commands with large outputs keeps
// every answer in its state for the command's lifetime, and must still start, answer and list
// in bounded memory. TestMemoryOverTimeE2E runs the real binary: alice (no agent) has bob's
// agent run memoryRuns commands that each print 1 MB of random bytes, bob's agent is restarted
// and answers a ping, and then alice lists her results. It reads the peak resident set of bob's
// restarted agent (/proc/PID/status VmHWM) and of each listing process (its rusage's Maxrss,
// the same figure, taken when it ends) and fails when one exceeds memoryBound.
//
// SEALPOST_MEMORY_RUNS overrides the number of commands (docs/BENCHMARKS.md, "Memory over
// time", records the figures; -v prints them).

const (
	memoryBound    = 64 << 20
	memoryRuns     = 40
	memoryOutBytes = 1_000_000
)

func TestMemoryOverTimeE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes, and moves 40 MB through a relay")
	}
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("needs /proc/PID/status (Linux) to read an agent's peak memory")
	}
	runs := memoryRuns
	if s := os.Getenv("SEALPOST_MEMORY_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("SEALPOST_MEMORY_RUNS=%q: want a positive count", s)
		}
		runs = n
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
	pairCLI(t, env, alice, aliceNode.addr, bob, bobNode.addr, "head")

	start := time.Now()
	for i := range runs {
		r := sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "head", "-c", strconv.Itoa(memoryOutBytes), "/dev/urandom")
		if r.code != 0 || len(r.stdout) != memoryOutBytes {
			t.Fatalf("command %d: exit %d, %d bytes of output, want 0 and %d\nstderr: %s", i, r.code, len(r.stdout), memoryOutBytes, r.stderr)
		}
	}
	took := time.Since(start)
	beforeRestart := vmHWM(t, agent.cmd.Process.Pid)
	stopAgent(t, agent)
	db := fileSize(t, filepath.Join(bob, "state.db"))

	agent = startAgent(t, env, bob)
	started := vmHWM(t, agent.cmd.Process.Pid)
	if r := mustOK(t, sp(t, env, "--state", alice, "ping", "bob", "--timeout", "60s"), "ping"); !strings.HasPrefix(r.stdout, "answer from bob:") {
		t.Fatalf("ping printed %q", r.stdout)
	}
	restarted := vmHWM(t, agent.cmd.Process.Pid)
	results := peakOf(t, env, runs+2, "--state", alice, "results", "--limit", "0")
	resultsJSON := peakOf(t, env, -1, "--state", alice, "results", "--limit", "0", "--json")
	aliceDB := fileSize(t, filepath.Join(alice, "state.db"))

	mib := func(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	t.Logf("%d commands of %d bytes in %s; bob's agent: peak %s while serving them, state.db %s; restarted: peak %s once serving, %s after a ping",
		runs, memoryOutBytes, took.Round(time.Second), mib(beforeRestart), mib(db), mib(started), mib(restarted))
	t.Logf("alice (no agent), state.db %s: `results --limit 0` peak %s, `results --limit 0 --json` peak %s", mib(aliceDB), mib(results), mib(resultsJSON))
	for _, c := range []struct {
		what string
		peak int64
	}{{"bob's restarted agent after a ping", restarted}, {"`results --limit 0`", results}} {
		if c.peak > memoryBound {
			t.Errorf("%s: peak resident memory %s, want under %s", c.what, mib(c.peak), mib(memoryBound))
		}
	}
}

// startAgent starts the agent of state and waits until it serves its control socket.
func startAgent(t *testing.T, env []string, state string) *proc {
	t.Helper()
	os.Remove(filepath.Join(state, "agent.sock"))
	p := start(t, env, "--state", state, "agent")
	waitForSocket(t, state)
	return p
}

// stopAgent ends an agent with SIGTERM and waits for it.
func stopAgent(t *testing.T, p *proc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("agent ended with %v:\n%s", err, p.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop within 30s of SIGTERM")
	}
}

// vmHWM reads the peak resident set of a running process, in bytes.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	v, ok := readVmHWM(pid)
	if !ok {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	return v
}

// peakOf runs one sealpost command to completion, its output discarded (only counted), and
// returns its peak resident set (rusage Maxrss). lines >= 0: the output must have that many
// lines.
func peakOf(t *testing.T, env []string, lines int, args ...string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out lineCounter
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child's own high-water mark, read from /proc while it runs. wait4's maxrss would not
	// do: Go starts children with CLONE_VM, and exec counts the parent's (this test process's)
	// peak into the child's, so under a busy test binary it measures the test, not sealpost.
	// VmHWM only grows, so the last read is the best, and the reads end when the child does.
	peak := make(chan int64, 1)
	stop := make(chan struct{})
	go func() {
		var hwm int64
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if v, ok := readVmHWM(cmd.Process.Pid); ok && v > hwm {
				hwm = v
			}
			select {
			case <-stop:
				peak <- hwm
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	close(stop)
	hwm := <-peak
	if err != nil {
		t.Fatalf("sealpost %v: %v\n%s", args, err, errb.String())
	}
	if lines >= 0 && out.lines != lines {
		t.Fatalf("sealpost %v printed %d lines, want %d", args, out.lines, lines)
	}
	if hwm == 0 {
		t.Skip("the child's /proc/PID/status was never read")
	}
	return hwm
}

// readVmHWM reads a process's peak resident set from /proc/PID/status, in bytes.
func readVmHWM(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// lineCounter counts what is written to it without keeping it.
type lineCounter struct{ lines int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
