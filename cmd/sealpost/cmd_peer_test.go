package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// TestThreat37PairingCodeOffCommandLine: the pairing code goes to `peer add` on standard input
// (--code-file -), so the process list never shows it: neither the arguments the process is
// started with nor, on Linux, /proc/PID/cmdline while it runs. The command that `peer add`
// prints for the other side takes it that way too. The pairing made this way works: a command
// runs across it.
func TestThreat37PairingCodeOffCommandLine(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relayNode, _ := startRelay(t)
	env := []string{"PW=relay-password"}
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	for _, n := range []struct{ state, addr string }{{alice, "alice@example.test"}, {bob, "bob@example.test"}} {
		mustOK(t, sp(t, env, append([]string{"--state", n.state, "init", "--address", n.addr}, relayNode(n.addr).init...)...), "init "+n.addr)
	}
	start(t, env, "--state", bob, "agent")
	waitForSocket(t, bob)

	added := mustOK(t, sp(t, env, "--state", alice, "peer", "add", "bob", "--address", "bob@example.test"), "peer add (alice)")
	m := regexp.MustCompile(`Pairing code for bob: (\S+)`).FindStringSubmatch(added.stdout)
	if m == nil {
		t.Fatalf("peer add printed no code:\n%s", added.stdout)
	}
	code := m[1]
	other := regexp.MustCompile(`(?m)^\s+(sealpost peer add .*)$`).FindStringSubmatch(added.stdout)
	if other == nil || strings.Contains(other[1], code) || !strings.Contains(other[1], "--code-file -") {
		t.Fatalf("peer add's advice for the other side puts the code on the command line, or not on stdin:\n%s", added.stdout)
	}

	cmd := exec.Command(binary, "--state", bob, "peer", "add", "alice", "--address", "alice@example.test", "--code-file", "-", "--allow", "echo")
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, a := range cmd.Args {
		if strings.Contains(a, code) {
			t.Errorf("peer add was started with the code in its arguments: %q", cmd.Args)
		}
	}
	// The process cannot finish before it has read the code: what the process list shows of it
	// now is all it will ever show.
	if runtime.GOOS == "linux" {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/cmdline")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(cmdline, []byte(code)) {
			t.Errorf("/proc/%d/cmdline shows the code: %q", cmd.Process.Pid, cmdline)
		}
	}
	io.WriteString(stdin, code+"\n")
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("peer add --code-file -: %v\nstdout: %s\nstderr: %s", err, out.String(), errOut.String())
	}

	r := sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "echo", "paired")
	if r.code != 0 || r.stdout != "paired\n" {
		t.Fatalf("run over the pairing made with the code from stdin: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestReadCode(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"7KQ2-M9XD-4HTC\n", "7KQ2-M9XD-4HTC", true},
		{"  7KQ2-M9XD-4HTC \r\nrest\n", "7KQ2-M9XD-4HTC", true},
		{"no newline at the end", "no newline at the end", true},
		{"a human-chosen password", "a human-chosen password", true},
		{"", "", false},
		{"\n7KQ2\n", "", false},
		{"   \t\n", "", false},
		{"7KQ2\x1b[2J\n", "", false},
		{strings.Repeat("a", maxCodeLine+1), "", false},
		{strings.Repeat("a", maxCodeLine-1) + "\n", strings.Repeat("a", maxCodeLine-1), true},
	} {
		got, err := readCode(strings.NewReader(c.in))
		if got != c.want || (err == nil) != c.ok || (err != nil && !errors.Is(err, errBadCodeInput)) {
			t.Errorf("readCode(%.40q) = %q, %v; want %q, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// TestCodeFile: --code-file FILE reads the code from a file, --code-file - from stdin (not a
// terminal here: no prompt).
func TestCodeFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "code")
	if err := os.WriteFile(file, []byte("7KQ2-M9XD\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	g := &globals{stdin: strings.NewReader("from-stdin\n"), stderr: &errOut}
	for _, c := range []struct{ file, want string }{{file, "7KQ2-M9XD"}, {"-", "from-stdin"}} {
		if got, err := codeFrom(context.Background(), g, c.file, "bob"); err != nil || got != c.want {
			t.Errorf("codeFrom(%s) = %q, %v; want %q", c.file, got, err, c.want)
		}
	}
	if errOut.Len() != 0 {
		t.Errorf("reading a code from a pipe printed %q; want no prompt", errOut.String())
	}
	if _, err := codeFrom(context.Background(), g, filepath.Join(t.TempDir(), "missing"), "bob"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("codeFrom(a missing file) = %v, want an error wrapping ErrNotExist", err)
	}
}
