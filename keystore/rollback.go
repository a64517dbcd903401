package keystore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Rollback detection (threat row 26: state restored from an old copy of the
// database). Every committed transaction increments meta/generation, and
// after the commit the new value is copied to the sidecar file state.gen.
// A restored state.db carries its old, lower generation while the sidecar
// (which lives beside it and is not part of a database backup) remembers the
// higher one. Open compares the two; if the sidecar is ahead, the session
// state in the file is stale — replay windows have gone back in time — so the
// store records a RollbackInfo that the protocol layer must act on (drop all
// sessions, force a re-handshake) and then clear.

// RollbackInfo describes a detected restore of an older database.
type RollbackInfo struct {
	Detected       bool      `json:"detected"`
	At             time.Time `json:"at"`              // when Open noticed
	DBGeneration   uint64    `json:"db_generation"`   // generation found in the restored database
	SeenGeneration uint64    `json:"seen_generation"` // higher generation the sidecar had recorded
}

// Rollback returns the persisted rollback record: Detected stays true across
// reopens until a transaction calls ClearRollback and commits.
func (s *Store) Rollback() RollbackInfo {
	s.rbMu.Lock()
	defer s.rbMu.Unlock()
	return s.rollback
}

// ClearRollback acknowledges a detected rollback. Call it in the same Update
// that deletes all sessions and records the protocol's own floor, so the
// acknowledgement and the remedy commit together or not at all.
func (tx *Tx) ClearRollback() error {
	if err := tx.bucket(bMeta).Delete(metaRollback); err != nil {
		return err
	}
	tx.btx.OnCommit(func() {
		tx.s.rbMu.Lock()
		tx.s.rollback = RollbackInfo{}
		tx.s.rbMu.Unlock()
		tx.s.log.Info("rollback acknowledged", "op", "clear_rollback")
	})
	return nil
}

// detectRollback runs inside Open's transaction. seen is the sidecar's
// generation (seenErr set if it could not be read).
func (s *Store) detectRollback(btx *bolt.Tx, seen uint64, seenErr error) error {
	meta := btx.Bucket(bMeta)
	dbGen, err := generation(meta)
	if err != nil {
		return err
	}
	switch {
	case errors.Is(seenErr, fs.ErrNotExist):
		// First run, or someone deleted the sidecar. Not a rollback: with
		// no witness we cannot tell, and refusing would brick every new node.
		if dbGen > 0 {
			s.log.Warn("generation sidecar missing; rollback detection starts over", "op", "open", "db_generation", dbGen)
		}
	case seenErr != nil:
		// A torn or garbled sidecar (possible after a crash, see
		// recordGeneration) is likewise no evidence of a rollback.
		s.log.Warn("generation sidecar unreadable; rollback detection starts over", "op", "open", "err", seenErr)
	case seen > dbGen:
		info := RollbackInfo{Detected: true, At: s.now().UTC(), DBGeneration: dbGen, SeenGeneration: seen}
		raw, err := json.Marshal(info)
		if err != nil {
			return err
		}
		if err := meta.Put(metaRollback, raw); err != nil {
			return err
		}
		// Continue numbering above the highest generation ever seen, so a
		// second restore of any copy from the abandoned timeline (whose
		// generations are all <= seen) is caught as well.
		if err := meta.Put(metaGeneration, u64Key(seen)); err != nil {
			return err
		}
		s.log.Warn("state database was restored from an older copy; sessions must be re-established",
			"op", "open", "path", s.path, "db_generation", dbGen, "seen_generation", seen)
	}
	info, err := storedRollback(meta)
	if err != nil {
		return err
	}
	// The cache is set before commit; if the commit fails Open fails and
	// the Store is discarded, so no caller sees an uncommitted value.
	s.rbMu.Lock()
	s.rollback = info
	s.rbMu.Unlock()
	return nil
}

func storedRollback(meta *bolt.Bucket) (RollbackInfo, error) {
	var info RollbackInfo
	raw := meta.Get(metaRollback)
	if raw == nil {
		return info, nil
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return info, corruptf("meta/rollback: %v", err)
	}
	return info, nil
}

func generation(meta *bolt.Bucket) (uint64, error) {
	v := meta.Get(metaGeneration)
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, corruptf("meta/generation is %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// bumpGeneration increments meta/generation inside btx and returns the new
// value. It runs last in every committing transaction.
func bumpGeneration(btx *bolt.Tx) (uint64, error) {
	meta := btx.Bucket(bMeta)
	g, err := generation(meta)
	if err != nil {
		return 0, err
	}
	g++
	return g, meta.Put(metaGeneration, u64Key(g))
}

// commit runs fn and the generation bump in one read-write transaction and,
// once bbolt has committed (and fsynced) it, records the generation in the
// sidecar.
func (s *Store) commit(fn func(*bolt.Tx) error) error {
	var gen uint64
	err := s.db.Update(func(btx *bolt.Tx) error {
		if err := fn(btx); err != nil {
			return err
		}
		var err error
		gen, err = bumpGeneration(btx)
		return err
	})
	if err != nil {
		return err
	}
	s.recordGeneration(gen)
	return nil
}

// recordGeneration writes gen to state.gen: in place, over a descriptor kept open, as 20
// zero-padded digits and a newline, so that every write covers the whole file (21 bytes, within
// one disk sector) with one system call. It used to be a new temporary file renamed over the old
// one: four system calls and a directory update per commit, a fifth of the agents' CPU in a
// backlog.
//
// No fsync is needed. The database commit that produced gen was fsynced before this runs, so
// whatever the sidecar holds after a crash (the new value, or an older one whose write had not
// reached the disk) is never greater than the database's durable generation. Detection fires
// only when the sidecar is AHEAD of the database, so a stale sidecar can only miss a detection,
// never cause a false one; and a garbled one is treated as missing. Skipping the fsync keeps
// every Update at one fsync pair (bbolt's).
//
// A failure to write is logged, not returned: the transaction has already committed, and
// reporting an error would make the caller think it had not.
func (s *Store) recordGeneration(gen uint64) {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	if gen <= s.sidecarGen || s.sidecarClosed {
		// A concurrent Update recorded a later generation, or the store is closed (the lock
		// may belong to another process by now: its sidecar is not ours to touch).
		return
	}
	if s.sidecar == nil {
		// Truncated once, when opened: what an older version or a garbled write left may be
		// longer than what is written from now on. (A crash right after leaves an empty file:
		// unreadable, so no evidence either way.)
		f, err := os.OpenFile(filepath.Join(s.dir, genFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			// Not writable in place (left by another user, say): replace it, as a new file.
			if err := writeFileAtomic(s.dir, genFile, sidecarText(gen)); err != nil {
				s.log.Warn("could not record generation; rollback detection weakened", "op", "record_generation", "err", err)
				return
			}
			s.sidecarGen = gen
			return
		}
		s.sidecar = f
	}
	if _, err := s.sidecar.WriteAt(sidecarText(gen), 0); err != nil {
		s.log.Warn("could not record generation; rollback detection weakened", "op", "record_generation", "err", err)
		s.sidecar.Close()
		s.sidecar = nil
		return
	}
	s.sidecarGen = gen
}

// sidecarText is the sidecar's content for gen: fixed width, so that it always overwrites the
// whole of any earlier content (older versions wrote the digits unpadded, never longer).
func sidecarText(gen uint64) []byte { return fmt.Appendf(nil, "%020d\n", gen) }

// closeSidecar releases the sidecar's descriptor.
func (s *Store) closeSidecar() {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	s.sidecarClosed = true
	if s.sidecar != nil {
		s.sidecar.Close()
		s.sidecar = nil
	}
}

// readSidecar parses state.gen. An error wrapping fs.ErrNotExist means it is
// absent; any other error means it exists but is unusable.
func readSidecar(dir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, genFile))
	if err != nil {
		return 0, err
	}
	return parseSidecar(b)
}

// parseSidecar parses the contents of state.gen: a decimal generation, as
// recordGeneration writes it, with surrounding white space ignored.
func parseSidecar(b []byte) (uint64, error) {
	g, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", genFile, err)
	}
	return g, nil
}
