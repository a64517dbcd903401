package keystore

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
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
}

// Store is one node's state file. It is safe for concurrent use; bbolt
// serialises writers and lets readers run alongside them.
type Store struct {
	dir  string
	path string
	db   *bolt.DB
	log  *slog.Logger
	now  func() time.Time

	genMu         sync.Mutex // orders sidecar writes so state.gen never goes backwards
	sidecarGen    uint64     // highest generation written to state.gen by this Store
	sidecar       *os.File   // state.gen, open for writing once the first commit recorded it
	sidecarClosed bool       // Close ran: record nothing more

	rbMu     sync.Mutex
	rollback RollbackInfo // cached copy of meta/rollback; see rollback.go

	closeOnce sync.Once
	closeErr  error
	closed    atomic.Bool // set by Close; lets test helpers skip checks on a closed Store
}

// Open opens (creating if needed) DIR/state.db with mode 0600, creating DIR
// with mode 0700. If another process holds the bbolt lock, Open gives up after
// LockTimeout with *InUseError rather than hanging: the usual cause is a
// running agent, and the operator needs to be told so, not left waiting.
// While the Store is open its PID is in DIR/state.pid so that error can name
// the holder.
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
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keystore: create state directory: %w", err)
	}
	path := filepath.Join(dir, dbFile)
	if err := tightenMode(path, opts.Logger); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, &InUseError{Path: path, PID: readPID(dir)}
		}
		return nil, fmt.Errorf("keystore: open %s: %w", path, err)
	}
	s := &Store{dir: dir, path: path, db: db, log: opts.Logger, now: opts.Now}
	// From here on we hold the lock, so the pid file and the sidecar are ours.
	if err := writePID(dir); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.initState(); err != nil {
		_ = os.Remove(filepath.Join(dir, pidFile))
		_ = db.Close()
		return nil, err
	}
	s.log.Debug("keystore opened", "op", "open", "path", path)
	return s, nil
}

// tightenMode makes an existing state.db owner-only. The file holds private
// keys and epoch secrets; a group- or world-readable copy (say, restored from
// a backup with a loose umask) is fixed rather than refused, because refusing
// would stop the agent over something it can repair itself. The fix is
// logged so the operator learns the file was exposed.
func tightenMode(path string, log *slog.Logger) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // bbolt creates it with 0600
	}
	if err != nil {
		return fmt.Errorf("keystore: stat %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("keystore: %s is not a regular file", path)
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(path, perm&^0o077); err != nil {
		return fmt.Errorf("keystore: %s has mode %v and could not be made private: %w", path, perm, err)
	}
	log.Warn("state file was readable by other users; mode tightened", "op", "open", "path", path, "mode", perm.String())
	return nil
}

// initState creates missing buckets, checks the schema version and runs
// rollback detection, all in the one transaction Open commits.
func (s *Store) initState() error {
	seen, seenErr := readSidecar(s.dir)
	return s.commit(func(btx *bolt.Tx) error {
		if err := ensureLayout(btx); err != nil {
			return err
		}
		return s.detectRollback(btx, seen, seenErr)
	})
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
		s.closeSidecar()
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
	return s.commit(func(btx *bolt.Tx) error { return fn(&Tx{s: s, btx: btx}) })
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
