package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/compress"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// Files (docs/PROTOCOL.md section 20, "Files"). pull streams a file of the agent's back as the
// stdout part of a stream, read from the file itself (no copy), resumed after a restart from the
// last chunk recorded. push streams a file of the requester's to the agent, which joins it in its
// spool and, once it is whole and matches its SHA-256, writes it under a temporary name beside
// its destination and renames it into place; the push command is answered then. Every path is
// resolved inside one of the peer's directories (peer add --allow-read/--allow-write) through an
// os.Root, which refuses a symlink or ".." that leads out of it.

// ErrPathDenied: the path is not inside one of the directories the peer may use.
var ErrPathDenied = errors.New("the path is outside the directories this peer may use")

// emptySHA256 is the SHA-256 of no bytes: the digest of a part no chunk carries.
var emptySHA256 = hex.EncodeToString(func() []byte { h := sha256.Sum256(nil); return h[:] }())

// within finds the directory of dirs that holds path (lexically, after cleaning) and the path
// relative to it.
func within(dirs []string, path string) (dir, rel string, err error) {
	clean := filepath.Clean(path)
	if !filepath.IsAbs(clean) {
		return "", "", fmt.Errorf("%w: %q is not absolute", ErrPathDenied, path)
	}
	for _, d := range dirs {
		r, err := filepath.Rel(d, clean)
		if err != nil || r == "." || r == ".." || strings.HasPrefix(r, "../") {
			continue
		}
		return d, r, nil
	}
	return "", "", fmt.Errorf("%w: %s (allowed: %s)", ErrPathDenied, path, strings.Join(dirs, ", "))
}

// openWithin opens rel inside dir without leaving it. O_NONBLOCK: a FIFO (or a device) a peer
// names must not hold the executor in open(2) until a writer comes; callers check that what
// they opened is a regular file, for which the flag changes nothing.
func openWithin(dir, rel string) (*os.File, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}

// checkTransfer is the turn's check of a pull or push (atTurn): the path lies in one of the
// peer's directories for it. What the path leads to is checked when it is opened.
func (n *Node) checkTransfer(tx *keystore.Tx, peer string, req commands.Request) error {
	paths, err := tx.PeerPaths(peer)
	if err != nil {
		return err
	}
	dirs, verb := paths.Read, "read"
	if req.Name == commands.CmdPush {
		dirs, verb = paths.Write, "write"
	}
	if len(dirs) == 0 {
		return fmt.Errorf("%w: %s may %s no directory here (sealpost peer add %s --allow-%s DIR)", ErrPathDenied, peer, verb, peer, verb)
	}
	_, _, err = within(dirs, req.Path)
	return err
}

