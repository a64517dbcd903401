package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sealpost/sealpost/node"
)

// TestUsageConventions runs the built binary the ways people ask it for help and get it
// wrong: help asked for goes to stdout with exit 0; a usage error goes to stderr with exit 2
// and nothing on stdout; options are shown as --name; a command lists only the global options
// it uses; extra words are usage errors, found before any state is opened.
func TestUsageConventions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	missing := filepath.Join(t.TempDir(), "no-state") // no command below may get as far as opening it
	type want struct {
		code       int
		stdout     []string // substrings of stdout
		stderr     []string // substrings of stderr
		notStdout  []string
		quietOther bool // the stream not named in the code's convention stays empty
	}
	helpOK := func(has ...string) want { return want{code: 0, stdout: has, quietOther: true} }
	usage := func(has ...string) want { return want{code: exitUsage, stderr: has, quietOther: true} }
	for _, c := range []struct {
		args []string
		want want
	}{
		{[]string{"--help"}, helpOK("Usage: sealpost", "Commands:", "  --state DIR", "  --version")},
		{[]string{"-h"}, helpOK("Usage: sealpost")},
		{[]string{"help"}, helpOK("Usage: sealpost")},
		{[]string{}, usage("Usage: sealpost")},
		{[]string{"--no-such-option"}, usage("Usage: sealpost")},
		{[]string{"no-such-command"}, usage("no-such-command")},
		{[]string{"help", "run"}, helpOK("Usage: sealpost run", "  --wait\n", "  --timeout DURATION", "Global options:", "  --state DIR")},
		{[]string{"run", "--help"}, helpOK("Usage: sealpost run")},
		{[]string{"--state", missing, "run", "-h"}, helpOK("Usage: sealpost run")},
		{[]string{"run", "--no-such-option"}, usage("Usage: sealpost run")},
		{[]string{"help", "peer", "allow"}, helpOK("Usage: sealpost peer allow NAME PROGRAM")},
		{[]string{"peer", "deny", "--help"}, helpOK("Usage: sealpost peer deny NAME PROGRAM")},
		// relay keeps no state: no --state or --witness-dir in its help (and not accepted).
		{[]string{"relay", "--help"}, want{code: 0, stdout: []string{"  -v\n"}, notStdout: []string{"--state", "--witness-dir"}, quietOther: true}},
		{[]string{"relay", "--state", missing, "--user", "a@b:c"}, usage("-state")},
		// ping and sysinfo always wait: no --wait to list.
		{[]string{"ping", "--help"}, want{code: 0, stdout: []string{"  --timeout DURATION"}, notStdout: []string{"--wait"}, quietOther: true}},
		{[]string{"demo", "--help"}, want{code: 0, stdout: []string{"  --keep"}, notStdout: []string{"--state", "-v\n", "Global options"}, quietOther: true}},
		// peer without a subcommand names all of them.
		{[]string{"peer"}, usage("add NAME", "list", "allow NAME", "deny NAME", "remove NAME")},
		{[]string{"peer", "--help"}, helpOK("add NAME", "list", "allow NAME", "deny NAME", "remove NAME")},
		{[]string{"help", "peer"}, helpOK("allow NAME", "deny NAME")},
		{[]string{"--version"}, helpOK("sealpost ", runtime.Version())},
		{[]string{"version"}, helpOK("sealpost ", runtime.Version())},
		// Extra words.
		{[]string{"--state", missing, "run", "bob", "alice", "--", "uptime"}, usage(`"alice"`)},
		{[]string{"--state", missing, "run", "bob", "--"}, usage("PROGRAM")},
		{[]string{"--state", missing, "ping", "bob", "alice"}, usage("PEER")},
		{[]string{"--state", missing, "sysinfo", "bob", "--", "x"}, usage("PEER")},
		{[]string{"--state", missing, "status", "now"}, usage(`"now"`)},
		{[]string{"--state", missing, "peer", "list", "all"}, usage(`"all"`)},
		{[]string{"--state", missing, "results", "not-hex"}, usage("not-hex")},
		{[]string{"--state", missing, "results", "ab", "cd"}, usage("at most one ID")},
		{[]string{"--state", missing, "peer", "allow", "bob"}, usage("PROGRAM")},
		// init without a password says which options give one.
		{[]string{"--state", missing, "init", "--address", "a@example.test", "--no-check"}, usage("--password-env", "--password-file", "--password-command", "--oauth2-token-command")},
		{[]string{"--state", missing, "init", "--address", "a@example.test", "--no-check", "--password-env", "PW", "--password-command", "echo x"}, usage("one of")},
		{[]string{"--state", missing, "init", "--address", "a@example.test", "--no-check", "--oauth2-token-command", "echo t", "--oauth2-mechanism", "plain"}, usage("xoauth2 or oauthbearer")},
	} {
		r := sp(t, nil, c.args...)
		w := c.want
		bad := r.code != w.code
		for _, s := range w.stdout {
			bad = bad || !strings.Contains(r.stdout, s)
		}
		for _, s := range w.stderr {
			bad = bad || !strings.Contains(r.stderr, s)
		}
		for _, s := range w.notStdout {
			bad = bad || strings.Contains(r.stdout, s)
		}
		if w.quietOther && (w.code == 0 && r.stderr != "" || w.code != 0 && r.stdout != "") {
			bad = true
		}
		// Go's flag package would print "-name": every option line shows --name (or -v).
		if regexp.MustCompile(`(?m)^  -[a-z][a-z-]+`).MatchString(r.stdout + r.stderr) {
			bad = true
		}
		if bad {
			t.Errorf("sealpost %q: exit %d\nstdout:\n%s\nstderr:\n%s\nwant exit %d, stdout with %q (not %q), stderr with %q",
				c.args, r.code, r.stdout, r.stderr, w.code, w.stdout, w.notStdout, w.stderr)
		}
	}
}

