package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/compress"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// dropChunks loses every CHUNK mail while drop is set; other mail goes.
type dropChunks struct {
	mailbox.Transport
	drop atomic.Bool
}

func (d *dropChunks) Send(ctx context.Context, to string, pkg []byte) error {
	if isChunk(pkg) && d.drop.Load() {
		return nil
	}
	return d.Transport.Send(ctx, to, pkg)
}

// TestReviewPullFIFODoesNotBlock: a FIFO inside a directory the peer may read must not hold the
// peer's executor forever: open(2) of a FIFO for reading blocks until a writer comes, and the
// regular-file check comes only after the open.
func TestReviewPullFIFODoesNotBlock(t *testing.T) {
	l, readDir, _ := transferLab(t)
	fifo := filepath.Join(readDir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	l.serveBob()
	defer l.stopBob()
	defer func() {
		// Releases a reader stuck in open (the code before the fix), so that bob can stop:
		// before the fix, even stopping the agent waits for it for ever.
		if f, err := os.OpenFile(fifo, os.O_RDWR, 0); err == nil {
			f.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: commands.CmdPull, Path: fifo}}, true, nil)
	if err != nil || !Final(r.Status) {
		t.Fatalf("pull of a FIFO: %v, %s; want an answer (the executor is stuck in open)", err, r.Status)
	}
	if r.Status == StatusDone && r.Outcome == commands.OutcomeExited && r.ExitCode == 0 {
		t.Fatalf("pull of a FIFO succeeded")
	}
}

// streamOf returns the stream record alice holds for id.
func streamOf(t *testing.T, n *Node, peer session.Fingerprint, id session.CommandID) *keystore.StreamIn {
	t.Helper()
	var rec *keystore.StreamIn
	n.store.View(func(tx *keystore.Tx) error {
		rec, _, _ = tx.StreamIn(peer, id)
		return nil
	})
	return rec
}

