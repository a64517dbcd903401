package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

// fanoutEnd is why a fan-out stopped waiting.
type fanoutEnd int

const (
	endAnswered    fanoutEnd = iota // every peer answered
	endDeadline                     // --deadline (--timeout) passed
	endInterrupted                  // a signal (Ctrl-C)
	endError                        // reading the mailbox or asking the agent failed
)

// Exit statuses of a fan-out (README.md, "Exit codes"). A peer "succeeded" when its program
// ran and exited 0 (ping and sysinfo: when it answered). The rule, in order:
//
//	0            every peer succeeded
//	exitError    some peer answered without success (non-zero exit, killed, timed out, could
//	             not start, refused, failed): that is news whatever the others did
//	exitPending  every answer that came was a success, but some peers did not answer in time;
//	             their commands stay pending, as with a single `run --wait`
//
// Ctrl-C is 128+N as everywhere (signalExit), whatever came in.
func fanoutExitCode(rs []node.Result) int {
	code := exitOK
	for _, r := range rs {
		switch {
		case !node.Final(r.Status):
			code = exitPending
		case !succeeded(r):
			return exitError
		}
	}
	return code
}

// succeeded reports whether r is an answer of a program that ran and exited 0.
func succeeded(r node.Result) bool {
	code, ok := r.ShellExitCode()
	return r.Status == node.StatusDone && ok && code == 0
}

// outcomeLabel says in a few words how a command stands: "exit 0", "waiting", "refused
// (denied): …". The error and a refusal's status came from the peer: they are escaped
// (node.Printable), so that they cannot drive the terminal (THREATS.md row 41).
func outcomeLabel(r node.Result) string {
	detail := func(s string) string {
		if r.Error != "" {
			return s + ": " + node.Printable(r.Error)
		}
		return s
	}
	switch {
	case !node.Final(r.Status):
		return "waiting"
	case r.Status == node.StatusMissing:
		return "no record of the command (pruned?)"
	case r.Status == node.StatusFailed, r.Status == node.StatusLocalExpired:
		return detail(r.Status)
	case r.Status != node.StatusDone:
		return detail("refused (" + node.Printable(r.Status) + ")")
	}
	if code, ok := r.ShellExitCode(); ok {
		if r.Outcome == commands.OutcomeSignaled {
			return fmt.Sprintf("killed by signal %d (exit %d)", r.Signal, code)
		}
		return fmt.Sprintf("exit %d", code)
	}
	switch r.Outcome {
	case commands.OutcomeTimedOut:
		return "timed out on the peer"
	case commands.OutcomeNotFound, commands.OutcomeNotExecutable, commands.OutcomeStartFailed:
		return detail("could not start")
	}
	return detail(fmt.Sprintf("ended without an exit status (%s)", r.Outcome))
}

// took is how long a command took to answer (answered), or has waited so far (at now).
func took(r node.Result, now time.Time) string {
	switch {
	case r.Sent.IsZero():
		return "-"
	case node.Final(r.Status) && !r.Finished.IsZero():
		return r.Finished.Sub(r.Sent).Round(100 * time.Millisecond).String()
	case node.Final(r.Status):
		return "-"
	}
	return now.Sub(r.Sent).Round(time.Second).String()
}

// outputGroup is the peers whose answers were the same: how it ended, stdout and stderr.
type outputGroup struct {
	Label          string
	Stdout, Stderr []byte
	Peers          []string
}

// groupOutputs groups the answers (final results) by identical output, as pssh and ansible
// users expect: the largest group first (the usual answer, then the odd ones), then by the
// first peer's name. Each group's peers are in the order of rs.
func groupOutputs(rs []node.Result) []outputGroup {
	var gs []outputGroup
	for _, r := range rs {
		if !node.Final(r.Status) {
			continue
		}
		label := outcomeLabel(r)
		i := slices.IndexFunc(gs, func(g outputGroup) bool {
			return g.Label == label && bytes.Equal(g.Stdout, r.Stdout) && bytes.Equal(g.Stderr, r.Stderr)
		})
		if i < 0 {
			gs = append(gs, outputGroup{Label: label, Stdout: r.Stdout, Stderr: r.Stderr})
			i = len(gs) - 1
		}
		gs[i].Peers = append(gs[i].Peers, node.Printable(r.Peer))
	}
	slices.SortStableFunc(gs, func(a, b outputGroup) int {
		return cmp.Or(cmp.Compare(len(b.Peers), len(a.Peers)), cmp.Compare(a.Peers[0], b.Peers[0]))
	})
	return gs
}

// notAnswered names the peers whose commands have no final result.
func notAnswered(rs []node.Result) []string {
	var out []string
	for _, r := range rs {
		if !node.Final(r.Status) {
			out = append(out, node.Printable(r.Peer))
		}
	}
	return out
}

// summaryLine is "12 of 14 answered, 2 waiting" (without the waiting part when all answered).
func summaryLine(rs []node.Result) string {
	waiting := len(notAnswered(rs))
	s := fmt.Sprintf("%d of %d answered", len(rs)-waiting, len(rs))
	if waiting > 0 {
		s += fmt.Sprintf(", %d waiting", waiting)
	}
	return s
}

