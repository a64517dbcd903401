package keystore

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Rollback detection (threat rows 26 and 31: the state put back from an older copy). Every
// committed transaction increments meta/generation, and after the commit the new value is
// written to generation files that a restore of the database does not bring back:
//
//   - the sidecar, DIR/state.gen, beside the database: it catches a restore of state.db alone;
//   - the witness, WITNESSDIR/<store id>.gen (Options.WitnessDir; none if empty), outside the
//     state directory: it catches a restore of the whole directory (a backup, a snapshot of
//     that filesystem), which brings the sidecar back together with the database. The store id
//     is 16 random bytes made at the first Open (meta/store_id), so several stores can share a
//     witness directory.
//
// Open reads both before its own first commit and reports a restore (RollbackInfo, with the
// first reason in this order) when:
//
//   - RestoreSidecarAhead / RestoreWitnessAhead: the file holds a generation above the
//     database's;
//   - RestoreSidecarMissing / RestoreSidecarGarbled: the database has history (generation > 0)
//     and its sidecar is gone or does not hold a record. Open makes the sidecar exist, durably,
//     before a new store's first commit, so this never happens by accident; a database moved
//     without its sidecar looks like a restore, on purpose;
//   - RestoreWitnessMissing: the database records (meta/witness) that its witness was made in
//     this WitnessDir, and the file is gone: deleting it, or moving the state to another
//     machine, looks like a restore;
//   - RestoreWitnessGarbled: the witness exists, the database has history, and it holds no
//     record.
//
// Every one of them fails safe: the cost of a false report is that every session is dropped
// and each peer handshakes again, and commands issued before the report that the ledger does
// not know are answered outcome-unknown (docs/PROTOCOL.md section 16) — never a lost or a
// repeated command.
//
// Why our own crashes never look like a restore: the files are written after the commit they
// record was fsynced, so they can lag the database's durable generation (a crash before the
// write, or before it reached the disk) but never lead it, and only "ahead" counts. Each file
// is created once, durably (written, fsynced, renamed into place, directory fsynced), before
// anything can depend on its existence — the sidecar before a new store's first commit, the
// witness before meta/witness says it exists — and is afterwards overwritten in place with a
// fixed-width 30-byte record (genfile.go), so its size and blocks never change and a crash
// leaves the old record or the new one. A record that is neither (torn on a disk without
// atomic sector writes, zeroed, edited) fails its checksum and counts as garbled: reported,
// on the safe side. Evidence is never destroyed before the report is committed: Open commits
// its detection first and only then rewrites the files.
//
// What is not detected: a restore that brings the witness back too (a snapshot of the whole
// machine or of the filesystem holding both; a backup of both directories restored together),
// and any restore when WitnessDir is empty and the sidecar came back with the database. The
// node adds a check of its own for those (docs/PROTOCOL.md section 16).

// RestoreReason says what showed a restore.
type RestoreReason uint8

const (
	RestoreNone           RestoreReason = iota // no restore detected
	RestoreSidecarAhead                        // state.gen ahead of the database: the database alone was restored
	RestoreWitnessAhead                        // the witness ahead of the database: the database (and maybe the whole directory) was restored
	RestoreSidecarMissing                      // state.gen missing beside a database with history
	RestoreSidecarGarbled                      // state.gen holds no valid record beside a database with history
	RestoreWitnessMissing                      // the witness the database says it made is missing
	RestoreWitnessGarbled                      // the witness holds no valid record
)

var restoreReasonNames = [...]string{
	RestoreNone:           "none",
	RestoreSidecarAhead:   "sidecar-ahead",
	RestoreWitnessAhead:   "witness-ahead",
	RestoreSidecarMissing: "sidecar-missing",
	RestoreSidecarGarbled: "sidecar-garbled",
	RestoreWitnessMissing: "witness-missing",
	RestoreWitnessGarbled: "witness-garbled",
}

func (r RestoreReason) String() string {
	if int(r) < len(restoreReasonNames) {
		return restoreReasonNames[r]
	}
	return "RestoreReason(" + strconv.Itoa(int(r)) + ")"
}

// MarshalText writes the name, so meta/rollback stays readable.
func (r RestoreReason) MarshalText() ([]byte, error) {
	if int(r) >= len(restoreReasonNames) {
		return nil, fmt.Errorf("keystore: no restore reason %d", r)
	}
	return []byte(r.String()), nil
}

// UnmarshalText accepts the names MarshalText writes and nothing else.
func (r *RestoreReason) UnmarshalText(b []byte) error {
	for i, name := range restoreReasonNames {
		if string(b) == name {
			*r = RestoreReason(i)
			return nil
		}
	}
	return fmt.Errorf("keystore: unknown restore reason %q", b)
}