// runPull sends the file x asks for as a stream (or inline when small), resuming a stream
// recorded before a restart. Its result is the command's answer.
func (n *Node) runPull(ctx context.Context, x *execution) commands.Result {
	started := n.now()
	fail := func(o commands.Outcome, format string, args ...any) commands.Result {
		return commands.Result{Outcome: o, ExitCode: -1, Error: fmt.Sprintf(format, args...), Started: started.UTC(), Duration: n.now().Sub(started)}
	}
	var (
		rec *keystore.StreamOut
		dir string
		rel string
	)
	err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		if rec, _, err = tx.StreamOut(x.ticket.Peer, x.ticket.Command); err != nil {
			return err
		}
		paths, err := tx.PeerPaths(x.peer.Name)
		if err != nil {
			return err
		}
		dir, rel, err = within(paths.Read, x.req.Path)
		return err
	})
	if errors.Is(err, ErrPathDenied) {
		return fail(commands.OutcomeDenied, "%v", err)
	} else if err != nil {
		return fail(commands.OutcomeStartFailed, "%v", err)
	}
	f, err := openWithin(dir, rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fail(commands.OutcomeNotFound, "no such file: %s", x.req.Path)
		}
		return fail(commands.OutcomeDenied, "cannot open %s inside %s: %v", rel, dir, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return fail(commands.OutcomeStartFailed, "%s is not a regular file", x.req.Path)
	}
	size := fi.Size()
	if rec != nil && rec.Size != size {
		return fail(commands.OutcomeStartFailed, "%s changed size while it was pulled (%d, now %d bytes)", x.req.Path, rec.Size, size)
	}
	if rec == nil && size <= inlineMax {
		b := make([]byte, size)
		if _, err := io.ReadFull(f, b); err != nil {
			return fail(commands.OutcomeStartFailed, "read %s: %v", x.req.Path, err)
		}
		return commands.Result{Outcome: commands.OutcomeExited, Stdout: b, Started: started.UTC(), Duration: n.now().Sub(started)}
	}
	if rec == nil {
		rec = &keystore.StreamOut{Peer: x.ticket.Peer, Command: x.ticket.Command, Source: dir, SourceRel: rel, Size: size, Expires: n.now().Add(streamRetention)}
		copy(rec.Secret[:], x.raw.Stream)
		if err := n.store.Update(func(tx *keystore.Tx) error { return tx.PutStreamOut(rec) }); err != nil {
			return fail(commands.OutcomeStartFailed, "record the transfer: %v", err)
		}
	}
	h, off, err := hashPrefix(f, rec)
	if err != nil {
		return fail(commands.OutcomeStartFailed, "read %s: %v", x.req.Path, err)
	}
	secret := session.Secret(rec.Secret)
	cs, _ := n.chunkSizeFor(ctx, x.peer.Address)
	buf, gated := make([]byte, cs), n.gated(x.peer.Address) // once per transfer, not per chunk
	for idx := uint32(len(rec.Chunks)); off < size; idx++ {
		b := buf[:min(int64(len(buf)), size-off)]
		if _, err := f.ReadAt(b, off); err != nil {
			return fail(commands.OutcomeStartFailed, "read %s: %v", x.req.Path, err)
		}
		h.Write(b)
		c := keystore.StreamChunk{Index: idx, Part: session.PartStdout, Offset: off, Len: int64(len(b))}
		if err := n.queueChunk(ctx, x.peer, gated, rec.Peer, rec.Command, &secret, c, b); err != nil {
			return fail(commands.OutcomeCancelled, "the transfer stopped: %v", err)
		}
		off += int64(len(b))
	}
	var nchunks int64
	_ = n.store.View(func(tx *keystore.Tx) error {
		if r, ok, _ := tx.StreamOut(rec.Peer, rec.Command); ok {
			nchunks = int64(len(r.Chunks))
		}
		return nil
	})
	return commands.Result{Outcome: commands.OutcomeExited, Started: started.UTC(), Duration: n.now().Sub(started),
		Chunks: nchunks, StdoutSize: size, StdoutSHA256: hex.EncodeToString(h.Sum(nil)), StderrSHA256: emptySHA256}
}

// hashPrefix hashes the part of f the recorded chunks cover (a transfer resumed after a
// restart) and returns where the next chunk starts.
func hashPrefix(f *os.File, rec *keystore.StreamOut) (hash.Hash, int64, error) {
	h := sha256.New()
	var off int64
	if k := len(rec.Chunks); k > 0 {
		off = rec.Chunks[k-1].Offset + rec.Chunks[k-1].Len
	}
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, off)); err != nil {
		return nil, 0, err
	}
	return h, off, nil
}

// queueChunk seals chunk c of a sent stream (its plain bytes b), waits (when gated) for room among the
// chunks in flight (when the node mails), and records and queues it in one transaction.
func (n *Node) queueChunk(ctx context.Context, to keystore.Peer, gated bool, peer, cmd [16]byte, secret *session.Secret, c keystore.StreamChunk, b []byte) error {
	frame, err := compress.Encode(b)
	if err != nil {
		return err
	}
	pkg, err := n.eng.SealChunk(peer, cmd, secret, session.Chunk{Index: c.Index, Part: c.Part, Offset: uint64(c.Offset), Payload: frame})
	if err != nil {
		return err
	}
	if gated {
		if err := n.chunks.acquire(ctx); err != nil {
			return err
		}
	}
	err = n.store.Update(func(tx *keystore.Tx) error {
		rec, ok, err := tx.StreamOut(peer, cmd)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("the transfer's record is gone")
		}
		rec.Chunks = append(rec.Chunks, c)
		if err := tx.PutStreamOut(rec); err != nil {
			return err
		}
		return enqueue(tx, to.Address, pkg)
	})
	if err != nil {
		if gated {
			n.chunks.release() // nothing was queued
		}
		return err
	}
	if err := n.flushSoon(context.WithoutCancel(ctx)); err != nil {
		n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
	}
	return nil
}

