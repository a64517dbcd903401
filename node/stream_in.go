package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/compress"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// ErrStreamDigest: a streamed output arrived whole but does not match the SHA-256 its answer
// names (the agent's spool was damaged, or a file it sent changed while it was read).
var ErrStreamDigest = errors.New("the streamed output does not match its SHA-256")

// withStream gives an exec request a fresh stream secret, so that the agent may stream output of
// any size back (docs/PROTOCOL.md section 20).
func withStream(req *commands.Request) error {
	if req.Name != commands.CmdExec && req.Name != commands.CmdPull && req.Name != commands.CmdPush || req.Stream != nil {
		return nil
	}
	req.Stream = make([]byte, commands.StreamSecretSize)
	_, err := rand.Read(req.Stream)
	return err
}

// openStreamIn records the stream of a command about to be sent, so that its chunks open here.
func (n *Node) openStreamIn(tx *keystore.Tx, peer session.Fingerprint, cmd session.CommandID, req commands.Request) error {
	if len(req.Stream) != commands.StreamSecretSize {
		return nil
	}
	rec := &keystore.StreamIn{Peer: peer, Command: cmd, Chunks: -1, Started: n.now()}
	copy(rec.Secret[:], req.Stream)
	return tx.PutStreamIn(rec)
}

// StreamPath is where part (session.PartStdout, PartStderr) of a streamed result is spooled.
// Command ids are unique on the requester, so they alone name the files.
func (n *Node) StreamPath(cmd session.CommandID, part uint8) string {
	return filepath.Join(n.opts.Dir, "spool", "in", hex.EncodeToString(cmd[:])+"."+string('0'+part))
}

// takeChunk keeps one received chunk: its bytes go to the part's spool file at its offset
// (synced before the record says it is here), and the record joins what became contiguous and
// advances the digest over it. A chunk already held is dropped (dup); one that cannot be read is the
// peer's fault and dropped too (the answer's digest will say what is missing). It returns the
// command's final result when this chunk completed a stream whose answer came already.
func (n *Node) takeChunk(tx *keystore.Tx, c *session.ChunkIn) (dup, done bool, res commands.Result, derr error, err error) {
	rec, ok, err := tx.StreamIn(c.Peer, c.Command)
	if err != nil || !ok {
		return false, false, res, nil, err
	}
	if rec.HasChunk(c.Index) {
		return true, false, res, nil, nil // a copy: nothing changes
	}
	if rec.Chunks >= 0 && int64(c.Index) >= rec.Chunks {
		return false, false, res, nil, nil // beyond what the answer named
	}
	plain, derr := compress.Decode(c.Payload, session.MaxChunkData)
	if derr != nil {
		n.log.Warn("dropped a chunk that does not decode", "op", "stream", "cmd_id", c.Command.String(), "chunk", c.Index, "err", derr)
		return false, false, res, nil, nil
	}
	part := int(c.Part) - 1
	if end := int64(c.Offset) + int64(len(plain)); rec.Path != "" && (c.Part != session.PartStdout || end > rec.Size) ||
		rec.Answer != nil && end > answeredSize(rec, part) {
		// Past what the push or the answer names: nothing of it can belong to the output, and
		// spooling it would let the sender grow the spool file to any size.
		n.log.Warn("dropped a chunk past the end of its stream", "op", "stream", "cmd_id", c.Command.String(), "chunk", c.Index)
		return false, false, res, nil, nil
	}
	if err := n.spoolWrite(c.Peer, c.Command, c.Part, int64(c.Offset), plain); err != nil {
		if errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EINVAL) {
			// An offset no file here can reach: the chunk's fault, not the node's, so not an
			// error that holds the mail in the inbox (THREATS row 30).
			n.log.Warn("dropped a chunk whose offset the spool cannot hold", "op", "stream", "cmd_id", c.Command.String(), "chunk", c.Index, "err", err)
			return false, false, res, nil, nil
		}
		return false, false, res, nil, err
	}
	rec.SetChunk(c.Index)
	rec.Segs = append(rec.Segs, keystore.StreamSeg{Index: c.Index, Part: c.Part, Offset: int64(c.Offset), Len: int64(len(plain))})
	if err := n.joinSegs(rec, part, plain, int64(c.Offset)); err != nil {
		return false, false, res, nil, err
	}
	if rec.Path != "" {
		// A push to this node: once whole, the file goes into place and the push is answered.
		rec.Heard = n.now()
		if len(rec.Missing(rec.Chunks, 1)) == 0 {
			// Whole: the file is copied into place after this transaction (placePushes),
			// which then answers the push.
			rec.Joined = true
			n.placeWanted.Store(true)
		}
		return false, false, res, nil, tx.PutStreamIn(rec)
	}
	done, res, derr, err = n.settleStream(tx, rec)
	return false, done, res, derr, err
}

// answeredSize is the size the held answer names for part (0 stdout, 1 stderr); -1 when it
// cannot be read (then no chunk fits, and the stream ends failed as it would anyway).
func answeredSize(rec *keystore.StreamIn, part int) int64 {
	res, err := decodeResult(rec.Answer)
	if err != nil {
		return -1
	}
	if part == 0 {
		return res.StdoutSize
	}
	return res.StderrSize
}

