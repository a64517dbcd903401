package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// tallyLab is a lab whose bob allows alice the tally script, which records each run by its
// argument so that a command run twice or never shows; the session is confirmed and bob's agent
// stopped.
type tallyLab struct {
	*lab
	tally, ran string
}

func newTallyLab(t *testing.T) *tallyLab {
	l := &tallyLab{lab: newLab(t), tally: filepath.Join(t.TempDir(), "tally"), ran: filepath.Join(t.TempDir(), "ran")}
	if err := os.WriteFile(l.tally, []byte("#!/bin/sh\necho \"$1\" >> "+l.ran+"\necho \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{l.tally}}); err != nil {
		t.Fatal(err)
	}
	l.serveBob()
	if r := l.run("echo", "warm-up"); r.Status != StatusDone { // the handshake
		t.Fatalf("warm-up: %+v", r)
	}
	l.stopBob()
	return l
}

// submit has alice submit n tally commands, cmd-0 to cmd-(n-1).
func (l *tallyLab) submit(n int) []session.CommandID {
	l.t.Helper()
	ids := make([]session.CommandID, n)
	for i := range ids {
		id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{l.tally, fmt.Sprint("cmd-", i)}}})
		if err != nil {
			l.t.Fatalf("submit %d: %v", i, err)
		}
		ids[i] = id
	}
	return ids
}

// serveUntilDone runs bob's agent until alice holds the result of every command, taken in the
// order given (indexes into ids), and checks each ended done with its argument as output. tr
// counts what alice sent, for the failure message.
func (l *tallyLab) serveUntilDone(ids []session.CommandID, order []int, tr *countingTransport) {
	l.t.Helper()
	l.serveBob()
	defer l.stopBob()
	ctx, cancel := context.WithTimeout(l.ctx, 60*time.Second)
	defer cancel()
	for _, i := range order {
		r, err := l.alice.Wait(ctx, ids[i], nil)
		if err != nil || r.Status != StatusDone || string(r.Stdout) != fmt.Sprint("cmd-", i, "\n") {
			l.t.Fatalf("command %d: %q %q (%q), %v; want done with its argument as output (alice sent %d handshakes, %d commands)",
				i, r.Status, r.Stdout, r.Error, err, tr.count("INIT_REQ"), tr.count("COMMAND"))
		}
	}
}

// ranEachOnce checks that bob ran cmd-0 to cmd-(n-1) each exactly once.
func (l *tallyLab) ranEachOnce(n int) {
	l.t.Helper()
	b, _ := os.ReadFile(l.ran)
	got := strings.Fields(string(b))
	slices.Sort(got)
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprint("cmd-", i)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		l.t.Fatalf("bob ran %d commands (%v); want each of the %d once", len(got), got, n)
	}
}

// TestBacklogRunsEveryCommandOnce: a backlog of far more than MaxChildren commands, queued while
// bob's agent was away, all goes out under one epoch. Every command runs once and comes back
// done; past the window bob's answers carry the null share, which changes nothing for alice once
// she adopted a child: no new handshake, no command sent again (docs/PROTOCOL.md section 7).
func TestBacklogRunsEveryCommandOnce(t *testing.T) {
	l := newTallyLab(t)

	// No agent runs: nothing uses alice's transport while it is wrapped.
	aliceTr := &countingTransport{Transport: l.alice.tr}
	l.alice.tr = aliceTr
	const backlog = 3*session.MaxChildren + 4
	ids := l.submit(backlog)

	order := make([]int, backlog)
	for i := range order {
		order[i] = i
	}
	l.serveUntilDone(ids, order, aliceTr)

	l.ranEachOnce(backlog)
	// The old window refused every command past the 32nd: a handshake and sending again per round.
	if n := aliceTr.count("INIT_REQ"); n != 0 {
		t.Fatalf("alice started %d handshakes during the backlog; want none", n)
	}
	if n := aliceTr.count("COMMAND"); n != backlog {
		t.Fatalf("alice sent %d commands for a backlog of %d; want each once", n, backlog)
	}
}

// dropFirstAnswers loses, on receipt, the first RESPONSE to every command but keep: the mail is
// acknowledged (gone) and never handed to the node, as if the provider had dropped it.
type dropFirstAnswers struct {
	mailbox.Transport
	keep session.CommandID
	seen map[session.CommandID]bool
}

func (d *dropFirstAnswers) Receive(ctx context.Context, after mailbox.Cursor, wait time.Duration, max int) ([]mailbox.Message, mailbox.Cursor, error) {
	msgs, cur, err := d.Transport.Receive(ctx, after, wait, max)
	var kept []mailbox.Message
	for _, m := range msgs {
		if p, perr := session.Parse(m.Package); perr == nil && p.Type == session.TypeResponse && p.Command != d.keep && !d.seen[p.Command] {
			d.seen[p.Command] = true
			if aerr := d.Transport.Ack(ctx, m); aerr != nil {
				return nil, after, aerr
			}
			continue
		}
		kept = append(kept, m)
	}
	return kept, cur, err
}

// TestLostAnswersPastWindowRehandshake is THREATS row 10 through the node: bob answers
// MaxChildren+1 commands sent under one epoch, and every answer that carried a child is lost.
// The last answer (the null share) reaches alice: its result is delivered and alice opens a new
// session, under which the others are sent again and answered from bob's ledger. Each runs once.
func TestLostAnswersPastWindowRehandshake(t *testing.T) {
	l := newTallyLab(t)

	const n = session.MaxChildren + 1
	ids := l.submit(n)
	// No agent runs: nothing uses alice's transport while it is wrapped.
	aliceTr := &countingTransport{Transport: &dropFirstAnswers{Transport: l.alice.tr, keep: ids[n-1], seen: map[session.CommandID]bool{}}}
	l.alice.tr = aliceTr

	order := make([]int, n) // the last first: its answer is the one that gets through
	for i := range order {
		order[i] = n - 1 - i
	}
	l.serveUntilDone(ids, order, aliceTr)

	l.ranEachOnce(n)
	if h := aliceTr.count("INIT_REQ"); h != 1 {
		t.Fatalf("alice started %d handshakes; want one, asked for by the answer past the window", h)
	}
	if c := aliceTr.count("COMMAND"); c != n-1 {
		t.Fatalf("alice sent %d commands again; want the %d whose answers were lost", c, n-1)
	}
}
