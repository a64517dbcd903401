package keystore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// File names inside the state directory.
const (
	dbFile      = "state.db"
	pidFile     = "state.pid"
	genFile     = "state.gen"
	defaultWait = 2 * time.Second
)

// Options tune Open. The zero value is valid.
type Options struct {
	LockTimeout time.Duration    // how long Open waits for another process's lock; zero (or negative) means 2s
	Logger      *slog.Logger     // nil = silent
	Now         func() time.Time // nil = time.Now
	// WitnessDir holds the rollback witness (rollback.go), outside the state directory;
	// "" = no witness, only the sidecar. Created 0700 if missing and held to the same rule as
	// the state directory (CheckPrivateDir). DefaultWitnessDir is the usual choice.
	WitnessDir string
}

// Store is one node's state file. It is safe for concurrent use; bbolt
// serialises writers and lets readers run alongside them.
type Store struct {
	dir        string
	path       string
	witnessDir string // absolute; "" = no witness
	storeID    [16]byte
	db         *bolt.DB
	log        *slog.Logger
	now        func() time.Time

	genMu       sync.Mutex // orders generation-file writes so they never go backwards
	recordedGen uint64     // highest generation written to the files by this Store
	sidecar     genWriter  // DIR/state.gen
	witness     genWriter  // WITNESSDIR/<store id>.gen; path "" if there is no witness
	genReady    bool       // Open has set the files up; commits may record
	genClosed   bool       // Close ran: record nothing more

	rbMu     sync.Mutex
	rollback RollbackInfo // cached copy of meta/rollback; see rollback.go

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool // set by Close; lets test helpers skip checks on a closed Store
}

// Open opens (creating if needed) DIR/state.db with mode 0600, creating DIR
// with mode 0700. DIR must pass CheckPrivateDir (threat row 36): a directory
// someone else owns or may write to, or a symbolic link, is refused with
// *UnsafeDirError before anything is read or written; so is a symbolic link,
// a file of another user or a hard-linked file where keystore keeps its own
// files (state.db, state.gen, the witness). If another process holds the bbolt
// lock, Open gives up after LockTimeout with *InUseError rather than hanging:
// the usual cause is a running agent, and the operator needs to be told so,
// not left waiting. While the Store is open its PID is in DIR/state.pid so
// that error can name the holder.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, invalidf("state directory is empty")
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = defaultWait
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := makePrivateDir(dir); err != nil {
		return nil, err
	}
	var witnessDir string
	if opts.WitnessDir != "" {
		var err error
		if witnessDir, err = checkWitnessDir(dir, opts.WitnessDir); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(dir, dbFile)
	created := false
	openFile := func(name string, flag int, perm fs.FileMode) (*os.File, error) {
		f, c, err := openDB(name, flag, perm, opts.Logger)
		created = c
		return f, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, OpenFile: openFile})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, &InUseError{Path: path, PID: readPID(dir)}
		}
		return nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
	if created {
		// The new file's name must be durable before any generation file can record a
		// generation of it: otherwise a crash could leave the sidecar ahead of no database.
		if err := syncDir(dir); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("keystore: sync %s: %w", dir, err)
		}
	}
	s := &Store{dir: dir, path: path, witnessDir: witnessDir, db: db, log: opts.Logger, now: opts.Now,
		sidecar: genWriter{path: filepath.Join(dir, genFile)}}
	// From here on we hold the lock, so the pid file and the generation files are ours.
	if err := writePID(dir); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.initState(); err != nil {
		_ = os.Remove(filepath.Join(dir, pidFile))
		_ = db.Close()
		s.closeGenFiles()
		return nil, err
	}
	if err := s.sweepSpool(); err != nil {
		_ = os.Remove(filepath.Join(dir, pidFile))
		_ = db.Close()
		s.closeGenFiles()
		return nil, fmt.Errorf("keystore: sweep %s: %w", s.spoolDir(), err)
	}
	s.log.Debug("keystore opened", "op", "open", "path", path)
	return s, nil
}

// makePrivateDir creates dir (and missing parents) with mode 0700 and checks it with
// CheckPrivateDir: a directory someone else made first, even a moment before, is refused.
func makePrivateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		// Something is in the way (a file, a link to nowhere): say what it is rather than
		// "file exists".
		// Or a missing parent could not be made inside another user's directory: name it.
		var ue *UnsafeDirError
		if cerr := CheckPrivateDir(dir); errors.As(cerr, &ue) {
			return cerr
		}
		if uerr := foreignAncestor(dir); uerr != nil {
			return uerr
		}
		return fmt.Errorf("keystore: create %s: %w", dir, err)
	}
	return CheckPrivateDir(dir)
}

