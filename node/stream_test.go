package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// streamScript writes a program for bob that prints size random bytes to stdout (a copy goes to
// the returned file) and a line to stderr.
func streamScript(t *testing.T, l *lab, size int) (prog, copyOf string) {
	t.Helper()
	dir := t.TempDir()
	prog, copyOf = filepath.Join(dir, "print"), filepath.Join(dir, "printed")
	os.WriteFile(prog, []byte("#!/bin/sh\necho ran >> "+countFile+"\nhead -c "+strconv.Itoa(size)+" /dev/urandom | tee "+copyOf+"\necho done >&2\n"), 0o755)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{prog}}); err != nil {
		t.Fatal(err)
	}
	return prog, copyOf
}

// TestStreamedOutput: output larger than an answer holds comes back as a stream of chunks, is
// joined in order on the requester, checked against its SHA-256, and lands in the spool file
// whole; the command ran once, and neither side keeps the output in its state.
func TestStreamedOutput(t *testing.T) {
	l := newLab(t)
	l.bob.opts.ChunkSize = 64 << 10
	prog, printed := streamScript(t, l, 700_000)
	l.serveBob()
	defer l.stopBob()
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{prog}}}, true, nil)
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, r)
	}
	if r.Status != StatusDone || r.ExitCode != 0 || !r.Streamed {
		t.Fatalf("result %s exit %d streamed %v (%d bytes inline): %s; want done, exit 0, streamed", r.Status, r.ExitCode, r.Streamed, len(r.Stdout), r.Error)
	}
	want, _ := os.ReadFile(printed)
	got, err := os.ReadFile(r.StdoutPath)
	if err != nil || !bytes.Equal(got, want) || r.StdoutSize != int64(len(want)) {
		t.Fatalf("streamed stdout: %d bytes (size %d), %v; want the %d bytes printed", len(got), r.StdoutSize, err, len(want))
	}
	if errOut, _ := os.ReadFile(r.StderrPath); string(errOut) != "done\n" {
		t.Fatalf("streamed stderr %q", errOut)
	}
	if n := runs(t); n != 1 {
		t.Fatalf("ran %d times", n)
	}
	l.alice.store.View(func(tx *keystore.Tx) error {
		kr, _, _ := tx.Result(r.CommandID)
		if len(kr.Stdout) != 0 {
			t.Errorf("alice's result record holds %d bytes of output", len(kr.Stdout))
		}
		return tx.ForEachStreamIn(func(s *keystore.StreamIn) error {
			t.Errorf("alice still holds the stream of %x", s.Command)
			return nil
		})
	})
}

// lossyChunks drops the first mailing of every third chunk and mails every other chunk twice.
type lossyChunks struct {
	mailbox.Transport
	mu      sync.Mutex
	seen    int
	dropped map[string]bool
}

func (l *lossyChunks) Send(ctx context.Context, to string, pkg []byte) error {
	if !isChunk(pkg) {
		return l.Transport.Send(ctx, to, pkg)
	}
	l.mu.Lock()
	l.seen++
	drop := l.seen%3 == 0
	l.mu.Unlock()
	if drop {
		return nil // lost on the way
	}
	if err := l.Transport.Send(ctx, to, pkg); err != nil {
		return err
	}
	return l.Transport.Send(ctx, to, pkg)
}

// TestStreamLossyChunks: chunks lost on the way are asked for again and come; duplicates are
// dropped; the requester gets every byte once, in order, and the command ran once.
func TestStreamLossyChunks(t *testing.T) {
	l := newLab(t)
	l.bob.Close()
	lossy := &lossyChunks{}
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { lossy.Transport = tr; return lossy }, false)
	l.bob.opts.ChunkSize = 16 << 10
	prog, printed := streamScript(t, l, 400_000)
	l.alice.opts.RetryAfter = 10 * time.Millisecond // asks for missing chunks at every round
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{prog}}})
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		l.alice.Maintain(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		l.bob.Pump(l.ctx, false, 0)
		l.bob.exec.wait(l.ctx)
		l.bob.Maintain(l.ctx) // sends the chunks alice asked for again
		waitResends(l.bob)
		l.bob.Flush(l.ctx)
		r, _, _ := l.alice.Result(id)
		if !Final(r.Status) {
			continue
		}
		want, _ := os.ReadFile(printed)
		got, _ := os.ReadFile(r.StdoutPath)
		if r.Status != StatusDone || !r.Streamed || !bytes.Equal(got, want) {
			t.Fatalf("result %s streamed %v, %d bytes of %d: %s", r.Status, r.Streamed, len(got), len(want), r.Error)
		}
		if n := runs(t); n != 1 {
			t.Fatalf("ran %d times", n)
		}
		lossy.mu.Lock()
		defer lossy.mu.Unlock()
		if lossy.seen < 400_000/(16<<10)+3 {
			t.Fatalf("bob mailed %d chunks: none was sent again", lossy.seen)
		}
		return
	}
	r, _, _ := l.alice.Result(id)
	t.Fatalf("never complete: %s %s", r.Status, r.Error)
}