// maxLiveRows bounds the live table's rows, so that it fits a terminal with a large fleet; the
// summary line below it counts them all.
const maxLiveRows = 20

// renderTable is the live table: one row per peer (waiting / exit code / time), at most
// maxRows of them, then the summary line. It has no newline at its end.
func renderTable(rs []node.Result, now time.Time, maxRows int) string {
	width := 4
	for _, r := range rs {
		width = max(width, min(utf8.RuneCountInString(node.Printable(r.Peer)), 24))
	}
	var b strings.Builder
	for i, r := range rs {
		if i == maxRows {
			fmt.Fprintf(&b, "  … and %d more\n", len(rs)-maxRows)
			break
		}
		fmt.Fprintf(&b, "  %-*s  %-*s  %s\n", width, clip(node.Printable(r.Peer), 24), 32, clip(outcomeLabel(r), 32), took(r, now))
	}
	b.WriteString(summaryLine(rs))
	return b.String()
}

// clip shortens s to n runes, marking the cut, so that a table row fits on one line.
func clip(s string, n int) string {
	s = strings.Map(func(c rune) rune {
		if c < ' ' {
			return ' '
		}
		return c
	}, s)
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// notAnsweredLine is the report's last line, naming the peers that did not answer.
func notAnsweredLine(end fanoutEnd, names []string) string {
	why := "by the deadline"
	switch end {
	case endInterrupted:
		why = "when interrupted"
	case endError:
		why = "when waiting failed"
	}
	return fmt.Sprintf("not answered %s: %s", why, strings.Join(names, ", "))
}

// printFanout prints the final report on stdout: the answers grouped by identical output (ping:
// one line per peer), then the peers that did not answer. The outputs are the programs' own,
// written as they are (as `run --wait` does); every other text that came from a peer (an
// error, a status) is escaped by outcomeLabel.
func printFanout(g *globals, rs []node.Result, style fanoutStyle, end fanoutEnd) {
	var b bytes.Buffer
	if style == pingLines {
		for _, r := range rs {
			switch {
			case !node.Final(r.Status):
			case r.Status == node.StatusDone:
				fmt.Fprintf(&b, "answer from %s: time=%s\n", node.Printable(r.Peer), r.Finished.Sub(r.Sent).Round(time.Millisecond))
			default:
				fmt.Fprintf(&b, "%s: %s\n", node.Printable(r.Peer), outcomeLabel(r))
			}
		}
	} else {
		for _, gr := range groupOutputs(rs) {
			fmt.Fprintf(&b, "--- %s: %s\n", strings.Join(gr.Peers, ", "), gr.Label)
			writeBlock(&b, "", gr.Stdout)
			writeBlock(&b, "stderr:\n", gr.Stderr)
		}
	}
	if names := notAnswered(rs); len(names) > 0 {
		fmt.Fprintln(&b, notAnsweredLine(end, names))
	}
	g.stdout.Write(b.Bytes()) // one write: a reader that stops early (| head) sees whole lines
}

// writeBlock writes a program's output after head, ending it with a newline if it has none.
func writeBlock(b *bytes.Buffer, head string, data []byte) {
	if len(data) == 0 {
		return
	}
	b.WriteString(head)
	b.Write(data)
	if data[len(data)-1] != '\n' {
		b.WriteByte('\n')
	}
}

// fanoutError is the fan-out's exit (fanoutExitCode), with a message that names the peers that
// did not succeed and those that did not answer, and says that their commands go on.
func fanoutError(ctx context.Context, rs []node.Result, end fanoutEnd, deadline time.Duration, werr error) error {
	var failed []string
	for _, r := range rs {
		if node.Final(r.Status) && !succeeded(r) {
			failed = append(failed, fmt.Sprintf("%s (%s)", node.Printable(r.Peer), clip(outcomeLabel(r), 60)))
		}
	}
	waiting := notAnswered(rs)
	var msgs []string
	if len(failed) > 0 {
		msgs = append(msgs, fmt.Sprintf("%d of %d peers did not succeed: %s", len(failed), len(rs), listSome(failed)))
	}
	if len(waiting) > 0 {
		why := fmt.Sprintf("within %s", deadline)
		switch end {
		case endInterrupted:
			why = "before the interruption"
		case endError:
			why = fmt.Sprintf("before waiting failed (%v)", werr)
		}
		msgs = append(msgs, fmt.Sprintf("%d of %d peers did not answer %s: %s; their commands go on (`sealpost results` shows the answers when they come)", len(waiting), len(rs), why, listSome(waiting)))
	}
	code := fanoutExitCode(rs)
	if end == endInterrupted {
		code = signalExit(ctx)
		msgs = append([]string{"interrupted"}, msgs...)
	}
	if code == exitOK {
		return nil
	}
	return exitCodeError{code, errors.New(strings.Join(msgs, "; "))}
}

// listSome joins names, the first 10 of them and a count of the rest.
func listSome(names []string) string {
	if len(names) <= 10 {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:10], ", "), len(names)-10)
}
