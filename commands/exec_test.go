package commands

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRunExitCodes(t *testing.T) {
	t.Parallel()
	sh := lookPath(t, "sh")
	exe, hp := helper(t, "exit")
	// The test deliberately allows a shell as a program, to make it exit with a given status.
	p := Policy{Allow: []string{sh, exe}, Env: hp.Env}
	cases := []struct {
		argv       []string
		code       int
		wantErr    bool
		wantStdout string
	}{
		{[]string{exe, "0"}, 0, false, ""},
		{[]string{exe, "3"}, 3, false, ""},
		{[]string{sh, "-c", "exit 0"}, 0, false, ""},
		{[]string{"sh", "-c", "exit 3"}, 3, false, ""},
		{[]string{"sh", "-c", "echo out; exit 255"}, 255, false, "out\n"},
		{[]string{"sh", "-c", "kill -9 $$"}, -1, true, ""}, // killed by a signal
		{[]string{"sh", "-c", "kill -SEGV $$"}, -1, true, ""},
	}
	reg := NewRegistry(Options{})
	for _, c := range cases {
		res := reg.Run(context.Background(), Request{Name: CmdExec, Argv: c.argv}, p)
		if res.ExitCode != c.code || (res.Error != "") != c.wantErr || string(res.Stdout) != c.wantStdout || res.TimedOut {
			t.Errorf("Run(%q) = exit %d, error %q, stdout %q, timed out %v; want exit %d, error %v, stdout %q",
				c.argv, res.ExitCode, res.Error, res.Stdout, res.TimedOut, c.code, c.wantErr, c.wantStdout)
		}
	}
}

func TestRunStartFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe, hp := helper(t, "pwd")
	cases := []struct {
		name string
		argv []string
		p    Policy
	}{
		{"program not found", []string{missing}, Policy{Allow: []string{missing}}},
		{"program not found by base name", []string{"missing"}, Policy{Allow: []string{missing}}},
		{"not executable", []string{notExec}, Policy{Allow: []string{notExec}}},
		{"a directory", []string{dir}, Policy{Allow: []string{dir}}},
		{"missing working directory", []string{exe}, Policy{Allow: []string{exe}, Env: hp.Env, Dir: missing}},
		{"working directory is a file", []string{exe}, Policy{Allow: []string{exe}, Env: hp.Env, Dir: notExec}},
	}
	reg := NewRegistry(Options{})
	for _, c := range cases {
		if _, err := reg.Check(Request{Name: CmdExec, Argv: c.argv}, c.p); err != nil {
			t.Fatalf("%s: Check(%q) = %v, want nil (the allowlist matches)", c.name, c.argv, err)
		}
		res := reg.Run(context.Background(), Request{Name: CmdExec, Argv: c.argv}, c.p)
		if res.ExitCode != -1 || res.Error == "" || res.TimedOut {
			t.Errorf("%s: Run(%q) = %+v, want exit code -1 and an error", c.name, c.argv, res)
		}
		t.Logf("%s: %s", c.name, res.Error)
	}
}

