package node

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// joinedPush pushes a file from alice to bob and pumps until bob holds all its chunks, with
// bob's placer held off (its busy mark taken), so that the push stays joined but not placed.
func joinedPush(t *testing.T) (l *lab, id CommandID, target string, want []byte, release func()) {
	t.Helper()
	l, _, writeDir := transferLab(t)
	local := filepath.Join(t.TempDir(), "local")
	want = randomFile(t, local, 200_000)
	target = filepath.Join(writeDir, "f")
	var err error
	id, err = l.alice.Push(l.ctx, PushSpec{Peer: "bob", Local: local, Remote: target})
	if err != nil {
		t.Fatal(err)
	}
	peer := l.alice.Fingerprint()
	key := string(peer[:]) + string(id[:])
	l.bob.placing.Store(key, true)
	// The cutter runs beside this loop (a goroutine waiting for room in the outbox): the loop
	// mails what it queued and hands it to bob until bob holds every chunk.
	for range 100_000 {
		l.alice.Flush(l.ctx)
		l.bob.Pump(l.ctx, false, 0)
		l.bob.Flush(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		l.alice.resumePushes(l.ctx)
		runtime.Gosched()
		if rec := streamOf(t, l.bob, peer, id); rec != nil && rec.Joined {
			return l, id, target, want, func() { l.bob.placing.Delete(key) }
		}
	}
	t.Fatal("bob never joined the push")
	return
}

// waitPlacers waits until no placer of n's runs (placePushes starts them in goroutines).
func waitPlacers(n *Node) {
	for {
		busy := false
		n.placing.Range(func(any, any) bool { busy = true; return false })
		if !busy {
			return
		}
		runtime.Gosched()
	}
}

// pushLedger is bob's ledger state of push id from alice.
func pushLedger(t *testing.T, l *lab, id CommandID) session.LedgerState {
	t.Helper()
	var state session.LedgerState
	l.bob.store.View(func(tx *keystore.Tx) error {
		if e, ok, _ := (TxStore{tx}).Ledger(l.alice.Fingerprint(), id); ok {
			state = e.State
		}
		return nil
	})
	return state
}

// TestReviewRefusalOfJoinedPushDoesNotSkipPlacement: a push whose chunks are all here waits for
// its placer (after the transaction that took its last chunk). A refusal of one of the agent's
// earlier asks arriving in between (the requester broke its stream, say, while the chunk it
// could not seal again came anyway) went through finishPush with a placement that does nothing:
// the hash matched, so the push was answered exit 0, its spool dropped, and the file never
// written.
func TestReviewRefusalOfJoinedPushDoesNotSkipPlacement(t *testing.T) {
	l, id, target, want, release := joinedPush(t)
	var ask session.CommandID
	ask[0] = 0xa5
	if err := l.bob.store.Update(func(tx *keystore.Tx) error {
		if err := tx.PutResult(keystore.Result{CommandID: ask, Peer: "alice", Command: []string{"stream", hex.EncodeToString(id[:])}, Request: commands.CmdStream, Status: StatusSent}); err != nil {
			return err
		}
		_, err := l.bob.streamRefused(tx, "alice", l.alice.Fingerprint(), ask, "the stream cannot be sent again")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	release()
	l.bob.placeWanted.Store(true)
	l.bob.placePushes(l.ctx)
	waitPlacers(l.bob)
	if pushLedger(t, l, id) != session.Done {
		t.Fatal("the push was never answered")
	}
	if got, err := os.ReadFile(target); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the push was answered but its file is not in place: %d of %d bytes (%v)", len(got), len(want), err)
	}
}

// errAbort stands for a crash (or a failed commit) inside the transaction that answers a push.
var errAbort = errors.New("the answer's transaction did not commit")

// TestReviewPushAnswerAbortedAfterPlacement: the file is in place and the transaction that
// answers the push does not commit (a crash, a full disk). The spool file was removed inside
// that transaction, so the placer's next try found no spool and answered the push failed,
// though its file is in place.
func TestReviewPushAnswerAbortedAfterPlacement(t *testing.T) {
	l, id, target, want, release := joinedPush(t)
	aborted := false
	testHookPushAnswer = func() error {
		if !aborted {
			aborted = true
			return errAbort
		}
		return nil
	}
	t.Cleanup(func() { testHookPushAnswer = nil })
	release()
	for range 3 {
		l.bob.placeWanted.Store(true)
		l.bob.placePushes(l.ctx)
		waitPlacers(l.bob)
		if pushLedger(t, l, id) == session.Done {
			break
		}
	}
	if !aborted {
		t.Fatal("the answer's transaction never ran")
	}
	if pushLedger(t, l, id) != session.Done {
		t.Fatal("the push was never answered")
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
		t.Fatalf("pushed file: %d of %d bytes", len(got), len(want))
	}
	for range 20 {
		l.bob.Flush(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		r, _, _ := l.alice.Result(id)
		if Final(r.Status) {
			if r.Status != StatusDone || r.ExitCode != 0 {
				t.Fatalf("the push is in place but was answered %s exit %d: %s", r.Status, r.ExitCode, r.Error)
			}
			return
		}
	}
	t.Fatal("alice never had the push's answer")
}

// gateWaiting reports whether something waits at g for room in the outbox.
func gateWaiting(g *chunkGate) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.change != nil
}

// TestReviewResendSealsAfterGate: a resender sealed its chunk first and only then waited for
// room among the chunks in flight, so every stream with chunks asked for again held a sealed
// chunk (about 5 MB each, stream.go) while it waited: memory grew with the streams a peer asks
// about, not bounded by chunksInFlight. It must wait first: the chunk it seals is read after
// the wait, which the test sees by removing the file meanwhile (the stream then breaks,
// instead of a chunk sealed before the wait going out).
func TestReviewResendSealsAfterGate(t *testing.T) {
	l, readDir, _ := transferLab(t)
	src := filepath.Join(readDir, "data")
	randomFile(t, src, 128<<10)
	l.bob.Close()
	drop := &dropChunks{}
	drop.drop.Store(true)
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { drop.Transport = tr; return drop }, false)
	l.bob.opts.ChunkSize = 64 << 10
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
	peer := l.alice.Fingerprint()
	if err := l.bob.store.Update(func(tx *keystore.Tx) error {
		rec, ok, err := tx.StreamOut(peer, id)
		if err != nil || !ok {
			t.Fatalf("bob holds no stream of the pull (%v)", err)
		}
		rec.Resend = []uint32{0}
		return tx.PutStreamOut(rec)
	}); err != nil {
		t.Fatal(err)
	}
	l.bob.chunks.add(chunksInFlight) // the outbox is full of chunks
	l.bob.resendWanted.Store(true)
	l.bob.resendPending(l.ctx)
	for !gateWaiting(&l.bob.chunks) {
		runtime.Gosched()
	}
	os.Remove(src)
	l.bob.chunks.add(-chunksInFlight)
	waitResends(l.bob)
	var rec *keystore.StreamOut
	l.bob.store.View(func(tx *keystore.Tx) error { rec, _, _ = tx.StreamOut(peer, id); return nil })
	if rec == nil || rec.Broken == "" {
		t.Fatal("the resender sealed its chunk before it waited for room in the outbox")
	}
}

// TestReviewCarriedPushAnsweredByImport: on a node without a mailbox and without an agent,
// Import runs what the files clear and leaves the answers for the next export (carry.go). A
// push's file went into place, and its answer into the outbox, in the transaction that took its
// last chunk; since placement moved to a placer that only the serving loop and Maintain start,
// an import of the last chunk left the push joined, unplaced and unanswered until an agent ran.
func TestReviewCarriedPushAnsweredByImport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctl := openNoMail(t, "ctl@site-a.invalid")
	vault := openNoMail(t, "vault@site-b.invalid")
	writeDir := t.TempDir()
	dir := t.TempDir()
	added, err := ctl.AddPeer(ctx, PeerSpec{Name: "vault", Address: "vault@site-b.invalid"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.AddPeer(ctx, PeerSpec{Name: "ctl", Address: "ctl@site-a.invalid", Code: added.GeneratedCode, AllowWrite: []string{writeDir}}); err != nil {
		t.Fatal(err)
	}
	carry(t, ctx, ctl, "vault", dir, vault)
	carry(t, ctx, vault, "ctl", dir, ctl)
	ctl.opts.ChunkSize, vault.opts.ChunkSize = 64<<10, 64<<10
	local := filepath.Join(t.TempDir(), "local")
	want := randomFile(t, local, 200_000)
	target := filepath.Join(writeDir, "f")
	id, err := ctl.Push(ctx, PushSpec{Peer: "vault", Local: local, Remote: target})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 { // handshake, the push, its chunks (cut once the push went), the answer
		carry(t, ctx, ctl, "vault", dir, vault)
		carry(t, ctx, vault, "ctl", dir, ctl)
		ctl.resumePushes(ctx)
		for { // the cutter runs beside: wait until it is done
			busy := false
			ctl.pushing.Range(func(any, any) bool { busy = true; return false })
			if !busy {
				break
			}
			runtime.Gosched()
		}
		if r, _, _ := ctl.Result(id); Final(r.Status) {
			if r.Status != StatusDone || r.ExitCode != 0 {
				t.Fatalf("carried push: %s exit %d: %s", r.Status, r.ExitCode, r.Error)
			}
			if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
				t.Fatalf("carried push answered done, file %d of %d bytes", len(got), len(want))
			}
			return
		}
	}
	r, _, _ := ctl.Result(id)
	rec := streamOf(t, vault, ctl.Fingerprint(), id)
	t.Fatalf("a carried push is never answered without an agent: %s (vault holds its stream %v, joined %v)", r.Status, rec != nil, rec != nil && rec.Joined)
}

// TestReviewServeOnceWaitsForPlacement: `sealpost agent --once` (a cron's agent) serves one
// round and exits. The round's mail may join a push, whose placer then runs beside the round;
// the round returned without it, and the process exit cut the copy (of any file that takes
// longer to copy than the rest of the round): each round began the copy again and none
// finished, so the push was never answered. The round must end with its placements done.
// (Before the fix this fails unless the placer happens to finish before Serve returns.)
func TestReviewServeOnceWaitsForPlacement(t *testing.T) {
	l, _, writeDir := transferLab(t)
	local := filepath.Join(t.TempDir(), "local")
	want := randomFile(t, local, 1<<20)
	target := filepath.Join(writeDir, "f")
	id, err := l.alice.Push(l.ctx, PushSpec{Peer: "bob", Local: local, Remote: target})
	if err != nil {
		t.Fatal(err)
	}
	peer := l.alice.Fingerprint()
	key := string(peer[:]) + string(id[:])
	l.bob.placing.Store(key, true) // held off until the last round
	for range 100_000 {
		l.alice.Flush(l.ctx)
		l.bob.Pump(l.ctx, false, 0)
		l.bob.Flush(l.ctx)
		l.alice.Pump(l.ctx, false, 0)
		l.alice.resumePushes(l.ctx)
		runtime.Gosched()
		if rec := streamOf(t, l.bob, peer, id); rec != nil && rec.Joined {
			break
		}
	}
	if rec := streamOf(t, l.bob, peer, id); rec == nil || !rec.Joined {
		t.Fatal("bob never joined the push")
	}
	l.bob.placing.Delete(key)
	if err := l.bob.Serve(l.ctx, true); err != nil {
		t.Fatal(err)
	}
	// What the process would still have when it exits now.
	if pushLedger(t, l, id) != session.Done {
		t.Fatal("one round of the agent ended before the push it joined was placed and answered")
	}
	if got, _ := os.ReadFile(target); !bytes.Equal(got, want) {
		t.Fatalf("pushed file: %d of %d bytes", len(got), len(want))
	}
}