// TestReviewChunkPastAnyFileDoesNotHoldInbox: a chunk whose offset no spool file can reach (the
// sender holds the stream secret: the peer) is the package's fault. It must not be an error
// that keeps the mail in the inbox (THREATS row 30), nor leave a file of that size in the spool.
func TestReviewChunkPastAnyFileDoesNotHoldInbox(t *testing.T) {
	l := newLab(t)
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{"echo", "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	rec := streamOf(t, l.alice, l.bob.Fingerprint(), id)
	if rec == nil {
		t.Fatal("alice holds no stream for the exec")
	}
	frame, _ := compress.Encode([]byte("hello"))
	secret := session.Secret(rec.Secret)
	for _, off := range []uint64{session.MaxStreamOffset, 1 << 44} {
		pkg, err := l.bob.eng.SealChunk(l.alice.Fingerprint(), id, &secret, session.Chunk{Index: uint32(off >> 40), Part: session.PartStdout, Offset: off, Payload: frame})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := l.alice.receive(l.ctx, pkg, nil); err != nil {
			t.Fatalf("chunk at offset %d: %v; want it taken or rejected, not an error that holds the inbox", off, err)
		}
	}
	// A push the agent receives names its size: a chunk past it is dropped, not spooled.
}

// TestReviewPushChunkPastSizeNotSpooled: on the agent, a push names its size; a chunk whose bytes
// lie past it is dropped instead of growing the spool beyond the size the push declared.
func TestReviewPushChunkPastSizeNotSpooled(t *testing.T) {
	l, _, writeDir := transferLab(t)
	local := filepath.Join(t.TempDir(), "local")
	randomFile(t, local, 100_000) // 2 chunks of 64 KiB
	l.alice.Close()
	drop := &dropChunks{}
	drop.drop.Store(true)
	l.alice = l.open("alice", func(tr mailbox.Transport) mailbox.Transport { drop.Transport = tr; return drop }, false)
	l.alice.opts.ChunkSize = 64 << 10
	id, err := l.alice.Push(l.ctx, PushSpec{Peer: "bob", Local: local, Remote: filepath.Join(writeDir, "f")})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		l.alice.Flush(l.ctx)
		l.bob.Pump(l.ctx, false, 0)
		l.bob.Flush(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		if streamOf(t, l.bob, l.alice.Fingerprint(), id) != nil {
			break
		}
	}
	rec := streamOf(t, l.bob, l.alice.Fingerprint(), id)
	if rec == nil {
		t.Fatal("bob holds no stream for the push")
	}
	frame, _ := compress.Encode([]byte("past the end"))
	secret := session.Secret(rec.Secret)
	pkg, err := l.alice.eng.SealChunk(l.bob.Fingerprint(), id, &secret, session.Chunk{Index: 1, Part: session.PartStdout, Offset: 1 << 40, Payload: frame})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.bob.receive(l.ctx, pkg, nil); err != nil {
		t.Fatalf("chunk past the push's size: %v", err)
	}
	if fi, err := os.Stat(l.bob.StreamPath(id, session.PartStdout)); err == nil && fi.Size() > rec.Size {
		t.Fatalf("bob's spool of a %d-byte push is %d bytes", rec.Size, fi.Size())
	}
	if rec := streamOf(t, l.bob, l.alice.Fingerprint(), id); rec == nil || rec.HasChunk(1) {
		t.Fatalf("bob took a chunk past the push's size as chunk 1")
	}
}

// TestReviewResendOfChangedFileDoesNotHoldInbox: a pull's chunks are read again from the file
// when asked for; a file that shrank since (rotated, truncated, replaced by the peer's own push)
// must not make the ask an error that holds bob's inbox, and the pull must end (failed) instead
// of being asked for forever.
func TestReviewResendOfChangedFileDoesNotHoldInbox(t *testing.T) {
	l, readDir, _ := transferLab(t)
	src := filepath.Join(readDir, "data")
	randomFile(t, src, 256<<10) // 4 chunks
	l.bob.Close()
	drop := &dropChunks{}
	drop.drop.Store(true)
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { drop.Transport = tr; return drop }, false)
	l.bob.opts.ChunkSize = 64 << 10
	l.alice.Close()
	clk := l.clock("alice")
	l.alice = l.open("alice", nil, false)
	l.alice.opts.RetryAfter = 10 * time.Millisecond
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: commands.CmdPull, Path: src}})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		l.bob.Pump(l.ctx, false, 0)
		l.bob.exec.wait(l.ctx)
		l.bob.Flush(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		if r, _, _ := l.alice.Result(id); r.Status == StatusReceiving {
			break
		}
	}
	if r, _, _ := l.alice.Result(id); r.Status != StatusReceiving {
		t.Fatalf("alice's pull is %s; want receiving (the answer in, every chunk lost)", r.Status)
	}
	os.Truncate(src, 10)
	drop.drop.Store(false)
	for range 30 {
		clk.step(l.alice.askAfter() << 6) // past the next ask
		l.alice.Maintain(l.ctx)
		l.alice.Flush(l.ctx)
		if _, err := l.bob.Pump(l.ctx, false, 0); err != nil {
			t.Fatalf("bob's inbox held by an ask for chunks of a file that changed: %v", err)
		}
		l.bob.Maintain(l.ctx) // the chunks asked for again are sealed here, outside the ask's transaction
		waitResends(l.bob)
		l.bob.Flush(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		if r, _, _ := l.alice.Result(id); Final(r.Status) {
			t.Logf("the pull ended %s exit %d: %s", r.Status, r.ExitCode, r.Error)
			if r.Status == StatusDone && r.ExitCode == 0 && r.Error == "" {
				t.Fatalf("pull of a file that changed midway reported success")
			}
			return
		}
	}
	r, _, _ := l.alice.Result(id)
	t.Fatalf("the pull never ended: %s", r.Status)
}