// resumePull is Recover's: a pull left Executing by a stop or crash whose transfer is recorded
// is not answered outcome-unknown but goes on from its last chunk (reading a file twice does no
// harm).
func (n *Node) resumePull(tx *keystore.Tx, e *session.LedgerEntry, peer keystore.Peer) (*execution, error) {
	rec, ok, err := tx.StreamOut(e.Peer, e.Command)
	if err != nil || !ok || rec.Source == "" || rec.Broken != "" {
		return nil, err
	}
	pol, err := n.policyFor(tx, peer.Name)
	if err != nil {
		return nil, err
	}
	req := commands.Request{Name: commands.CmdPull, Path: filepath.Join(rec.Source, rec.SourceRel), Stream: rec.Secret[:]}
	return &execution{ticket: e.Ticket, raw: req, req: req, policy: pol, peer: peer, started: true, resumed: true}, nil
}

// ---- push: the requester's side ----

// PushSpec is one file to push.
type PushSpec struct {
	ID     CommandID `json:"id,omitzero"`
	Peer   string    `json:"peer"`
	Local  string    `json:"local"`
	Remote string    `json:"remote"`
}

// Push sends the local file to the peer, to be written at remote (which must lie in one of the
// directories the peer allows this node to write into). It returns once the command is recorded;
// its chunks are cut and queued in the background, as the mail goes, and the command's result
// says when the file is in place. A push whose chunks were not all queued (the node stopped) is
// taken up by Maintain.
func (n *Node) Push(ctx context.Context, spec PushSpec) (CommandID, error) {
	id := spec.ID
	if id.IsZero() {
		if _, err := rand.Read(id[:]); err != nil {
			return id, err
		}
	}
	local, err := filepath.Abs(spec.Local)
	if err != nil {
		return id, err
	}
	// The cutter reads the file through an os.Root of its directory, which refuses a symlink
	// that leads out of it: name the file the link leads to, as the hash below reads it.
	if local, err = filepath.EvalSymlinks(local); err != nil {
		return id, fmt.Errorf("push: %w", err)
	}
	f, err := os.Open(local)
	if err != nil {
		return id, fmt.Errorf("push: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return id, fmt.Errorf("push: %s is not a regular file", local)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return id, fmt.Errorf("push: read %s: %w", local, err)
	}
	var to keystore.Peer
	if err := n.store.View(func(tx *keystore.Tx) error {
		p, ok, err := tx.Peer(spec.Peer)
		if err == nil && !ok {
			err = fmt.Errorf("no peer named %q: add it with `sealpost peer add %s --address ADDRESS`", spec.Peer, spec.Peer)
		}
		to = p
		return err
	}); err != nil {
		return id, err
	}
	chunk, _ := n.chunkSizeFor(ctx, to.Address)
	size, cs := fi.Size(), int64(chunk)
	req := commands.Request{Name: commands.CmdPush, Path: spec.Remote, Size: size, SHA256: hex.EncodeToString(h.Sum(nil)), Chunks: (size + cs - 1) / cs}
	if err := withStream(&req); err != nil {
		return id, err
	}
	frame, err := encodeRequest(req)
	if err != nil {
		return id, err
	}
	now := n.now()
	var peer keystore.Peer
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		p, ok, err := tx.Peer(spec.Peer)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no peer named %q", spec.Peer)
		}
		peer = p
		again, err := n.submitIn(tx, st, id, RunSpec{ID: id, Peer: spec.Peer, Request: req, TTL: 7 * 24 * time.Hour}, frame, now, nil)
		if err != nil || again {
			return err
		}
		rec := &keystore.StreamOut{Peer: p.Fingerprint, Command: id, Source: filepath.Dir(local), SourceRel: filepath.Base(local), Size: size, ChunkSize: chunk, Expires: now.Add(streamRetention)}
		copy(rec.Secret[:], req.Stream)
		return tx.PutStreamOut(rec)
	})
	if err != nil {
		return id, err
	}
	if err := n.Flush(ctx); err != nil {
		n.log.Warn("push queued; mailing it failed and will be retried", "op", "flush", "err", err)
	}
	// The chunks are cut beside whatever waits for the answer (a serving loop, or the
	// caller's Wait), which mails them as they come.
	go func() {
		if err := n.cutPush(context.WithoutCancel(ctx), peer, id); err != nil {
			n.log.Warn("a push could not go on; it is tried again", "op", "push", "cmd_id", id.String(), "err", err)
		}
	}()
	return id, nil
}