// transferLab is a lab whose bob lets alice pull from and push into one directory each.
func transferLab(t *testing.T) (l *lab, readDir, writeDir string) {
	l = newLab(t)
	l.bob.opts.ChunkSize = 64 << 10
	l.alice.opts.ChunkSize = 64 << 10
	readDir, writeDir = filepath.Join(t.TempDir(), "out"), filepath.Join(t.TempDir(), "in")
	os.Mkdir(readDir, 0o755)
	os.Mkdir(writeDir, 0o755)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", AllowRead: []string{readDir}, AllowWrite: []string{writeDir}}); err != nil {
		t.Fatal(err)
	}
	return l, readDir, writeDir
}

func randomFile(t *testing.T, path string, size int) []byte {
	b := make([]byte, size)
	rand.Read(b)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPull: a file in a directory the peer may read comes back whole as a stream; a path
// outside it, or a symlink inside it that leads out, is denied and nothing is sent.
func TestPull(t *testing.T) {
	l, readDir, _ := transferLab(t)
	want := randomFile(t, filepath.Join(readDir, "data"), 300_000)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret"), 0o600)
	os.Symlink(outside, filepath.Join(readDir, "link"))
	l.serveBob()
	defer l.stopBob()
	pull := func(path string) Result {
		ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
		defer cancel()
		r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: commands.CmdPull, Path: path}}, true, nil)
		if err != nil {
			t.Fatalf("pull %s: %v", path, err)
		}
		return r
	}
	r := pull(filepath.Join(readDir, "data"))
	got, _ := os.ReadFile(r.StdoutPath)
	if r.Status != StatusDone || !r.Streamed || !bytes.Equal(got, want) {
		t.Fatalf("pull: %s streamed %v, %d of %d bytes: %s", r.Status, r.Streamed, len(got), len(want), r.Error)
	}
	if r := pull(outside); r.Status != session.CodeDenied.String() {
		t.Fatalf("pull from outside the directory: %s %s; want denied", r.Status, r.Error)
	}
	if r := pull(filepath.Join(readDir, "link")); r.Status == StatusDone && r.Outcome != commands.OutcomeDenied || len(r.Stdout) > 0 {
		t.Fatalf("pull through a symlink out of the directory: %s %s, %q", r.Status, r.Outcome, r.Stdout)
	}
}

// TestPush: a file pushed into a directory the peer may write lands whole under its name, with
// no temporary file left; a path outside is denied, and one through a symlink out of the
// directory writes nothing there.
func TestPush(t *testing.T) {
	l, _, writeDir := transferLab(t)
	local := filepath.Join(t.TempDir(), "local")
	want := randomFile(t, local, 500_000)
	l.serveBob()
	defer l.stopBob()
	push := func(remote string) Result {
		ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
		defer cancel()
		id, err := l.alice.Push(ctx, PushSpec{Peer: "bob", Local: local, Remote: remote})
		if err != nil {
			t.Fatalf("push %s: %v", remote, err)
		}
		r, err := l.alice.Wait(ctx, id, nil)
		if err != nil {
			t.Fatalf("push %s: %v", remote, err)
		}
		return r
	}
	target := filepath.Join(writeDir, "copy")
	if r := push(target); r.Status != StatusDone || r.ExitCode != 0 {
		t.Fatalf("push: %s exit %d: %s", r.Status, r.ExitCode, r.Error)
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
		t.Fatalf("pushed file: %d of %d bytes", len(got), len(want))
	}
	if ents, _ := os.ReadDir(writeDir); len(ents) != 1 {
		t.Fatalf("the directory holds %d entries, want only the file", len(ents))
	}
	if r := push(filepath.Join(t.TempDir(), "elsewhere")); r.Status != session.CodeDenied.String() {
		t.Fatalf("push outside the directory: %s %s; want denied", r.Status, r.Error)
	}
	escape := t.TempDir()
	os.Symlink(escape, filepath.Join(writeDir, "esc"))
	if r := push(filepath.Join(writeDir, "esc", "file")); r.Status == StatusDone && r.ExitCode == 0 {
		t.Fatalf("push through a symlink out of the directory succeeded")
	}
	if ents, _ := os.ReadDir(escape); len(ents) != 0 {
		t.Fatalf("the push wrote %d entries outside the directory", len(ents))
	}
}