// RollbackInfo describes a detected restore of an older state: Detected and Reason say whether
// and why, in one value.
type RollbackInfo struct {
	Detected       bool          `json:"detected"`
	At             time.Time     `json:"at"`              // when Open noticed
	Reason         RestoreReason `json:"reason"`          // what showed it (records from older versions: sidecar-ahead)
	DBGeneration   uint64        `json:"db_generation"`   // generation found in the restored database
	SeenGeneration uint64        `json:"seen_generation"` // highest generation the sidecar or witness recorded; 0 if neither was readable
	Path           string        `json:"path,omitempty"`  // the file whose state showed it
}

// Rollback returns the persisted rollback record: Detected stays true across
// reopens until a transaction calls ClearRollback and commits.
func (s *Store) Rollback() RollbackInfo {
	s.rbMu.Lock()
	defer s.rbMu.Unlock()
	return s.rollback
}

// Generation is the store's generation: it grows by one with every committed Update, so the
// difference between two readings counts the commits (each a sync to disk) made between them.
func (tx *Tx) Generation() (uint64, error) { return generation(tx.bucket(bMeta)) }

// StoreID is the store's random 16-byte id, made at its first Open; it names the witness file.
func (s *Store) StoreID() [16]byte { return s.storeID }

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

// initState creates missing buckets, checks the schema version, runs rollback detection and
// sets up the generation files; see the comment at the top of this file for the order.
func (s *Store) initState() error {
	sc, err := readGenFile(s.sidecar.path)
	if err != nil {
		return err
	}
	var dbGen uint64
	if err := s.db.View(func(btx *bolt.Tx) error {
		if meta := btx.Bucket(bMeta); meta != nil {
			dbGen, err = generation(meta)
		}
		return err
	}); err != nil {
		return err
	}
	if dbGen == 0 && !sc.ok() {
		// A store without history: make its sidecar exist durably before the first commit,
		// so that from then on a missing or garbled one is evidence. Nothing is lost by
		// replacing it: there is nothing to protect yet.
		if err := writeFileAtomic(s.dir, genFile, genRecord(0), true); err != nil {
			return fmt.Errorf("keystore: create %s: %w", s.sidecar.path, err)
		}
		sc = genReading{path: s.sidecar.path}
	}

	var w genReading
	witnessKnown := false
	gen, err := s.commit(func(btx *bolt.Tx) error {
		if err := ensureLayout(s, btx); err != nil {
			return err
		}
		meta := btx.Bucket(bMeta)
		id, err := ensureStoreID(meta)
		if err != nil {
			return err
		}
		s.storeID = id
		if s.witnessDir != "" {
			s.witness.path = filepath.Join(s.witnessDir, hex.EncodeToString(id[:])+".gen")
			if w, err = readGenFile(s.witness.path); err != nil {
				return err
			}
			witnessKnown = bytes.Equal(meta.Get(metaWitness), []byte(s.witnessDir))
		}
		return s.detectRollback(meta, sc, w, witnessKnown)
	})
	if err != nil {
		return err
	}

	// The detection (if any) is committed: now the files may be rewritten. A file in the
	// current form is written in place; a missing, garbled or legacy one is replaced durably.
	s.genMu.Lock()
	files := []struct {
		g *genWriter
		r genReading
	}{{&s.sidecar, sc}, {&s.witness, w}}
	for _, f := range files {
		if f.g.path == "" {
			continue
		}
		if f.r.ok() && !f.r.legacy {
			err = f.g.write(gen)
		} else {
			err = f.g.create(gen)
		}
		if err != nil {
			s.genMu.Unlock()
			return fmt.Errorf("keystore: record generation in %s: %w", f.g.path, err)
		}
	}
	s.recordedGen, s.genReady = gen, true
	s.genMu.Unlock()

	if s.witnessDir != "" && !witnessKnown {
		// The witness now exists durably; from this commit on, its absence is evidence.
		_, err = s.commit(func(btx *bolt.Tx) error {
			return btx.Bucket(bMeta).Put(metaWitness, []byte(s.witnessDir))
		})
	}
	return err
}

// ensureStoreID returns meta/store_id, making it at the store's first Open.
func ensureStoreID(meta *bolt.Bucket) ([16]byte, error) {
	var id [16]byte
	if v := meta.Get(metaStoreID); v != nil {
		if len(v) != 16 || bytes.Equal(v, id[:]) {
			return id, corruptf("meta/store_id is %d bytes or zero", len(v))
		}
		copy(id[:], v)
		return id, nil
	}
	for id == [16]byte{} {
		if _, err := rand.Read(id[:]); err != nil {
			return id, err
		}
	}
	return id, meta.Put(metaStoreID, id[:])
}