// cutPush cuts and queues the chunks of a push not cut yet. One cutter per push at a time.
func (n *Node) cutPush(ctx context.Context, to keystore.Peer, id CommandID) error {
	if _, busy := n.pushing.LoadOrStore(id, true); busy {
		return nil
	}
	defer n.pushing.Delete(id)
	var rec *keystore.StreamOut
	mailed := false
	if err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		if rec, _, err = tx.StreamOut(to.Fingerprint, id); err != nil {
			return err
		}
		mailed, err = commandMailed(tx, id)
		return err
	}); err != nil || rec == nil || rec.Source == "" {
		return err
	}
	if !mailed {
		// The agent opens the chunks only once it took the command: they wait until the
		// command went (after a handshake, say). Maintain comes back for them.
		return nil
	}
	f, err := openWithin(rec.Source, rec.SourceRel)
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	defer f.Close()
	off := int64(0)
	if k := len(rec.Chunks); k > 0 {
		off = rec.Chunks[k-1].Offset + rec.Chunks[k-1].Len
	}
	secret := session.Secret(rec.Secret)
	cs := rec.ChunkSize // the request promised its chunk count, so the size stays
	if cs <= 0 {
		cs = n.chunkSize()
	}
	buf, gated := make([]byte, cs), n.gated(to.Address) // once per transfer, not per chunk
	for idx := uint32(len(rec.Chunks)); off < rec.Size; idx++ {
		b := buf[:min(int64(len(buf)), rec.Size-off)]
		if _, err := f.ReadAt(b, off); err != nil {
			return fmt.Errorf("push: read %s: %w", rec.SourceRel, err)
		}
		c := keystore.StreamChunk{Index: idx, Part: session.PartStdout, Offset: off, Len: int64(len(b))}
		if err := n.queueChunk(ctx, to, gated, rec.Peer, rec.Command, &secret, c, b); err != nil {
			return err
		}
		off += int64(len(b))
	}
	return nil
}

// resumePushes starts a cutter for every push whose chunks are not all cut (this node stopped
// while it pushed). Maintain calls it.
func (n *Node) resumePushes(ctx context.Context) {
	type job struct {
		to keystore.Peer
		id CommandID
	}
	var jobs []job
	_ = n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachStreamOut(func(s *keystore.StreamOut) error {
			cut := int64(0)
			if k := len(s.Chunks); k > 0 {
				cut = s.Chunks[k-1].Offset + s.Chunks[k-1].Len
			}
			if s.Source == "" || cut >= s.Size || s.Broken != "" {
				return nil
			}
			if r, ok, _ := tx.Result(s.Command); !ok || r.Request != commands.CmdPush || Final(r.Status) {
				return nil // a pull (the agent's executor resumes those), or settled
			}
			if p, ok, _ := tx.PeerByFingerprint(s.Peer); ok {
				jobs = append(jobs, job{p, s.Command})
			}
			return nil
		})
	})
	for _, j := range jobs {
		go func() {
			if err := n.cutPush(context.WithoutCancel(ctx), j.to, j.id); err != nil {
				n.log.Warn("a push could not go on; it is tried again", "op", "push", "cmd_id", j.id.String(), "err", err)
			}
		}()
	}
}

// ---- push: the agent's side ----