// foreignAncestor returns an *UnsafeDirError (UnsafeParent) for the nearest existing ancestor of
// dir if another user (not root) owns it, else nil.
func foreignAncestor(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		if fi, err := os.Stat(p); err == nil {
			if uid := fileOwner(fi); uid > 0 && uid != os.Geteuid() {
				return &UnsafeDirError{Path: p, Dir: dir, UID: uid, Mode: fi.Mode(), Reason: UnsafeParent}
			}
			return nil
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// checkWitnessDir makes and checks the witness directory and returns its absolute path. It must
// lie outside the state directory: inside, it would come back with it.
func checkWitnessDir(dir, wdir string) (string, error) {
	absState, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("keystore: %w", err)
	}
	abs, err := filepath.Abs(wdir)
	if err != nil {
		return "", fmt.Errorf("keystore: %w", err)
	}
	if rel, err := filepath.Rel(absState, abs); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", invalidf("witness directory %s is inside the state directory %s; it must be outside, or a restore of the state brings it back too", wdir, dir)
	}
	if err := makePrivateDir(abs); err != nil {
		return "", err
	}
	// The same test on the paths as the kernel resolves them: a link (trusted by the check
	// above, being ours or root's) must not lead the witness into the state directory either.
	if rs, err1 := filepath.EvalSymlinks(absState); err1 == nil {
		if rw, err2 := filepath.EvalSymlinks(abs); err2 == nil {
			if rel, err := filepath.Rel(rs, rw); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				return "", invalidf("witness directory %s leads into the state directory %s; it must be outside, or a restore of the state brings it back too", wdir, dir)
			}
		}
	}
	return abs, nil
}

// openDB is bbolt's OpenFile for state.db: it never follows a symbolic link, creates the file
// exclusively (created reports that it did), refuses a file of another user or a hard-linked
// one, and makes an existing file owner-only. The file holds private keys and epoch secrets; a
// group- or world-readable copy (say, restored from a backup with a loose umask) is fixed
// rather than refused, because refusing would stop the agent over something it can repair
// itself. The fix is logged so the operator learns the file was exposed.
func openDB(path string, flag int, perm fs.FileMode, log *slog.Logger) (f *os.File, created bool, err error) {
	f, err = openPrivate(path, flag&^os.O_CREATE, perm)
	if errors.Is(err, fs.ErrNotExist) && flag&os.O_CREATE != 0 {
		f, err = openPrivate(path, flag|os.O_EXCL, perm)
		if err == nil {
			return f, true, nil
		}
		if errors.Is(err, fs.ErrExist) { // another Open created it first
			f, err = openPrivate(path, flag&^os.O_CREATE, perm)
		}
	}
	if err != nil {
		return nil, false, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, false, err
	}
	if p := fi.Mode().Perm(); p&0o077 != 0 {
		if err := f.Chmod(p &^ 0o077); err != nil {
			f.Close()
			return nil, false, fmt.Errorf("keystore: %s has mode %v and could not be made private: %w", path, p, err)
		}
		log.Warn("state file was readable by other users; mode tightened", "op", "open", "path", path, "mode", p.String())
	}
	return f, false, nil
}

// Close releases the lock. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		// Remove the pid file while we still hold the lock: after db.Close
		// another process may already have written its own.
		if err := os.Remove(filepath.Join(s.dir, pidFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("could not remove pid file", "op", "close", "err", err)
		}
		s.closeErr = s.db.Close()
		s.closeGenFiles()
	})
	return s.closeErr
}

// Dir is the state directory passed to Open.
func (s *Store) Dir() string { return s.dir }

// Update runs fn in one bbolt read-write transaction. If fn returns an error
// (or panics) nothing it wrote is kept. On success the generation counter
// is incremented inside the same transaction (see rollback.go). fn must not
// call Update, View or Check on the same Store: bbolt allows one writer and
// would deadlock.
func (s *Store) Update(fn func(*Tx) error) error {
	_, err := s.commit(func(btx *bolt.Tx) error { return fn(&Tx{s: s, btx: btx}) })
	return err
}

// View runs fn in a read-only transaction. Write methods called on its Tx
// fail with bbolt's "tx not writable" error.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{s: s, btx: btx}) })
}

// Snapshot copies every key and value of every bucket. Bucket sequences
// (which assign outbox ids) are part of the state too, so they appear under
// the pseudo-bucket "#sequences" as bucket name -> 8-byte big-endian value.
// Tests use it to prove a failed Update changed nothing.
func (s *Store) Snapshot() (map[string]map[string][]byte, error) {
	out := map[string]map[string][]byte{}
	seqs := map[string][]byte{}
	err := s.db.View(func(btx *bolt.Tx) error {
		return btx.ForEach(func(name []byte, b *bolt.Bucket) error {
			m := map[string][]byte{}
			seqs[string(name)] = u64Key(b.Sequence())
			out[string(name)] = m
			return b.ForEach(func(k, v []byte) error {
				m[string(k)] = clone(v)
				return nil
			})
		})
	})
	if err != nil {
		return nil, err
	}
	out[sequenceSnapshot] = seqs
	return out, nil
}