// detectRollback runs inside Open's first transaction, with what the sidecar (sc) and the
// witness (w, zero if there is none) held before it. witnessKnown: meta/witness names this
// witness directory.
func (s *Store) detectRollback(meta *bolt.Bucket, sc, w genReading, witnessKnown bool) error {
	dbGen, err := generation(meta)
	if err != nil {
		return err
	}
	var found []RollbackInfo
	add := func(r RestoreReason, seen uint64, path string) {
		found = append(found, RollbackInfo{Reason: r, SeenGeneration: seen, Path: path})
	}
	if sc.ok() && sc.gen > dbGen {
		add(RestoreSidecarAhead, sc.gen, sc.path)
	}
	if w.ok() && w.gen > dbGen {
		add(RestoreWitnessAhead, w.gen, w.path)
	}
	if dbGen > 0 && sc.missing() {
		add(RestoreSidecarMissing, 0, sc.path)
	} else if dbGen > 0 && sc.err != nil {
		add(RestoreSidecarGarbled, 0, sc.path)
	}
	if w.path != "" && w.missing() && witnessKnown {
		add(RestoreWitnessMissing, 0, w.path)
	} else if w.path != "" && !w.missing() && w.err != nil && dbGen > 0 {
		add(RestoreWitnessGarbled, 0, w.path)
	}

	if len(found) > 0 {
		info := found[0]
		info.Detected, info.At, info.DBGeneration = true, s.now().UTC(), dbGen
		reasons := make([]string, len(found))
		for i, f := range found {
			reasons[i] = f.Reason.String()
			info.SeenGeneration = max(info.SeenGeneration, f.SeenGeneration)
		}
		prev, err := storedRollback(meta)
		if err != nil {
			return err
		}
		if !prev.Detected {
			// An unacknowledged earlier report stands: it is the first sign, and the
			// caller has not yet acted on it.
			raw, err := json.Marshal(info)
			if err != nil {
				return err
			}
			if err := meta.Put(metaRollback, raw); err != nil {
				return err
			}
		}
		// Continue numbering above the highest generation ever seen, so a second restore of
		// any copy from the abandoned timeline (whose generations are all <= seen) is
		// caught as well.
		if info.SeenGeneration > dbGen {
			if err := meta.Put(metaGeneration, u64Key(info.SeenGeneration)); err != nil {
				return err
			}
		}
		s.log.Warn("state database was restored from an older copy; sessions must be re-established",
			"op", "open", "path", s.path, "reasons", reasons, "db_generation", dbGen, "seen_generation", info.SeenGeneration)
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
	if info.Detected && info.Reason == RestoreNone {
		info.Reason = RestoreSidecarAhead // written before reasons existed: the only kind then
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
// sidecar and the witness. It returns the generation committed.
func (s *Store) commit(fn func(*bolt.Tx) error) (uint64, error) {
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
		return 0, err
	}
	s.recordGeneration(gen)
	return gen, nil
}

// recordGeneration writes gen to the sidecar and the witness, in place over descriptors kept
// open (genWriter.write): one system call each and no directory update, where a new file
// renamed over the old one cost four system calls and a fifth of the agents' CPU in a backlog.
//
// No fsync is needed. The database commit that produced gen was fsynced before this runs, so
// whatever a file holds after a crash (the new record, or an older one whose write had not
// reached the disk) is never greater than the database's durable generation, and only a file
// AHEAD of the database counts as a restore. Skipping the fsync keeps every Update at one fsync
// pair (bbolt's).
//
// A failure to write is logged, not returned: the transaction has already committed, and
// reporting an error would make the caller think it had not. The file then lags, which can
// only miss a detection.
func (s *Store) recordGeneration(gen uint64) {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	if !s.genReady || s.genClosed || gen <= s.recordedGen {
		// Open has not set the files up yet (it writes them itself), the store is closed
		// (the lock may belong to another process by now: its files are not ours to touch),
		// or a concurrent Update recorded a later generation.
		return
	}
	s.recordedGen = gen
	for _, g := range []*genWriter{&s.sidecar, &s.witness} {
		if g.path == "" {
			continue
		}
		if err := g.write(gen); err != nil {
			s.log.Warn("could not record generation; rollback detection weakened", "op", "record_generation", "path", g.path, "err", err)
		}
	}
}

// closeGenFiles releases the generation files' descriptors; nothing is recorded afterwards.
func (s *Store) closeGenFiles() {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	s.genClosed = true
	s.sidecar.close()
	s.witness.close()
}