// acceptPush takes a push the peer is allowed: the stream is recorded (its chunks then open
// here) and the command stays Executing until the file is in place. Anything else about it is
// an answer (denied), never an error: THREATS row 30.
func (n *Node) acceptPush(tx *keystore.Tx, st TxStore, t *session.Ticket, req commands.Request) ([]Event, []byte, error) {
	peer, ok, err := tx.PeerByFingerprint(t.Peer)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		_, err := n.eng.Fail(st, t, session.CodeDenied, "the peer was removed")
		return nil, nil, err
	}
	if err := n.checkTransfer(tx, peer.Name, req); err != nil {
		if !errors.Is(err, ErrPathDenied) {
			return nil, nil, err
		}
		pkg, err := n.eng.Fail(st, t, session.CodeDenied, err.Error())
		return []Event{{Kind: EventDenied, Peer: peer.Name, Command: t.Command, Detail: "push: " + req.Path}}, pkg, err
	}
	rec := &keystore.StreamIn{Peer: t.Peer, Command: t.Command, Chunks: req.Chunks, Started: n.now(), Heard: n.now(),
		Path: req.Path, Size: req.Size, SHA256: req.SHA256}
	copy(rec.Secret[:], req.Stream)
	if err := n.eng.Start(st, t); err != nil {
		return nil, nil, err
	}
	ev := Event{Kind: EventExecuted, Peer: peer.Name, Command: t.Command, Detail: fmt.Sprintf("push %s (%d bytes) begins", req.Path, req.Size)}
	if req.Size == 0 {
		pkg, err := n.finishPush(tx, st, rec, func() error { return n.placePush(tx, rec) }) // empty: nothing to copy
		return []Event{ev}, pkg, err
	}
	return []Event{ev}, nil, tx.PutStreamIn(rec)
}

// finishPush answers a push whose chunks are all here (or that has none): the file goes into
// place when it matches, and the command is answered either way.
func (n *Node) finishPush(tx *keystore.Tx, st TxStore, rec *keystore.StreamIn, place func() error) ([]byte, error) {
	started := rec.Started
	res := commands.Result{Outcome: commands.OutcomeExited, Started: started.UTC(), Duration: n.now().Sub(started)}
	h, err := hashFrom(rec.HashState[0])
	if err != nil {
		return nil, err
	}
	if rec.Contig[0] != rec.Size || hex.EncodeToString(h.Sum(nil)) != rec.SHA256 {
		res.ExitCode, res.Error = 1, fmt.Sprintf("the pushed file arrived as %d bytes that do not match its size %d and SHA-256; nothing was written", rec.Contig[0], rec.Size)
	} else if err := place(); err != nil {
		res.ExitCode, res.Error = 1, fmt.Sprintf("could not write %s: %v", rec.Path, err)
		if errors.Is(err, ErrPathDenied) {
			res.Outcome, res.ExitCode = commands.OutcomeDenied, -1
		}
	}
	// The spool stays until the caller's transaction committed: a placer whose answer did not
	// commit (a crash) copies it into place again, and must find it (placeAndAnswer).
	if err := n.dropStreamIn(tx, rec, false); err != nil {
		return nil, err
	}
	e, ok, err := st.Ledger(rec.Peer, rec.Command)
	if err != nil || !ok || e.State != session.Executing {
		return nil, err
	}
	frame, err := encodeResult(res)
	if err != nil {
		return nil, err
	}
	return n.eng.Complete(st, e.Ticket, frame)
}

// placePush copies the joined file from the spool into a temporary file beside its
// destination, inside the peer's directory, syncs it and renames it into place.
func (n *Node) placePush(tx *keystore.Tx, rec *keystore.StreamIn) error {
	dir, rel, err := pushTarget(tx, rec)
	if err != nil {
		return err
	}
	return n.placeFile(dir, rel, rec)
}

// pushTarget is where a push goes: the peer's write directory that holds its path, checked
// again now (the operator may have changed the peer's directories meanwhile).
func pushTarget(tx *keystore.Tx, rec *keystore.StreamIn) (dir, rel string, err error) {
	p, ok, err := tx.PeerByFingerprint(rec.Peer)
	if err != nil || !ok {
		return "", "", fmt.Errorf("%w: the peer was removed", ErrPathDenied)
	}
	paths, err := tx.PeerPaths(p.Name)
	if err != nil {
		return "", "", err
	}
	return within(paths.Write, rec.Path)
}