// TestHelpIntoClosedPipe: `sealpost run --help | head -1` shows the usage's first line, and
// sealpost says nothing about the pipe that closed.
func TestHelpIntoClosedPipe(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary")
	}
	cmd := exec.Command(binary, "run", "--help")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	out.Close() // what head does after its lines
	cmd.Wait()
	if err != nil || !strings.HasPrefix(line, "Usage: sealpost run ") || errOut.Len() != 0 {
		t.Fatalf("run --help | head -1: first line %q (%v), stderr %q; want the usage and nothing on stderr", line, err, errOut.String())
	}
}

// TestProgressLineClearedBeforeOutput: while the progress line is on the terminal, whatever
// is written to stdout or stderr (the program's output, a warning logged meanwhile) first takes
// it away, and stopping the progress leaves no line behind.
func TestProgressLineClearedBeforeOutput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var term lockedBuffer // stdout and stderr share the terminal
		c := &console{term: &term}
		g := &globals{console: c, stdout: c.writer(&term), stderr: c.writer(&term)}
		stop := progress(g, "bob", true)
		time.Sleep(progressEvery) // the bubble's fake clock: returns once every goroutine is blocked
		synctest.Wait()
		if !strings.Contains(term.String(), "waiting for bob's answer") {
			t.Fatalf("after %s the terminal shows %q; want the progress line", progressEvery, term.String())
		}
		io.WriteString(g.stderr, "a warning\n")
		if got := term.String(); !strings.HasSuffix(got, "waiting for bob's answer by mail… 1s (Ctrl-C stops waiting, not the command)"+clearLine+"a warning\n") {
			t.Fatalf("terminal = %q; want the progress line cleared before the warning", got)
		}
		time.Sleep(progressEvery) // the bubble's fake clock: returns once every goroutine is blocked
		synctest.Wait()
		stop()
		io.WriteString(g.stdout, "output\n")
		if got := term.String(); !strings.HasSuffix(got, "2s (Ctrl-C stops waiting, not the command)"+clearLine+"output\n") {
			t.Fatalf("terminal = %q; want the progress line taken away by stop, before the output", got)
		}
	})
}

// TestProgressOnlyOnTerminal: without a console (stderr not a terminal) nothing is drawn.
func TestProgressOnlyOnTerminal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var errOut lockedBuffer
		g := &globals{stdout: io.Discard, stderr: &errOut}
		stop := progress(g, "bob", true)
		time.Sleep(3 * progressEvery) // the bubble's fake clock
		synctest.Wait()
		stop()
		if errOut.Len() != 0 {
			t.Fatalf("progress without a terminal wrote %q", errOut.String())
		}
	})
}

// lockedBuffer is a bytes.Buffer that a test may read while another goroutine writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Len() int { return len(l.String()) }

func TestFindResult(t *testing.T) {
	mk := func(hex string) node.Result {
		var r node.Result
		for i := range r.CommandID {
			var b byte
			for _, c := range hex[2*i : 2*i+2] {
				b = b<<4 | byte(strings.IndexRune("0123456789abcdef", c))
			}
			r.CommandID[i] = b
		}
		return r
	}
	a := mk("3f2a0000000000000000000000000000")
	b := mk("3f2b0000000000000000000000000000")
	c := mk("c0ffee00000000000000000000000000")
	rs := []node.Result{a, b, c}
	for _, tc := range []struct {
		prefix string
		want   node.Result
	}{{"c", c}, {"C0FFEE", c}, {"3f2a", a}, {hexID(b.CommandID), b}} {
		if got, err := findResult(rs, tc.prefix); err != nil || got.CommandID != tc.want.CommandID {
			t.Errorf("findResult(%q) = %x, %v; want %x", tc.prefix, got.CommandID, err, tc.want.CommandID)
		}
	}
	_, err := findResult(rs, "3f2")
	var amb *ambiguousIDError
	if !errors.As(err, &amb) || len(amb.Candidates) != 2 {
		t.Errorf("findResult(3f2) = %v; want an *ambiguousIDError naming both 3f2a... and 3f2b...", err)
	}
	if _, err := findResult(rs, "dead"); !errors.Is(err, errNoCommand) {
		t.Errorf("findResult(dead) = %v; want errNoCommand", err)
	}
}

// TestDemoPairingReadsClean: the demo's first step, pairing, shows nothing that reads as an
// error: the PAIR that reaches bob before his operator typed the code is the protocol at work.
func TestDemoPairingReadsClean(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	r := mustOK(t, sp(t, nil, "demo"), "demo")
	step1, _, ok := strings.Cut(r.stdout, "\n2. ")
	if !ok {
		t.Fatalf("the demo printed no step 2:\n%s", r.stdout)
	}
	for _, line := range strings.Split(step1, "\n") {
		l := strings.ToLower(line)
		for _, bad := range []string{"moved aside", "rejected", "not a known peer", "error", "fail", "unknown"} {
			if strings.Contains(l, bad) {
				t.Errorf("the demo's pairing step prints %q, which reads as an error", line)
			}
		}
	}
}
