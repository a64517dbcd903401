package main

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

var t0 = time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)

// doneWith is a done result of peer: its program exited code with this output.
func doneWith(peer string, code int, stdout, stderr string) node.Result {
	return node.Result{Peer: peer, Status: node.StatusDone, Outcome: commands.OutcomeExited, ExitCode: code,
		Stdout: []byte(stdout), Stderr: []byte(stderr), Sent: t0, Finished: t0.Add(1200 * time.Millisecond)}
}

func waiting(peer string) node.Result {
	return node.Result{Peer: peer, Status: node.StatusSent, Sent: t0}
}

// TestGroupOutputs: answers with the same exit code, stdout and stderr form one group, headed
// by its peers in order; the largest group comes first, then by first peer; peers that did not
// answer are in no group.
func TestGroupOutputs(t *testing.T) {
	rs := []node.Result{
		doneWith("db1", 1, "", "disk full\n"),
		doneWith("web1", 0, "active\n", ""),
		waiting("web2"),
		doneWith("web3", 0, "active\n", ""),
		doneWith("web4", 1, "active\n", ""), // same stdout, another exit code
		doneWith("web5", 0, "active\n", "warning\n"),
		doneWith("web6", 0, "active\n", ""),
		{Peer: "web7", Status: "denied", Error: "not allowed"},
		{Peer: "web8", Status: "denied", Error: "not allowed"},
	}
	type group struct {
		label, stdout, stderr string
		peers                 []string
	}
	want := []group{
		{"exit 0", "active\n", "", []string{"web1", "web3", "web6"}},
		{"refused (denied): not allowed", "", "", []string{"web7", "web8"}},
		{"exit 1", "", "disk full\n", []string{"db1"}},
		{"exit 1", "active\n", "", []string{"web4"}},
		{"exit 0", "active\n", "warning\n", []string{"web5"}},
	}
	got := groupOutputs(rs)
	if len(got) != len(want) {
		t.Fatalf("groupOutputs = %+v, want %d groups", got, len(want))
	}
	for i, g := range got {
		w := want[i]
		if g.Label != w.label || string(g.Stdout) != w.stdout || string(g.Stderr) != w.stderr || !slices.Equal(g.Peers, w.peers) {
			t.Errorf("group %d = %q %q %q %v, want %+v", i, g.Label, g.Stdout, g.Stderr, g.Peers, w)
		}
	}
	if got := notAnswered(rs); !slices.Equal(got, []string{"web2"}) {
		t.Errorf("notAnswered = %v, want [web2]", got)
	}
}