// joinSegs moves the segments that continue part's contiguous prefix into it, hashing their
// bytes (those of the chunk just received from memory, the others from the spool file).
func (n *Node) joinSegs(rec *keystore.StreamIn, part int, fresh []byte, freshOff int64) error {
	h, err := hashFrom(rec.HashState[part])
	if err != nil {
		return err
	}
	for {
		i := slices.IndexFunc(rec.Segs, func(s keystore.StreamSeg) bool {
			return int(s.Part)-1 == part && s.Offset <= rec.Contig[part] && s.Offset+s.Len > rec.Contig[part]
		})
		if i < 0 {
			break
		}
		s := rec.Segs[i]
		from := rec.Contig[part] - s.Offset
		var b []byte
		if s.Offset == freshOff && s.Len == int64(len(fresh)) {
			b = fresh[from:]
		} else {
			b = make([]byte, s.Len-from)
			f, err := os.Open(n.StreamPath(rec.Command, s.Part))
			if err != nil {
				return err
			}
			_, err = f.ReadAt(b, rec.Contig[part])
			f.Close()
			if err != nil {
				return err
			}
		}
		h.Write(b)
		rec.Contig[part] += int64(len(b))
		rec.Segs = slices.Delete(rec.Segs, i, i+1)
	}
	// Segments wholly inside the prefix (overlaps) carry nothing more.
	rec.Segs = slices.DeleteFunc(rec.Segs, func(s keystore.StreamSeg) bool {
		return int(s.Part)-1 == part && s.Offset+s.Len <= rec.Contig[part]
	})
	rec.HashState[part] = hashState(h)
	return nil
}

func (n *Node) spoolWrite(peer session.Fingerprint, cmd session.CommandID, part uint8, off int64, b []byte) error {
	if _, err := n.spoolDir("in"); err != nil {
		return err
	}
	f, err := os.OpenFile(n.StreamPath(cmd, part), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, off); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// streamAnswer takes a command's answer. One that names chunks is kept in the stream's record
// until they are all here (held); with them all here it is the result, checked against the
// digests. An answer without chunks ends a stream opened for the command (the output came
// inline, or the command was refused).
func (n *Node) streamAnswer(tx *keystore.Tx, peer session.Fingerprint, cmd session.CommandID, payload []byte, res commands.Result, derr error) (commands.Result, bool, error, error) {
	rec, ok, err := tx.StreamIn(peer, cmd)
	if err != nil || !ok {
		return res, false, derr, err
	}
	if derr != nil || res.Chunks == 0 {
		return res, false, derr, n.dropStreamIn(tx, rec, true)
	}
	// Chunks still on their way are asked for only a while after the answer (askAfter).
	rec.Answer, rec.Chunks, rec.Asked = bytes.Clone(payload), res.Chunks, n.now()
	done, full, ferr, err := n.settleStream(tx, rec)
	if err != nil || !done {
		return res, true, nil, err
	}
	return full, false, ferr, nil
}

// settleStream stores rec, or, when its answer is here and every chunk too, checks the digests
// and returns the final result (the record goes; the spool files stay: they are the output).
func (n *Node) settleStream(tx *keystore.Tx, rec *keystore.StreamIn) (bool, commands.Result, error, error) {
	if rec.Answer == nil || len(rec.Missing(rec.Chunks, 1)) > 0 {
		return false, commands.Result{}, nil, tx.PutStreamIn(rec)
	}
	res, derr := decodeResult(rec.Answer)
	if derr == nil {
		for i, want := range []struct {
			size int64
			sum  string
		}{{res.StdoutSize, res.StdoutSHA256}, {res.StderrSize, res.StderrSHA256}} {
			h, err := hashFrom(rec.HashState[i])
			if err != nil {
				return false, res, nil, err
			}
			if rec.Contig[i] != want.size || hex.EncodeToString(h.Sum(nil)) != want.sum {
				derr = fmt.Errorf("%w: part %d has %d bytes, the answer names %d", ErrStreamDigest, i+1, rec.Contig[i], want.size)
				break
			}
		}
	}
	if err := n.dropStreamIn(tx, rec, derr != nil); err != nil {
		return false, res, nil, err
	}
	// The agent may let its spool go now.
	return true, res, derr, n.streamDone(tx, rec.Peer, rec.Command)
}

// dropStreamIn forgets a received stream, and its spool files when they hold nothing to keep.
func (n *Node) dropStreamIn(tx *keystore.Tx, rec *keystore.StreamIn, files bool) error {
	if files {
		n.removeSpoolIn(rec.Command)
	}
	return tx.DeleteStreamIn(rec.Peer, rec.Command)
}

// removeSpoolIn deletes the spool files of a received stream.
func (n *Node) removeSpoolIn(cmd session.CommandID) {
	for _, p := range []uint8{session.PartStdout, session.PartStderr} {
		os.Remove(n.StreamPath(cmd, p))
	}
}

// spoolSweepEvery is how often Maintain looks for received spool files no result names any more.
const spoolSweepEvery = time.Hour

// sweepSpoolIn deletes the files in spool/in whose command has neither a result (pruned, as
// results are) nor a stream still coming: so the spool cannot outgrow the results.
func (n *Node) sweepSpoolIn() {
	last, _ := n.lastSpoolSweep.Load().(time.Time)
	if now := n.now(); now.Sub(last) < spoolSweepEvery {
		return
	} else {
		n.lastSpoolSweep.Store(now)
	}
	dir := filepath.Join(n.opts.Dir, "spool", "in")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var gone []string
	_ = n.store.View(func(tx *keystore.Tx) error {
		coming := map[[16]byte]bool{}
		if err := tx.ForEachStreamIn(func(s *keystore.StreamIn) error {
			coming[s.Command] = true
			return nil
		}); err != nil {
			return err
		}
		for _, e := range ents {
			name, _, _ := strings.Cut(e.Name(), ".")
			raw, err := hex.DecodeString(name)
			if err != nil || len(raw) != 16 {
				continue
			}
			if _, ok, err := tx.Result(session.CommandID(raw)); err != nil || ok {
				continue
			}
			if !coming[[16]byte(raw)] {
				gone = append(gone, e.Name())
			}
		}
		return nil
	})
	for _, name := range gone {
		os.Remove(filepath.Join(dir, name))
	}
}
