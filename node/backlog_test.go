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
	"github.com/sealpost/sealpost/session"
)

// TestBacklogRunsEveryCommandOnce: a backlog of far more than MaxChildren commands, queued while
// bob's agent was away, all goes out under one epoch. Every command runs once and comes back
// done; past the window bob's answers carry the null share, which changes nothing for alice once
// she adopted a child: no new handshake, no command sent again (docs/PROTOCOL.md section 7).
func TestBacklogRunsEveryCommandOnce(t *testing.T) {
	l := newLab(t)
	// tally records each run by its argument, so that a command run twice or never shows.
	tally := filepath.Join(t.TempDir(), "tally")
	ran := filepath.Join(t.TempDir(), "ran")
	if err := os.WriteFile(tally, []byte("#!/bin/sh\necho \"$1\" >> "+ran+"\necho \"$1\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{tally}}); err != nil {
		t.Fatal(err)
	}
	l.serveBob()
	if r := l.run("echo", "warm-up"); r.Status != StatusDone { // the handshake
		t.Fatalf("warm-up: %+v", r)
	}
	l.stopBob()

	// No agent runs: nothing uses alice's transport while it is wrapped.
	aliceTr := &countingTransport{Transport: l.alice.tr}
	l.alice.tr = aliceTr
	const backlog = 3*session.MaxChildren + 4
	ids := make([]session.CommandID, backlog)
	for i := range ids {
		id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{tally, fmt.Sprint("cmd-", i)}}})
		if err != nil {
			t.Fatalf("submit %d: %v", i, err)
		}
		ids[i] = id
	}

	l.serveBob()
	ctx, cancel := context.WithTimeout(l.ctx, 60*time.Second)
	defer cancel()
	for i, id := range ids {
		r, err := l.alice.Wait(ctx, id, nil)
		if err != nil || r.Status != StatusDone || string(r.Stdout) != fmt.Sprint("cmd-", i, "\n") {
			t.Fatalf("command %d: %q %q (%q), %v; want done with its argument as output (alice sent %d handshakes, %d commands)",
				i, r.Status, r.Stdout, r.Error, err, aliceTr.count("INIT_REQ"), aliceTr.count("COMMAND"))
		}
	}
	l.stopBob()

	b, _ := os.ReadFile(ran)
	got := strings.Fields(string(b))
	slices.Sort(got)
	want := make([]string, backlog)
	for i := range want {
		want[i] = fmt.Sprint("cmd-", i)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("bob ran %d commands (%v); want each of the %d once", len(got), got, backlog)
	}
	// The old window refused every command past the 32nd: a handshake and sending again per round.
	if n := aliceTr.count("INIT_REQ"); n != 0 {
		t.Fatalf("alice started %d handshakes during the backlog; want none", n)
	}
	if n := aliceTr.count("COMMAND"); n != backlog {
		t.Fatalf("alice sent %d commands for a backlog of %d; want each once", n, backlog)
	}
}