// TestFanoutExitCode: 0 when every peer's program exited 0; 1 when any answered otherwise,
// whatever the rest did; 75 when all that answered succeeded but some did not answer.
func TestFanoutExitCode(t *testing.T) {
	ok, fail, wait := doneWith("a", 0, "", ""), doneWith("b", 2, "", ""), waiting("c")
	killed := doneWith("k", 0, "", "")
	killed.Outcome, killed.ExitCode, killed.Signal = commands.OutcomeSignaled, -1, 9
	timedOut := doneWith("t", 0, "", "")
	timedOut.Outcome = commands.OutcomeTimedOut
	denied := node.Result{Peer: "d", Status: "denied"}
	expired := node.Result{Peer: "e", Status: node.StatusLocalExpired}
	missing := node.Result{Peer: "m", Status: node.StatusMissing}
	unknown := doneWith("u", 0, "", "")
	unknown.Outcome = commands.OutcomeUnknown
	for _, c := range []struct {
		name string
		rs   []node.Result
		want int
	}{
		{"all exit 0", []node.Result{ok, ok}, exitOK},
		{"none", nil, exitOK},
		{"one exit 2", []node.Result{ok, fail}, exitError},
		{"one waiting", []node.Result{ok, wait}, exitPending},
		{"failed beats waiting", []node.Result{wait, fail, ok}, exitError},
		{"killed", []node.Result{ok, killed}, exitError},
		{"timed out", []node.Result{timedOut}, exitError},
		{"denied", []node.Result{ok, denied, wait}, exitError},
		{"expired unanswered", []node.Result{expired}, exitError},
		{"no record", []node.Result{missing}, exitError},
		{"outcome unknown", []node.Result{unknown}, exitError},
	} {
		if got := fanoutExitCode(c.rs); got != c.want {
			t.Errorf("%s: fanoutExitCode = %d, want %d", c.name, got, c.want)
		}
	}
	// fanoutError carries the code; interrupted is 130 whatever came in.
	var ce exitCodeError
	if err := fanoutError(context.Background(), []node.Result{ok, wait}, endDeadline, 5*time.Second, context.DeadlineExceeded); !errors.As(err, &ce) || ce.code != exitPending {
		t.Errorf("fanoutError(ok, waiting) = %v, want exit %d", err, exitPending)
	}
	if err := fanoutError(context.Background(), []node.Result{ok, ok}, endAnswered, 5*time.Second, nil); err != nil {
		t.Errorf("fanoutError(ok, ok) = %v, want nil", err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := fanoutError(cancelled, []node.Result{ok, wait}, endInterrupted, 5*time.Second, context.Canceled); !errors.As(err, &ce) || ce.code != exitSignal+2 {
		t.Errorf("fanoutError interrupted = %v, want exit 130", err)
	}
}

// TestPrintFanout: the report as a user reads it: groups headed by their peers, output as the
// program wrote it (a missing last newline added), stderr marked, and the not-answered line.
func TestPrintFanout(t *testing.T) {
	var out bytes.Buffer
	g := &globals{stdout: &out}
	rs := []node.Result{doneWith("bob", 0, "hello\n", ""), doneWith("carol", 0, "hello\n", ""), doneWith("db1", 3, "half", "oops\n"), waiting("db3"), waiting("edge7")}
	printFanout(g, rs, groupedOutput, endDeadline)
	want := "--- bob, carol: exit 0\nhello\n--- db1: exit 3\nhalf\nstderr:\noops\nnot answered by the deadline: db3, edge7\n"
	if out.String() != want {
		t.Errorf("printFanout =\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	printFanout(g, rs[:2], pingLines, endAnswered)
	if want := "answer from bob: time=1.2s\nanswer from carol: time=1.2s\n"; out.String() != want {
		t.Errorf("printFanout for ping =\n%s\nwant\n%s", out.String(), want)
	}
}

// TestRenderTable: one row per peer (waiting / exit code / time), capped, and the summary line.
func TestRenderTable(t *testing.T) {
	rs := []node.Result{doneWith("bob", 0, "", ""), waiting("carol"), doneWith("db1", 1, "", "")}
	got := renderTable(rs, t0.Add(3*time.Second), 20)
	want := "  bob    exit 0                            1.2s\n" +
		"  carol  waiting                           3s\n" +
		"  db1    exit 1                            1.2s\n" +
		"2 of 3 answered, 1 waiting"
	if got != want {
		t.Errorf("renderTable =\n%s\nwant\n%s", got, want)
	}
	got = renderTable(rs, t0.Add(3*time.Second), 2)
	if lines := strings.Split(got, "\n"); len(lines) != 4 || lines[2] != "  … and 1 more" {
		t.Errorf("renderTable capped at 2 rows =\n%s", got)
	}
	if got := summaryLine([]node.Result{doneWith("a", 0, "", "")}); got != "1 of 1 answered" {
		t.Errorf("summaryLine = %q", got)
	}
}

// TestLiveTable: a redraw goes up to the block's first line and erases to the end of the screen
// before drawing; a write through the console meanwhile takes the block away first.
func TestLiveTable(t *testing.T) {
	var term bytes.Buffer
	c := &console{term: &term}
	lt := &liveTable{c: c}
	lt.draw("a\nb\nc")
	lt.draw("x\ny")
	if want := "a\nb\nc\r\033[2A\033[Jx\ny"; term.String() != want {
		t.Errorf("two draws wrote %q, want %q", term.String(), want)
	}
	term.Reset()
	lt.clear()
	lt.clear()
	if want := "\r\033[1A\033[J"; term.String() != want {
		t.Errorf("clear wrote %q, want %q", term.String(), want)
	}
	term.Reset()
	lt.draw("one")
	c.writer(&term).Write([]byte("log\n"))
	lt.draw("two")
	if want := "one" + clearLine + "log\ntwo"; term.String() != want {
		t.Errorf("draw, write, draw wrote %q, want %q", term.String(), want)
	}
}

// TestIsFanout: a plain peer name keeps the one-peer path; tags and lists fan out.
func TestIsFanout(t *testing.T) {
	for target, want := range map[string]bool{"bob": false, "web-1": false, "@web": true, "@all": true, "bob,carol": true, "bob,": true} {
		if got := isFanout(target); got != want {
			t.Errorf("isFanout(%q) = %v, want %v", target, got, want)
		}
	}
}

// TestFanoutEscapesPeerText: an error and a refusal's status come from the peer; in the live
// table, the lines announced on stderr, the final report and the exit message they are escaped
// (THREATS.md row 41), so a hostile peer cannot retitle the window, clear the screen or forge
// a line. The program's output stays as it was written.
func TestFanoutEscapesPeerText(t *testing.T) {
	const hostile = "no\x1b]0;pwned\x07\x1b[2J\u009b31m\u202eevil\r\nfaked: exit 0"
	rs := []node.Result{
		{Peer: "bob", Status: node.StatusFailed, Error: hostile, Sent: t0, Finished: t0.Add(time.Second)},
		{Peer: "carol", Status: "denied\u202e", Error: hostile, Sent: t0, Finished: t0.Add(time.Second)},
		doneWith("dave", 0, "output \x1b[1mbold\x1b[0m\n", ""),
		{Peer: "erin", Status: node.StatusDone, Outcome: commands.OutcomeStartFailed, Error: hostile, Sent: t0, Finished: t0.Add(time.Second)},
	}
	check := func(what, s string, lines int) {
		t.Helper()
		for _, r := range s {
			if r != '\n' && !unicode.IsGraphic(r) || r == '\u202e' {
				t.Errorf("%s holds %U unescaped:\n%q", what, r, s)
				return
			}
		}
		if got := strings.Count(strings.TrimSuffix(s, "\n"), "\n") + 1; got != lines {
			t.Errorf("%s has %d lines, want %d (a peer's text must not make lines):\n%s", what, got, lines, s)
		}
	}
	for i := range rs {
		rs[i].CommandID[0] = byte(i + 1)
	}
	check("the live table", renderTable(rs, t0, 20), len(rs)+1)

	var out, errOut bytes.Buffer
	g := &globals{stdout: &out, stderr: &errOut}
	w := newFanoutWatch(g, runOptions{}, []string{"bob", "carol", "dave", "erin"})
	w.update(rs)
	check("the answers announced on stderr", errOut.String(), len(rs))

	printFanout(g, rs[:2], pingLines, endAnswered)
	check("the ping report", out.String(), 2)
	out.Reset()
	printFanout(g, rs[:2], groupedOutput, endAnswered)
	check("the grouped report", out.String(), 2)
	out.Reset()
	printFanout(g, rs, groupedOutput, endAnswered)
	if !strings.Contains(out.String(), "\noutput \x1b[1mbold\x1b[0m\n") {
		t.Errorf("the grouped report does not show dave's output as his program wrote it:\n%q", out.String())
	}

	err := fanoutError(context.Background(), rs, endAnswered, time.Minute, nil)
	if err == nil {
		t.Fatal("fanoutError = nil, want the peers that failed")
	}
	check("the exit message", err.Error(), 1)
}