// TestReviewAbandonedPushEnds: when the requester no longer holds a push's chunks (its record
// expired, or its state was lost) and says so to the agent's ask, the agent ends the push
// (answered, not Executing for ever) instead of asking again every hour for good.
func TestReviewAbandonedPushEnds(t *testing.T) {
	l, _, writeDir := transferLab(t)
	local := filepath.Join(t.TempDir(), "local")
	randomFile(t, local, 200_000)
	l.alice.Close()
	drop := &dropChunks{}
	drop.drop.Store(true)
	l.alice = l.open("alice", func(tr mailbox.Transport) mailbox.Transport { drop.Transport = tr; return drop }, false)
	l.alice.opts.ChunkSize = 64 << 10
	l.bob.Close()
	clk := l.clock("bob")
	l.bob = l.open("bob", nil, false)
	l.bob.opts.RetryAfter = 10 * time.Millisecond
	id, err := l.alice.Push(l.ctx, PushSpec{Peer: "bob", Local: local, Remote: filepath.Join(writeDir, "f")})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		l.alice.Flush(l.ctx)
		l.bob.Pump(l.ctx, false, 0)
		l.bob.Flush(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		if streamOf(t, l.bob, l.alice.Fingerprint(), id) != nil {
			break
		}
	}
	if streamOf(t, l.bob, l.alice.Fingerprint(), id) == nil {
		t.Fatal("bob holds no stream for the push")
	}
	// alice's record of the push's chunks goes (its retention passed).
	l.alice.store.Update(func(tx *keystore.Tx) error { return l.alice.expireStreams(tx, time.Now().Add(8*24*time.Hour)) })
	for range 30 {
		clk.step(l.bob.askAfter() << 6)
		l.bob.Maintain(l.ctx)
		l.bob.Flush(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		l.alice.Flush(l.ctx)
		l.bob.Pump(l.ctx, false, 0)
		var state session.LedgerState
		l.bob.store.View(func(tx *keystore.Tx) error {
			if e, ok, _ := (TxStore{tx}).Ledger(l.alice.Fingerprint(), id); ok {
				state = e.State
			}
			return nil
		})
		if state == session.Done && streamOf(t, l.bob, l.alice.Fingerprint(), id) == nil {
			return
		}
	}
	t.Fatalf("bob still waits for a push whose chunks alice no longer holds (stream %v)", streamOf(t, l.bob, l.alice.Fingerprint(), id) != nil)
}

// TestReviewPushOfSymlinkedLocalFile: `sealpost push PEER ./link REMOTE` where ./link is a
// symlink to a file elsewhere: Push hashes the target (os.Open follows the link), but the
// cutter opened the link through an os.Root of its directory, which refuses it, so no chunk was
// ever cut and the push waited until its TTL with a warning at every Maintain.
func TestReviewPushOfSymlinkedLocalFile(t *testing.T) {
	l, _, writeDir := transferLab(t)
	real := filepath.Join(t.TempDir(), "real")
	want := randomFile(t, real, 150_000)
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	l.serveBob()
	defer l.stopBob()
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	id, err := l.alice.Push(ctx, PushSpec{Peer: "bob", Local: link, Remote: filepath.Join(writeDir, "f")})
	if err != nil {
		t.Fatal(err)
	}
	r, err := l.alice.Wait(ctx, id, nil)
	if err != nil || r.Status != StatusDone || r.ExitCode != 0 {
		t.Fatalf("push of a symlinked file: %v, %s exit %d %s", err, r.Status, r.ExitCode, r.Error)
	}
	if got, _ := os.ReadFile(filepath.Join(writeDir, "f")); string(got) != string(want) {
		t.Fatalf("pushed %d of %d bytes", len(got), len(want))
	}
}

var _ = errors.Is

// stepClock is the real clock moved ahead by what a test adds: time passes for the node's timers
// without the test sleeping.
type stepClock struct{ ahead atomic.Int64 }

func (c *stepClock) now() time.Time       { return time.Now().Add(time.Duration(c.ahead.Load())) }
func (c *stepClock) step(d time.Duration) { c.ahead.Add(int64(d)) }
func (l *lab) clock(name string) *stepClock {
	c := &stepClock{}
	if l.clocks == nil {
		l.clocks = map[string]func() time.Time{}
	}
	l.clocks[name] = c.now
	return c
}

// waitResends waits until no resender of n's runs (resendPending starts them in goroutines).
func waitResends(n *Node) {
	for {
		busy := false
		n.resending.Range(func(any, any) bool { busy = true; return false })
		if !busy {
			return
		}
		runtime.Gosched()
	}
}