// chunkCounter counts the chunks mailed, by index, and can hold chunk mail until released.
type chunkCounter struct {
	mailbox.Transport
	mu      sync.Mutex
	sent    map[uint32]int
	holdAt  int           // after this many chunks, hold the next until release closes (0: never)
	release chan struct{} // closed to fail held chunks (a server gone): they stay in the outbox
	held    chan struct{} // closed when the first chunk is held
	once    sync.Once
}

func (c *chunkCounter) Send(ctx context.Context, to string, pkg []byte) error {
	if !isChunk(pkg) {
		return c.Transport.Send(ctx, to, pkg)
	}
	c.mu.Lock()
	total := 0
	for _, n := range c.sent {
		total += n
	}
	hold := c.holdAt > 0 && total >= c.holdAt
	c.mu.Unlock()
	if hold {
		c.once.Do(func() { close(c.held) })
		select {
		case <-c.release:
			return &mailbox.SendError{Temporary: true, Err: errors.New("the test's server is away")}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := c.Transport.Send(ctx, to, pkg); err != nil {
		return err
	}
	c.mu.Lock()
	c.sent[0]++
	c.mu.Unlock()
	return nil
}

// TestPullResumesAfterStop: an agent stopped in the middle of a pull goes on from its last chunk
// when it starts again, instead of answering outcome-unknown or starting over; the requester
// gets the file whole.
func TestPullResumesAfterStop(t *testing.T) {
	l, readDir, _ := transferLab(t)
	l.bob.opts.ChunkSize = 16 << 10
	want := randomFile(t, filepath.Join(readDir, "data"), 256<<10) // 16 chunks
	l.bob.Close()
	first := &chunkCounter{sent: map[uint32]int{}, holdAt: 5, release: make(chan struct{}), held: make(chan struct{})}
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { first.Transport = tr; return first }, false)
	l.bob.opts.ChunkSize = 16 << 10
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: commands.CmdPull, Path: filepath.Join(readDir, "data")}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	var (
		r    Result
		werr error
		done = make(chan struct{})
	)
	go func() { defer close(done); r, werr = l.alice.Wait(ctx, id, nil) }() // alice reads her mail throughout
	l.serveBob()
	select {
	case <-first.held:
	case <-ctx.Done():
		t.Fatal("bob never mailed 5 chunks")
	}
	close(first.release) // the held chunks fail for now; nothing more is mailed
	l.stopBob()          // in the middle of the pull
	var cut int
	l.bob.store.View(func(tx *keystore.Tx) error {
		rec, ok, _ := tx.StreamOut(l.alice.Fingerprint(), id)
		if ok {
			cut = len(rec.Chunks)
		}
		return nil
	})
	if cut == 0 || cut >= 16 {
		t.Fatalf("bob stopped with %d of 16 chunks cut; the test wants a pull stopped in the middle", cut)
	}
	l.bob.Close()
	second := &chunkCounter{sent: map[uint32]int{}}
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { second.Transport = tr; return second }, false)
	l.bob.opts.ChunkSize = 16 << 10
	l.serveBob()
	defer l.stopBob()
	<-done
	if werr != nil {
		t.Fatal(werr)
	}
	got, _ := os.ReadFile(r.StdoutPath)
	if r.Status != StatusDone || !bytes.Equal(got, want) {
		t.Fatalf("pull after the restart: %s, %d of %d bytes: %s", r.Status, len(got), len(want), r.Error)
	}
	sentAgain := 0
	for _, n := range second.sent {
		sentAgain += n
	}
	if sentAgain > 16-cut+chunksInFlight {
		t.Fatalf("after the restart bob mailed %d chunks, having cut %d of 16 before: it started over", sentAgain, cut)
	}
}

// TestSpoolFollowsResults: a received output's spool files go once its result is pruned, and
// not before.
func TestSpoolFollowsResults(t *testing.T) {
	l := newLab(t)
	prog, _ := streamScript(t, l, 200_000)
	l.serveBob()
	defer l.stopBob()
	r := l.run(prog)
	if !r.Streamed {
		t.Fatalf("the output did not stream: %+v", r.Status)
	}
	l.alice.sweepSpoolIn()
	if _, err := os.Stat(r.StdoutPath); err != nil {
		t.Fatalf("the spool of a kept result went: %v", err)
	}
	l.alice.store.Update(func(tx *keystore.Tx) error { return tx.DeleteResult(r.CommandID) })
	l.alice.lastSpoolSweep.Store(time.Time{})
	l.alice.sweepSpoolIn()
	if _, err := os.Stat(r.StdoutPath); !os.IsNotExist(err) {
		t.Fatalf("the spool of a pruned result stays: %v", err)
	}
}

func pullRequest(path string) commands.Request {
	return commands.Request{Name: commands.CmdPull, Path: path}
}
