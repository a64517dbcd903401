package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/compress"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// The stream request (docs/PROTOCOL.md section 20): the requester asks the agent for the chunks
// of a stream it lacks once the answer is in, and tells it when the stream arrived whole, so
// that its spool may go. It is an ordinary command, retried like any; the agent answers it in
// the transaction that accepts it, like a ping.

// askAfter is how long a requester waits, after the answer or its last ask, before it asks for
// the chunks still missing: a tenth of the retry interval (a minute by default), so that chunks
// the mail server merely delivers late are not asked for.
func (n *Node) askAfter() time.Duration { return n.opts.RetryAfter / 10 }

// askMissing sends a stream request for every stream whose answer is in and whose chunks are not
// all here after askAfter. Maintain calls it.
func (n *Node) askMissing(tx *keystore.Tx, st TxStore, now time.Time) error {
	var due []*keystore.StreamIn
	if err := tx.ForEachStreamIn(func(s *keystore.StreamIn) error {
		// Each ask waits twice as long as the one before (up to 64 times askAfter): an agent
		// that is away is not sent an ask per round.
		// A push to this node has no answer to wait for: it asks once the chunks stop coming.
		quiet := s.Path != "" && now.Sub(s.Heard) >= n.askAfter()
		if (s.Answer != nil || quiet) && now.Sub(s.Asked) >= n.askAfter()<<min(s.Asks, 6) {
			due = append(due, s)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, s := range due {
		missing := s.Missing(s.Chunks, commands.MaxResend)
		if len(missing) == 0 {
			continue
		}
		resend := make([]int64, len(missing))
		for i, m := range missing {
			resend[i] = int64(m)
		}
		if _, err := n.sendStreamRequest(tx, st, s.Peer, commands.Request{Name: commands.CmdStream, Of: hex.EncodeToString(s.Command[:]), Resend: resend}, now); err != nil {
			return err
		}
		s.Asked, s.Asks = now, s.Asks+1
		if err := tx.PutStreamIn(s); err != nil {
			return err
		}
	}
	return nil
}

// sendStreamRequest submits a stream request to peer. It leaves a result record like any
// command (request "stream"), which the results list shows with the command it is about.
func (n *Node) sendStreamRequest(tx *keystore.Tx, st TxStore, peer [16]byte, req commands.Request, now time.Time) (session.CommandID, error) {
	var id session.CommandID
	p, ok, err := tx.PeerByFingerprint(peer)
	if err != nil || !ok {
		return id, err
	}
	if _, err := rand.Read(id[:]); err != nil {
		return id, err
	}
	req.Sent = now
	frame, err := encodeRequest(req)
	if err != nil {
		return id, err
	}
	_, err = n.submitIn(tx, st, id, RunSpec{ID: id, Peer: p.Name, Request: req, TTL: 24 * time.Hour}, frame, now, nil)
	return id, err
}

// streamDone tells the agent that a stream arrived whole.
func (n *Node) streamDone(tx *keystore.Tx, peer, cmd [16]byte) error {
	_, err := n.sendStreamRequest(tx, TxStore{tx}, peer, commands.Request{Name: commands.CmdStream, Of: hex.EncodeToString(cmd[:]), Done: true}, n.now())
	return err
}

// streamRefused settles a stream whose agent answered the requester's stream request with a
// refusal: it no longer holds the stream (its retention passed, or its mail server refused a
// chunk for good). The command ends failed, with what the answer said.
func (n *Node) streamRefused(tx *keystore.Tx, peerName string, peer [16]byte, ask session.CommandID, detail string) ([]session.CommandID, error) {
	r, ok, err := tx.Result(ask)
	if err != nil || !ok || len(r.Command) < 2 {
		return nil, err
	}
	raw, err := hex.DecodeString(r.Command[1])
	if err != nil || len(raw) != 16 {
		return nil, nil
	}
	cmd := session.CommandID(raw)
	rec, ok, err := tx.StreamIn(peer, cmd)
	if err != nil || !ok {
		return nil, err
	}
	if rec.Path != "" {
		if rec.Joined {
			// Every chunk came after all (the refusal answers an earlier ask): the placer
			// puts the file into place and answers the push (placePushes).
			return nil, nil
		}
		// A push to this node whose requester no longer holds its chunks: it cannot complete.
		// It is answered (failed, nothing written) instead of staying Executing and asked
		// about for good.
		pkg, err := n.finishPush(tx, TxStore{tx}, rec, func() error { return nil }) // incomplete: nothing is placed
		n.removeSpoolIn(rec.Command)                                                // the record says what the answer needs
		if err != nil || pkg == nil {
			return nil, err
		}
		p, ok, err := tx.PeerByFingerprint(peer)
		if err != nil || !ok {
			return nil, err
		}
		return nil, enqueue(tx, p.Address, pkg)
	}
	if rec.Answer == nil {
		return nil, nil
	}
	res, derr := decodeResult(rec.Answer)
	if derr == nil {
		res.Undelivered = clip(detail, commands.MaxErrorBytes)
	}
	if err := n.dropStreamIn(tx, rec, true); err != nil {
		return nil, err
	}
	return []session.CommandID{cmd}, n.deliver(tx, peerName, cmd, res, derr)
}

// answerStream is the agent's answer to a stream request from the peer of t: the chunks asked
// for are sealed again from the spool and queued; done lets the spool go. A stream it does not
// hold (confirmed, past its retention, or broken) is refused, with why.
func (n *Node) answerStream(tx *keystore.Tx, st TxStore, t *session.Ticket, req commands.Request) ([]Event, []byte, error) {
	peer, ok, err := tx.PeerByFingerprint(t.Peer)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		_, err := n.eng.Fail(st, t, session.CodeDenied, "the peer was removed")
		return nil, nil, err
	}
	raw, _ := hex.DecodeString(req.Of) // checked by the decoder
	cmd := session.CommandID(raw)
	rec, ok, err := tx.StreamOut(t.Peer, cmd)
	if err != nil {
		return nil, nil, err
	}
	ev := Event{Kind: EventExecuted, Peer: peer.Name, Command: t.Command, Detail: "stream " + req.Of[:8]}
	if !ok || rec.Broken != "" {
		why := "this agent holds no stream of that command: it was confirmed, or its retention passed"
		if ok {
			why = rec.Broken
		}
		pkg, err := n.eng.Fail(st, t, session.CodeDenied, why)
		return []Event{ev}, pkg, err
	}
	if req.Done {
		n.removeStreamOut(t.Peer, cmd)
		if err := tx.DeleteStreamOut(t.Peer, cmd); err != nil {
			return nil, nil, err
		}
	}
	if len(req.Resend) > 0 {
		// The chunks asked for are recorded here and sealed again outside this transaction,
		// through the chunks-in-flight bound (resendChunks): sealing up to 64 MiB in the
		// transaction that answers would hold it all in memory at once.
		for _, i := range req.Resend {
			if i < int64(len(rec.Chunks)) && !slices.Contains(rec.Resend, uint32(i)) {
				rec.Resend = append(rec.Resend, uint32(i))
			}
		}
		if err := tx.PutStreamOut(rec); err != nil {
			return nil, nil, err
		}
		n.resendWanted.Store(true)
	}
	frame, err := encodeResult(commands.Result{Outcome: commands.OutcomeExited, Started: n.now().UTC()})
	if err != nil {
		return nil, nil, err
	}
	if err := n.eng.Start(st, t); err != nil {
		return nil, nil, err
	}
	pkg, err := n.eng.Complete(st, t, frame)
	return []Event{ev}, pkg, err
}

// sealFromSpool seals chunk c of a sent stream again, from its spool file.
func (n *Node) sealFromSpool(rec *keystore.StreamOut, c keystore.StreamChunk) (_ []byte, err error) {
	var f *os.File
	if rec.Source != "" {
		f, err = openWithin(rec.Source, rec.SourceRel) // a file pulled or pushed: the file itself
	} else {
		var dir string
		if dir, err = n.spoolDir("out"); err == nil {
			f, err = os.Open(filepath.Join(dir, spoolName(rec.Peer, rec.Command, c.Part)))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read the spooled output: %w", err)
	}
	defer f.Close()
	buf := make([]byte, c.Len)
	if _, err := f.ReadAt(buf, c.Offset); err != nil {
		return nil, fmt.Errorf("read the spooled output: %w", err)
	}
	frame, err := compress.Encode(buf)
	if err != nil {
		return nil, err
	}
	secret := session.Secret(rec.Secret)
	return n.eng.SealChunk(rec.Peer, rec.Command, &secret, session.Chunk{Index: c.Index, Part: c.Part, Offset: uint64(c.Offset), Payload: frame})
}

// removeStreamOut deletes a sent stream's spool files.
func (n *Node) removeStreamOut(peer, cmd [16]byte) {
	for _, p := range []uint8{session.PartStdout, session.PartStderr} {
		os.Remove(filepath.Join(n.opts.Dir, "spool", "out", spoolName(peer, cmd, p)))
	}
}

// expireStreams forgets the sent streams whose retention passed, with their spool. Maintain
// calls it.
func (n *Node) expireStreams(tx *keystore.Tx, now time.Time) error {
	var gone [][2][16]byte
	if err := tx.ForEachStreamOut(func(s *keystore.StreamOut) error {
		if now.After(s.Expires) {
			gone = append(gone, [2][16]byte{s.Peer, s.Command})
		}
		return nil
	}); err != nil {
		return err
	}
	for _, g := range gone {
		n.removeStreamOut(g[0], g[1])
		if err := tx.DeleteStreamOut(g[0], g[1]); err != nil {
			return err
		}
	}
	return nil
}

// resendPending starts a resender for every sent stream with chunks asked for again (not one
// already running). Maintain calls it, and the serving loop after a batch that recorded an ask.
func (n *Node) resendPending(ctx context.Context) {
	if !n.resendWanted.Swap(false) {
		return
	}
	type job struct {
		to   keystore.Peer
		peer [16]byte
		cmd  [16]byte
	}
	var jobs []job
	_ = n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachStreamOut(func(s *keystore.StreamOut) error {
			if len(s.Resend) == 0 || s.Broken != "" {
				return nil
			}
			if p, ok, _ := tx.PeerByFingerprint(s.Peer); ok {
				jobs = append(jobs, job{p, s.Peer, s.Command})
			}
			return nil
		})
	})
	for _, j := range jobs {
		startOnce(&n.resending, &n.resenders, string(j.peer[:])+string(j.cmd[:]),
			func() error { return n.resendChunks(context.WithoutCancel(ctx), j.to, j.peer, j.cmd) },
			func(err error) {
				n.resendWanted.Store(true) // tried again at the next round
				n.log.Warn("chunks asked for again not sent yet; tried again", "op", "stream", "cmd_id", session.CommandID(j.cmd).String(), "err", err)
			})
	}
}

// resendChunks seals and queues, one at a time and within the chunks-in-flight bound, the chunks
// of one sent stream that its requester asked for again; each leaves the record's list in the
// transaction that queues it. A chunk the spool or file no longer holds breaks the stream: the
// requester's next ask is answered denied, with why.
func (n *Node) resendChunks(ctx context.Context, to keystore.Peer, peer, cmd [16]byte) error {
	gated := n.gated(to.Address)
	for {
		var rec *keystore.StreamOut
		if err := n.store.View(func(tx *keystore.Tx) error {
			var err error
			rec, _, err = tx.StreamOut(peer, cmd)
			return err
		}); err != nil || rec == nil || len(rec.Resend) == 0 || rec.Broken != "" {
			return err
		}
		i := rec.Resend[0]
		// Wait first, then seal: a sealed chunk held while waiting would cost its memory once
		// per stream asked about, beyond the chunks-in-flight bound.
		if gated {
			if err := n.chunks.acquire(ctx); err != nil {
				return err
			}
		}
		pkg, serr := n.sealFromSpool(rec, rec.Chunks[i])
		err := n.store.Update(func(tx *keystore.Tx) error {
			cur, ok, err := tx.StreamOut(peer, cmd)
			if err != nil || !ok {
				return err
			}
			cur.Resend = slices.DeleteFunc(cur.Resend, func(x uint32) bool { return x == i })
			if serr != nil {
				// The spool, or the file a pull or push reads, no longer holds the chunk (the
				// file shrank or went): the stream cannot be finished.
				cur.Broken = clip("the stream cannot be sent again: "+serr.Error(), commands.MaxErrorBytes)
				cur.Resend = nil
				return tx.PutStreamOut(cur)
			}
			if err := tx.PutStreamOut(cur); err != nil {
				return err
			}
			return enqueue(tx, to.Address, pkg)
		})
		if gated && (err != nil || serr != nil) {
			n.chunks.release() // nothing was queued
		}
		if err != nil || serr != nil {
			return err
		}
		if err := n.flushSoon(context.WithoutCancel(ctx)); err != nil {
			n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
		}
	}
}
