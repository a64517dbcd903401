package node

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
)

// TestPeerMaxOutput: the cap set for a peer (AddPeer's MaxOutput) cuts what its commands' output
// streams back, and the result says it was cut; back at the default, the same command's output
// comes whole. peer list shows the cap.
func TestPeerMaxOutput(t *testing.T) {
	l := newLab(t)
	l.bob.opts.ChunkSize = 32 << 10
	const size, limit = 300_000, 100_000
	prog, printed := streamScript(t, l, size)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", MaxOutput: limit}); err != nil {
		t.Fatal(err)
	}
	if ps, err := l.bob.Peers(l.ctx); err != nil || len(ps) != 1 || ps[0].MaxOutput != limit {
		t.Fatalf("bob's peers: %+v, %v; want alice with MaxOutput %d", ps, err, limit)
	}
	l.serveBob()
	defer l.stopBob()
	run := func() Result {
		ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
		defer cancel()
		r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{prog}}}, true, nil)
		if err != nil || r.Status != StatusDone || !r.Streamed {
			t.Fatalf("run: %v: %s streamed %v: %s", err, r.Status, r.Streamed, r.Error)
		}
		return r
	}
	r := run()
	want, _ := os.ReadFile(printed)
	got, _ := os.ReadFile(r.StdoutPath)
	if !r.StdoutTruncated || r.StderrTruncated || r.StdoutSize != limit || !bytes.Equal(got, want[:limit]) {
		t.Fatalf("capped: stdout truncated %v (stderr %v), %d bytes (size %d) of %d; want the first %d and truncated",
			r.StdoutTruncated, r.StderrTruncated, len(got), r.StdoutSize, len(want), limit)
	}
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", MaxOutput: MaxOutputDefault}); err != nil {
		t.Fatal(err)
	}
	r = run()
	want, _ = os.ReadFile(printed)
	got, _ = os.ReadFile(r.StdoutPath)
	if r.StdoutTruncated || !bytes.Equal(got, want) {
		t.Fatalf("default cap: truncated %v, %d bytes of %d", r.StdoutTruncated, len(got), len(want))
	}
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", MaxOutput: -2}); err == nil {
		t.Fatal("AddPeer with MaxOutput -2 succeeded")
	}
}