// placeFile copies the joined file from the spool into a temporary file beside rel inside dir,
// syncs it and renames it into place. Doing it again (after a crash before the answer
// committed) writes the same file again.
func (n *Node) placeFile(dir, rel string, rec *keystore.StreamIn) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	src, err := os.Open(n.StreamPath(rec.Command, session.PartStdout))
	if rec.Size == 0 {
		src, err = os.Open(os.DevNull)
	}
	if err != nil {
		return err
	}
	defer src.Close()
	tmp := filepath.Join(filepath.Dir(rel), ".sealpost-push-"+hex.EncodeToString(rec.Command[:8]))
	root.Remove(tmp) // left by a crash in the middle of an earlier try
	out, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err = io.Copy(out, io.LimitReader(src, rec.Size)); err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, rel)
	}
	if err != nil {
		root.Remove(tmp)
	}
	return err
}

// commandMailed reports whether command id went to the mail server: it is not waiting for a
// session, and no COMMAND of it waits in the outbox.
func commandMailed(tx *keystore.Tx, id CommandID) (bool, error) {
	r, ok, err := tx.Result(id)
	if err != nil || !ok || r.Status == StatusQueued {
		return false, err
	}
	items, err := tx.Outbox()
	if err != nil {
		return false, err
	}
	for _, it := range items {
		if len(it.Package) >= session.HeaderSize && session.Type(it.Package[5]) == session.TypeCommand &&
			session.CommandID(it.Package[80:96]) == id {
			return false, nil
		}
	}
	return true, nil
}

// Push asks the agent to push; the local file's name is made absolute here, since the agent
// reads it for the client (it runs as the same user).
func (cl *Client) Push(ctx context.Context, spec PushSpec) (CommandID, error) {
	if spec.ID.IsZero() {
		if _, err := rand.Read(spec.ID[:]); err != nil {
			return spec.ID, err
		}
	}
	local, err := filepath.Abs(spec.Local)
	if err != nil {
		return spec.ID, err
	}
	spec.Local = local
	_, err = cl.call(ctx, controlRequest{Op: "push", Push: &spec})
	return spec.ID, err
}

// placePushes puts every push whose chunks are all joined into place and answers it. The copy
// runs outside any transaction (a large file would hold the state's one writer for the whole
// copy); the answer commits after it. Maintain and the serving loop call it.
func (n *Node) placePushes(ctx context.Context) {
	if !n.placeWanted.Swap(false) {
		return
	}
	var joined []*keystore.StreamIn
	_ = n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachStreamIn(func(s *keystore.StreamIn) error {
			if s.Path != "" && s.Joined {
				joined = append(joined, s)
			}
			return nil
		})
	})
	for _, rec := range joined {
		startOnce(&n.placing, &n.placers, string(rec.Peer[:])+string(rec.Command[:]),
			func() error { return n.placeAndAnswer(rec) },
			func(err error) {
				n.placeWanted.Store(true)
				n.log.Warn("a pushed file is not in place yet; tried again", "op", "push", "cmd_id", session.CommandID(rec.Command).String(), "err", err)
			})
	}
}

func (n *Node) placeAndAnswer(rec *keystore.StreamIn) error {
	var dir, rel string
	perr := n.store.View(func(tx *keystore.Tx) error {
		var err error
		dir, rel, err = pushTarget(tx, rec)
		return err
	})
	if perr == nil {
		perr = n.placeFile(dir, rel, rec)
	}
	var (
		pkg      []byte
		addr     string
		answered bool
	)
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		cur, ok, err := tx.StreamIn(rec.Peer, rec.Command)
		if err != nil || !ok || !cur.Joined {
			return err
		}
		answered = true
		if pkg, err = n.finishPush(tx, st, cur, func() error { return perr }); err != nil || pkg == nil {
			return err
		}
		p, ok, err := tx.PeerByFingerprint(rec.Peer)
		if err != nil || !ok {
			return err
		}
		addr = p.Address
		if err := enqueue(tx, addr, pkg); err != nil {
			return err
		}
		if testHookPushAnswer != nil {
			return testHookPushAnswer()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if answered {
		n.removeSpoolIn(rec.Command) // only now: the answer is committed
	}
	return n.flushSoon(context.Background())
}

// testHookPushAnswer, when a test sets it, runs inside the transaction that answers a placed
// push; an error aborts that transaction as a crash would.
var testHookPushAnswer func() error
