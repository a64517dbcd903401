package node

import (
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"
	"sync"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/compress"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// outStream spools one running command's output (stdout and stderr, each in its own file) and
// cuts it into chunks as it grows, each sealed and queued as soon as a chunk's worth is there
// and fewer than chunksInFlight of this node's chunks wait to be mailed. The program is never
// held up: its output goes to disk at once, and only the cutting waits for the mail.
type outStream struct {
	n      *Node
	peer   keystore.Peer
	cmd    session.CommandID
	secret session.Secret
	gated  bool // its chunks go through the chunks-in-flight bound (Node.gated), decided once
	size   int  // plain bytes per chunk; 0 until the cutter first asks (chunkLen)
	fit    int  // plain bytes whose chunk fits in a mail (size unless Options.ChunkSize is less)

	mu     sync.Mutex
	parts  [2]outPart
	cut    []keystore.StreamChunk // chunks cut so far, by index
	err    error                  // the spool or the state failed: the output is lost from there
	wake   chan struct{}          // cap 1: a chunk's worth is waiting
	stop   chan struct{}          // closed when the program ended
	cutter sync.WaitGroup
}

type outPart struct {
	f       *os.File
	written int64 // bytes in the spool file
	cutTo   int64 // bytes already cut into chunks
	max     int64 // bytes kept at most; more is dropped and reported truncated
	dropped bool
	hash    hash.Hash
}

// streamOutput prepares x's output to be streamed when its request carries a stream secret:
// the policy's writers then go to the spool. nil when it does not (a controller of an older
// build): the output goes inline, capped, as before.
func (n *Node) streamOutput(ctx context.Context, x *execution) (*outStream, error) {
	if len(x.raw.Stream) != commands.StreamSecretSize || x.req.Name != commands.CmdExec {
		return nil, nil
	}
	dir, err := n.spoolDir("out")
	if err != nil {
		return nil, err
	}
	s := &outStream{n: n, peer: x.peer, cmd: x.ticket.Command, gated: n.gated(x.peer.Address),
		wake: make(chan struct{}, 1), stop: make(chan struct{})}
	copy(s.secret[:], x.raw.Stream)
	max := n.maxStreamOutput(x.peer.Name) // the peer's cap (peer_output.go)
	for i := range s.parts {
		f, err := os.OpenFile(filepath.Join(dir, spoolName(x.ticket.Peer, x.ticket.Command, uint8(i+1))), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			s.closeFiles()
			return nil, err
		}
		s.parts[i] = outPart{f: f, max: max, hash: sha256.New()}
	}
	x.policy.Stdout, x.policy.Stderr = partWriter{s, 0}, partWriter{s, 1}
	s.cutter.Add(1)
	go s.cutLoop(ctx)
	return s, nil
}

type partWriter struct {
	s    *outStream
	part int
}

// Write appends to the part's spool file; past the cap the rest is dropped (and reported).
func (w partWriter) Write(p []byte) (int, error) {
	s := w.s
	s.mu.Lock()
	pt := &s.parts[w.part]
	if s.err != nil || pt.dropped {
		s.mu.Unlock()
		return len(p), nil
	}
	take := p
	if room := pt.max - pt.written; int64(len(take)) > room {
		take, pt.dropped = take[:room], true
	}
	f, at := pt.f, pt.written
	s.mu.Unlock()
	// One writer per part (the program's pipe's drain): nobody else writes at this offset.
	if _, err := f.WriteAt(take, at); err != nil {
		s.fail(fmt.Errorf("spool the output: %w", err))
		return len(p), nil
	}
	s.mu.Lock()
	pt.hash.Write(take)
	pt.written += int64(len(take))
	ready := pt.written-pt.cutTo >= int64(s.size)
	s.mu.Unlock()
	if ready {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return len(p), nil
}

func (s *outStream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// cutLoop cuts whole chunks while the program runs.
func (s *outStream) cutLoop(ctx context.Context) {
	defer s.cutter.Done()
	for {
		select {
		case <-s.wake:
			if err := s.cutReady(ctx, false); err != nil {
				s.fail(err)
				return
			}
		case <-s.stop:
			return
		}
	}
}

// chunkLen is the stream's chunk size, asked of the node the first time (which may connect to
// the mail server to learn its size limit: on the cutter, never holding up the program). Only
// the cutter and, after it stopped, finish call it.
func (s *outStream) chunkLen(ctx context.Context) (size, fit int) {
	s.mu.Lock()
	size, fit = s.size, s.fit
	s.mu.Unlock()
	if size == 0 {
		size, fit = s.n.chunkSizeFor(ctx, s.peer.Address)
		s.mu.Lock()
		s.size, s.fit = size, fit
		s.mu.Unlock()
	}
	return size, fit
}

// cutReady cuts every whole chunk waiting (and, with all, the rest too).
func (s *outStream) cutReady(ctx context.Context, all bool) error {
	s.chunkLen(ctx)
	for {
		s.mu.Lock()
		part := -1
		var off, n int64
		for i := range s.parts {
			pt := &s.parts[i]
			left := pt.written - pt.cutTo
			if left >= int64(s.size) || (all && left > 0) {
				part, off, n = i, pt.cutTo, min(left, int64(s.size))
				break
			}
		}
		s.mu.Unlock()
		if part < 0 {
			return nil
		}
		if err := s.cutOne(ctx, part, off, n); err != nil {
			return err
		}
	}
}

// cutOne seals the chunk of part at [off, off+n) and queues it, with its record, in one
// transaction. It first waits for room among the chunks in flight, unless the node has no
// mailbox (its packages wait for an export however many there are).
func (s *outStream) cutOne(ctx context.Context, part int, off, n int64) error {
	buf := make([]byte, n)
	if _, err := s.parts[part].f.ReadAt(buf, off); err != nil {
		return fmt.Errorf("read the spooled output: %w", err)
	}
	frame, err := compress.Encode(buf)
	if err != nil {
		return err
	}
	s.mu.Lock()
	idx := uint32(len(s.cut))
	s.mu.Unlock()
	pkg, err := s.n.eng.SealChunk(s.peer.Fingerprint, s.cmd, &s.secret, session.Chunk{Index: idx, Part: uint8(part + 1), Offset: uint64(off), Payload: frame})
	if err != nil {
		return err
	}
	gated := s.gated
	if gated {
		if err := s.n.chunks.acquire(ctx); err != nil {
			return err
		}
	}
	c := keystore.StreamChunk{Index: idx, Part: uint8(part + 1), Offset: off, Len: n}
	err = s.n.store.Update(func(tx *keystore.Tx) error {
		rec, ok, err := tx.StreamOut(s.peer.Fingerprint, s.cmd)
		if err != nil {
			return err
		}
		if !ok {
			rec = &keystore.StreamOut{Peer: s.peer.Fingerprint, Command: s.cmd, Secret: s.secret, Expires: s.n.now().Add(streamRetention)}
		}
		if rec.Broken != "" {
			// The mail server refused a chunk for good: the rest would not help.
			return errors.New(rec.Broken)
		}
		rec.Chunks = append(rec.Chunks, c)
		if err := tx.PutStreamOut(rec); err != nil {
			return err
		}
		return enqueue(tx, s.peer.Address, pkg)
	})
	if err != nil {
		if gated {
			s.n.chunks.release() // nothing was queued
		}
		return err
	}
	s.mu.Lock()
	s.cut = append(s.cut, c)
	s.parts[part].cutTo = off + n
	s.mu.Unlock()
	if err := s.n.flushSoon(context.WithoutCancel(ctx)); err != nil {
		s.n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
	}
	return nil
}

// finish is called once the program ended and its output was all written: small output goes
// inline in res as before; otherwise the rest is cut and res says how many chunks carry it and
// what they add up to.
func (s *outStream) finish(ctx context.Context, res commands.Result) commands.Result {
	close(s.stop)
	s.cutter.Wait()
	defer s.closeFiles()
	s.mu.Lock()
	err := s.err
	out, errp := s.parts[0], s.parts[1]
	s.mu.Unlock()
	// Inline only what fits in a mail a chunk fits in: the answer carries it base64 inside JSON
	// (4/3) in a padded body, so half a chunk's bytes (asked only when there is more than any
	// chunk's half).
	total := out.written + errp.written
	small := total <= minChunkData/2
	if !small {
		_, fit := s.chunkLen(ctx)
		small = total <= int64(min(inlineMax, fit/2))
	}
	if err == nil && len(s.cut) == 0 && small && !out.dropped && !errp.dropped {
		res.Stdout, err = readAll(out)
		if err == nil {
			res.Stderr, err = readAll(errp)
		}
		if err == nil {
			s.removeFiles()
			return res
		}
	}
	if err == nil {
		err = s.cutReady(ctx, true)
	}
	if err != nil {
		// The output cannot be sent whole: say so instead of sending a part as if it were all.
		res.Stdout, res.Stderr = nil, nil
		res.Undelivered = clip("the agent could not spool or send the output: "+err.Error(), commands.MaxErrorBytes)
		return res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res.Stdout, res.Stderr = nil, nil
	res.Chunks = int64(len(s.cut))
	res.StdoutSize, res.StderrSize = s.parts[0].written, s.parts[1].written
	res.StdoutSHA256, res.StderrSHA256 = hex.EncodeToString(s.parts[0].hash.Sum(nil)), hex.EncodeToString(s.parts[1].hash.Sum(nil))
	res.StdoutTruncated, res.StderrTruncated = s.parts[0].dropped, s.parts[1].dropped
	return res
}

func readAll(p outPart) ([]byte, error) {
	b := make([]byte, p.written)
	if _, err := p.f.ReadAt(b, 0); err != nil && p.written > 0 {
		return nil, err
	}
	return b, nil
}

func (s *outStream) closeFiles() {
	for _, p := range s.parts {
		if p.f != nil {
			p.f.Close()
		}
	}
}

func (s *outStream) removeFiles() {
	for _, p := range s.parts {
		if p.f != nil {
			os.Remove(p.f.Name())
		}
	}
}

// hashState is h's state in its marshaled form (sha256 implements BinaryMarshaler).
func hashState(h hash.Hash) []byte {
	b, _ := h.(encoding.BinaryMarshaler).MarshalBinary()
	return b
}

// hashFrom restores a state hashState gave (a new hash for nil).
func hashFrom(state []byte) (hash.Hash, error) {
	h := sha256.New()
	if state == nil {
		return h, nil
	}
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state); err != nil {
		return nil, errors.New("stored digest state does not restore")
	}
	return h, nil
}