// The timeout kills the whole process group: a shell with a background child and a foreground
// child comes back in about the timeout, and the background child is gone too.
func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	// Not parallel: the elapsed-time bound is about this package, not about a loaded machine.
	if runtime.GOOS != "linux" {
		t.Skip("checks processes through /proc")
	}
	sh := lookPath(t, "sh")
	p := Policy{Allow: []string{sh}}
	req := Request{Name: CmdExec, Argv: []string{"sh", "-c", "sleep 30 & echo $!; sleep 30"}, Timeout: 200 * time.Millisecond}
	start := time.Now()
	res := NewRegistry(Options{}).Run(context.Background(), req, p)
	elapsed := time.Since(start)
	if !res.TimedOut || res.ExitCode != -1 || res.Error == "" {
		t.Fatalf("Run(%q, 200ms) = %+v after %v, want TimedOut, exit code -1, an error", req.Argv, res, elapsed)
	}
	if elapsed > 2500*time.Millisecond {
		t.Errorf("Run(%q, 200ms) returned after %v, want within 2.5s", req.Argv, elapsed)
	}
	if res.Duration < 200*time.Millisecond || res.Duration > elapsed {
		t.Errorf("Run(%q) Duration = %v, want between 200ms and %v", req.Argv, res.Duration, elapsed)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	if err != nil {
		t.Fatalf("Run(%q) stdout = %q, want the background pid", req.Argv, res.Stdout)
	}
	// SIGKILL is delivered at once, but reaping the orphan is up to init: wait for it to be
	// gone or a zombie.
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("background child %d still running after the timeout killed its group", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A background process that keeps the output pipes open after the program exited is ended
// with it, so Run comes back at once, with the whole output and no error.
func TestRunBackgroundHoldsPipes(t *testing.T) {
	t.Parallel()
	sh := lookPath(t, "sh")
	p := Policy{Allow: []string{sh}}
	req := Request{Name: CmdExec, Argv: []string{"sh", "-c", "(sleep 10; echo late) & echo $!"}, Timeout: time.Minute}
	start := time.Now()
	res := NewRegistry(Options{}).Run(context.Background(), req, p)
	if elapsed := time.Since(start); elapsed >= WaitDelay {
		t.Errorf("Run(%q) took %v, want less than WaitDelay (%v): nothing should hold the pipes", req.Argv, elapsed, WaitDelay)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	if err == nil {
		killGroupOf(pid) // in case the code under test left it running
	}
	if res.ExitCode != 0 || err != nil || res.TimedOut || res.Error != "" {
		t.Errorf("Run(%q) = %+v, want exit code 0, a pid on stdout, no error", req.Argv, res)
	}
}

// When a process Run could not end holds an output pipe, Run stops reading after the delay and
// keeps what it read.
func TestFinishDrainsAbandons(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close() // held open like a stray process would
	lw := &lockedWriter{buf: &cappedBuffer{max: 100}}
	d := startDrain(r, lw)
	if _, err := w.Write([]byte("early")); err != nil {
		t.Fatal(err)
	}
	for read := false; !read; { // wait for the copy to take it
		lw.mu.Lock()
		read = len(lw.buf.buf) == len("early")
		lw.mu.Unlock()
		runtime.Gosched()
	}
	if !finishDrains(50*time.Millisecond, d) {
		t.Errorf("finishDrains with a write end held open = false, want true")
	}
	<-d.done // closing the read end ended the copy
	if got := string(lw.seal().bytes()); got != "early" {
		t.Errorf("after finishDrains the buffer holds %q, want %q", got, "early")
	}
	// And at EOF it does not wait.
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	d2 := startDrain(r2, io.Discard)
	w2.Close()
	if finishDrains(time.Hour, d2) {
		t.Errorf("finishDrains at EOF = true, want false")
	}
}

func TestRunCancelled(t *testing.T) {
	t.Parallel()
	sh := lookPath(t, "sh")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	res := NewRegistry(Options{}).Run(ctx, Request{Name: CmdExec, Argv: []string{"sh", "-c", "sleep 30"}}, Policy{Allow: []string{sh}})
	if res.TimedOut || res.ExitCode != -1 || res.Error == "" || time.Since(start) > 2500*time.Millisecond {
		t.Errorf("Run(sleep 30) with ctx cancelled after 100ms = %+v, want not TimedOut, exit code -1 and an error, at once", res)
	}
}

func TestRunOutputCaps(t *testing.T) {
	t.Parallel()
	exe, p := helper(t, "spew")
	cases := []struct {
		max              int
		out, err         int
		wantOut, wantErr int
	}{
		{1024, 2 << 20, 10, 1024, 10},
		{1024, 1024, 1025, 1024, 1024},
		{1024, 0, 0, 0, 0},
		{0, 2 << 20, 0, DefaultMaxOutput, 0},                 // zero = 1 MiB
		{64 << 20, MaxOutputLimit + 1, 0, MaxOutputLimit, 0}, // never above MaxOutputLimit
		{10, 10, 11, 10, 10},
	}
	reg := NewRegistry(Options{})
	for _, c := range cases {
		p.MaxOutput = c.max
		argv := []string{exe, strconv.Itoa(c.out), strconv.Itoa(c.err)}
		res := reg.Run(context.Background(), Request{Name: CmdExec, Argv: argv}, p)
		if res.ExitCode != 0 || len(res.Stdout) != c.wantOut || len(res.Stderr) != c.wantErr ||
			res.StdoutTruncated != (c.out > c.wantOut) || res.StderrTruncated != (c.err > c.wantErr) {
			t.Errorf("Run(spew %d %d) with MaxOutput %d = exit %d, %d bytes (truncated %v) / %d bytes (truncated %v); want %d / %d",
				c.out, c.err, c.max, res.ExitCode, len(res.Stdout), res.StdoutTruncated, len(res.Stderr), res.StderrTruncated, c.wantOut, c.wantErr)
		}
		if bytes.ContainsRune(res.Stdout, 'e') || bytes.ContainsRune(res.Stderr, 'o') {
			t.Errorf("Run(spew %d %d): stdout and stderr mixed", c.out, c.err)
		}
		if _, err := EncodeResult(res); err != nil {
			t.Errorf("EncodeResult(Run(spew %d %d)) = %v", c.out, c.err, err)
		}
	}
}

// The program gets the policy's environment and nothing of the agent's.
func TestRunEnvironment(t *testing.T) {
	t.Setenv("SEALPOST_TEST_SECRET", "hunter2")
	exe, p := helper(t, "env")
	p.Env = append(p.Env, "A=1", "LANG=C")
	res := NewRegistry(Options{}).Run(context.Background(), Request{Name: CmdExec, Argv: []string{exe}}, p)
	var env []string
	if err := json.Unmarshal(res.Stdout, &env); err != nil {
		t.Fatalf("Run(helper env) = %+v: %v", res, err)
	}
	if !slices.Equal(env, p.Env) {
		t.Errorf("Run(helper env) with Env %q: the program saw %q", p.Env, env)
	}

	// nil Env: the minimal default.
	envProg := lookPath(t, "env")
	res = NewRegistry(Options{}).Run(context.Background(), Request{Name: CmdExec, Argv: []string{"env"}}, Policy{Allow: []string{envProg}})
	got := strings.Split(strings.TrimSuffix(string(res.Stdout), "\n"), "\n")
	if !slices.Equal(got, DefaultEnv()) || strings.Contains(string(res.Stdout), "hunter2") {
		t.Errorf("Run(env) with nil Env: the program saw %q, want %q", got, DefaultEnv())
	}

	// Empty, non-nil Env: nothing at all.
	res = NewRegistry(Options{}).Run(context.Background(), Request{Name: CmdExec, Argv: []string{"env"}}, Policy{Allow: []string{envProg}, Env: []string{}})
	if res.ExitCode != 0 || len(res.Stdout) != 0 {
		t.Errorf("Run(env) with an empty Env = %+v, want no output", res)
	}
}

func TestRunWorkingDirAndStdin(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	reg := NewRegistry(Options{})
	exe, p := helper(t, "pwd")
	for _, c := range []struct{ dir, want string }{{dir, real}, {"", "/"}} {
		p.Dir = c.dir
		res := reg.Run(context.Background(), Request{Name: CmdExec, Argv: []string{exe}}, p)
		if got := string(res.Stdout); got != c.want {
			t.Errorf("Run(pwd) with Dir %q = %q (%+v), want %q", c.dir, got, res, c.want)
		}
	}
	exe, p = helper(t, "stdin")
	res := reg.Run(context.Background(), Request{Name: CmdExec, Argv: []string{exe}}, p)
	if string(res.Stdout) != "0" || res.ExitCode != 0 {
		t.Errorf("Run(read stdin) = %+v, want an empty stdin (\"0\")", res)
	}
}

func TestRunBuiltins(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	reg := NewRegistry(Options{Version: "v1.2.3", Now: func() time.Time { return now }})
	res := reg.Run(context.Background(), Request{Name: CmdPing}, Policy{})
	want := Result{Outcome: OutcomeExited, Started: now.UTC(), Duration: res.Duration}
	if !equalResults(res, want) || res.Duration < 0 {
		t.Errorf("Run(ping) = %+v, want %+v", res, want)
	}
	res = reg.Run(context.Background(), Request{Name: CmdSysinfo}, Policy{})
	if res.Outcome != OutcomeExited || res.ExitCode != 0 || res.Info == nil || res.Info.Version != "v1.2.3" || res.Error != "" || !res.Started.Equal(now) {
		t.Errorf("Run(sysinfo) = %+v, want exited with exit code 0 and SysInfo with version v1.2.3", res)
	}
	if _, err := EncodeResult(res); err != nil {
		t.Errorf("EncodeResult(Run(sysinfo)) = %v", err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	p := Policy{Allow: []string{"/usr/bin/uptime", "/usr/local/bin//tool/", "relative/ignored", "/bin/echo", "/bin/echo"}}
	cases := []struct {
		req  Request
		want Request
	}{
		{Request{Name: CmdPing}, Request{Name: CmdPing, Timeout: DefaultTimeout}},
		{Request{Name: CmdSysinfo, Timeout: time.Second}, Request{Name: CmdSysinfo, Timeout: time.Second}},
		{Request{Name: CmdExec, Argv: []string{"uptime"}}, Request{Name: CmdExec, Argv: []string{"/usr/bin/uptime"}, Timeout: DefaultTimeout}},
		{Request{Name: CmdExec, Argv: []string{"/usr/bin/uptime", "-p"}}, Request{Name: CmdExec, Argv: []string{"/usr/bin/uptime", "-p"}, Timeout: DefaultTimeout}},
		{Request{Name: CmdExec, Argv: []string{"/usr/bin/../bin/uptime"}}, Request{Name: CmdExec, Argv: []string{"/usr/bin/uptime"}, Timeout: DefaultTimeout}},
		{Request{Name: CmdExec, Argv: []string{"tool", "a b"}}, Request{Name: CmdExec, Argv: []string{"/usr/local/bin/tool", "a b"}, Timeout: DefaultTimeout}},
		{Request{Name: CmdExec, Argv: []string{"echo"}, Timeout: time.Hour}, Request{Name: CmdExec, Argv: []string{"/bin/echo"}, Timeout: DefaultMaxTimeout}},
	}
	reg := NewRegistry(Options{})
	for _, c := range cases {
		argv := slices.Clone(c.req.Argv)
		got, err := reg.Check(c.req, p)
		if err != nil || !equalRequests(got, c.want) {
			t.Errorf("Check(%q) = %+v, %v, want %+v", c.req.Argv, got, err, c.want)
		}
		if !slices.Equal(argv, c.req.Argv) {
			t.Errorf("Check(%q) modified its argument's Argv to %q", argv, c.req.Argv)
		}
	}
	denied := []Request{
		{Name: CmdExec, Argv: []string{"ignored"}},           // relative Allow entries never match
		{Name: CmdExec, Argv: []string{"relative/ignored"}},  // nor relative requests
		{Name: CmdExec, Argv: []string{"/usr/bin/uptime/x"}}, // below an allowed path
	}
	for _, req := range denied {
		if got, err := reg.Check(req, p); err == nil {
			t.Errorf("Check(%q) = %+v, nil, want an error wrapping ErrDenied", req.Argv, got)
		}
	}
}

func TestPolicyTimeouts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		p    Policy
		want time.Duration
		got  time.Duration
	}{
		{Policy{}, 0, DefaultTimeout},
		{Policy{}, time.Second, time.Second},
		{Policy{}, 24 * time.Hour, DefaultMaxTimeout},
		{Policy{DefaultTimeout: 5 * time.Second}, 0, 5 * time.Second},
		{Policy{MaxTimeout: 30 * time.Second}, 0, 30 * time.Second}, // the default is capped too
		{Policy{MaxTimeout: 30 * time.Second}, time.Minute, 30 * time.Second},
		{Policy{MaxTimeout: -1, DefaultTimeout: -1}, 0, DefaultTimeout},
	}
	for _, c := range cases {
		if got := c.p.timeout(c.want); got != c.got {
			t.Errorf("%+v.timeout(%v) = %v, want %v", c.p, c.want, got, c.got)
		}
	}
}

func TestCappedBuffer(t *testing.T) {
	t.Parallel()
	c := &cappedBuffer{max: 5}
	for _, w := range []string{"ab", "cdef", "", "gh"} {
		if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v, want %d, nil", w, n, err, len(w))
		}
	}
	if string(c.bytes()) != "abcde" || c.dropped != 3 || !c.truncated() {
		t.Errorf("cappedBuffer after abcdefgh = %q, dropped %d, want \"abcde\", 3", c.bytes(), c.dropped)
	}
}

// equalRequests and equalResults compare values as the tests mean them: times with Equal.
func equalRequests(a, b Request) bool {
	return a.Name == b.Name && slices.Equal(a.Argv, b.Argv) && a.Timeout == b.Timeout && a.Sent.Equal(b.Sent)
}

func equalResults(a, b Result) bool {
	as, bs := a.Started, b.Started
	a.Started, b.Started = time.Time{}, time.Time{}
	return as.Equal(bs) && reflect.DeepEqual(a, b)
}
