package keystore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestThreat26StateRollback: threat row 26, "state restored from an old copy
// of the database -> sessions refused until re-handshake; no rolled-back
// replay window". keystore's part is to notice the restore and keep saying so
// until the protocol has dropped its sessions.
func TestThreat26StateRollback(t *testing.T) {
	sid, peer := tid(1), tid(2)
	epoch := func(tx *Tx, n int, blob string) error {
		if err := tx.PutSession(sid, peer, []byte(blob)); err != nil {
			return err
		}
		return tx.PutLedger(peer, tid(100+n), t0.Add(time.Hour), []byte(blob))
	}

	// history opens a store, commits epoch 1, saves a copy of state.db while
	// closed, commits epoch 2, and closes. It returns the dir and the copy.
	history := func(t *testing.T, opts Options) (dir, old string) {
		s := openTestStore(t, opts)
		dir = s.Dir()
		mustUpdate(t, s, func(tx *Tx) error { return epoch(tx, 1, "epoch-1") })
		closeChecked(t, s)
		old = filepath.Join(t.TempDir(), "state.db.old")
		copyFile(t, filepath.Join(dir, dbFile), old)
		s = openTestStoreIn(t, dir, opts)
		mustUpdate(t, s, func(tx *Tx) error { return epoch(tx, 2, "epoch-2") })
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutCursor("k", Cursor{LastUID: 1}) })
		closeChecked(t, s)
		return dir, old
	}

	t.Run("restored copy is detected and reported until cleared", func(t *testing.T) {
		var logs logBuffer
		opts := Options{Now: clockAt(t0), Logger: jsonLogger(&logs)}
		dir, old := history(t, opts)
		seen := sidecar(t, dir)
		copyFile(t, old, filepath.Join(dir, dbFile))

		s := openTestStoreIn(t, dir, opts)
		info := s.Rollback()
		if !info.Detected || !info.At.Equal(t0) || info.SeenGeneration != seen || info.DBGeneration >= seen {
			t.Fatalf("Rollback() = %+v, want detected at %v with seen %d above db", info, t0, seen)
		}
		if !strings.Contains(logs.String(), "restored from an older copy") {
			t.Errorf("no warning logged: %s", logs.String())
		}
		// The restored file really is the old one: that is the danger.
		mustView(t, s, func(tx *Tx) error {
			blob, _, err := tx.Session(sid)
			if string(blob) != "epoch-1" {
				t.Errorf("session blob %q, want the restored epoch-1", blob)
			}
			return err
		})
		// Numbering resumes above everything seen, and the sidecar agrees.
		if g := dbGeneration(t, s); g <= seen || sidecar(t, dir) != g {
			t.Errorf("generation %d sidecar %d, want both above %d", g, sidecar(t, dir), seen)
		}

		// Still reported after a reopen: the record is persistent.
		s = reopen(t, s, Options{Now: clockAt(t0.Add(time.Hour))})
		if got := s.Rollback(); got != info {
			t.Fatalf("after reopen Rollback() = %+v, want %+v", got, info)
		}

		// A ClearRollback in a transaction that fails does not clear it.
		_ = s.Update(func(tx *Tx) error {
			if err := tx.ClearRollback(); err != nil {
				return err
			}
			return errors.New("re-handshake failed")
		})
		if !s.Rollback().Detected {
			t.Fatal("rolled-back ClearRollback cleared the report")
		}

		// The protocol's remedy: drop every session, then acknowledge.
		mustUpdate(t, s, func(tx *Tx) error {
			if n, err := tx.DeleteAllSessions(); err != nil || n != 1 {
				t.Errorf("DeleteAllSessions = %d, %v", n, err)
			}
			return tx.ClearRollback()
		})
		if got := s.Rollback(); got.Detected {
			t.Fatalf("after ClearRollback: %+v", got)
		}
		s = reopen(t, s, opts)
		if got := s.Rollback(); got.Detected {
			t.Fatalf("after ClearRollback and reopen: %+v", got)
		}
	})

	// After a detection the generation jumps above the highest one seen, so
	// a later restore of a copy from the abandoned timeline — one newer than
	// the first restored copy, but older than the state that was lost — is
	// caught too. Without the jump its generation would be above the new
	// (restarted) count and it would pass.
	t.Run("a restore from the abandoned timeline after recovery is detected", func(t *testing.T) {
		s := openTestStore(t)
		dir := s.Dir()
		mustUpdate(t, s, func(tx *Tx) error { return epoch(tx, 1, "epoch-1") })
		closeChecked(t, s)
		copyA := filepath.Join(t.TempDir(), "a.db")
		copyFile(t, filepath.Join(dir, dbFile), copyA)
		s = openTestStoreIn(t, dir, Options{})
		for i := 2; i < 8; i++ {
			mustUpdate(t, s, func(tx *Tx) error { return epoch(tx, i, "epoch-n") })
		}
		closeChecked(t, s)
		copyB := filepath.Join(t.TempDir(), "b.db")
		copyFile(t, filepath.Join(dir, dbFile), copyB)
		s = openTestStoreIn(t, dir, Options{})
		mustUpdate(t, s, func(tx *Tx) error { return epoch(tx, 9, "epoch-9") })
		closeChecked(t, s)

		copyFile(t, copyA, filepath.Join(dir, dbFile))
		s = openTestStoreIn(t, dir, Options{})
		if !s.Rollback().Detected {
			t.Fatal("first restore not detected")
		}
		mustUpdate(t, s, func(tx *Tx) error {
			if _, err := tx.DeleteAllSessions(); err != nil {
				return err
			}
			return tx.ClearRollback()
		})
		closeChecked(t, s)

		copyFile(t, copyB, filepath.Join(dir, dbFile))
		s = openTestStoreIn(t, dir, Options{})
		if !s.Rollback().Detected {
			t.Fatal("restore of a newer copy from the abandoned timeline not detected")
		}
	})

	t.Run("normal reopen is not a rollback", func(t *testing.T) {
		dir, _ := history(t, Options{})
		s := openTestStoreIn(t, dir, Options{})
		s = reopen(t, s, Options{})
		if got := s.Rollback(); got.Detected {
			t.Fatalf("false rollback: %+v", got)
		}
	})

	// A crash after bbolt's commit but before the sidecar write leaves the sidecar behind the
	// database: that must never look like a rollback. A sidecar missing or garbled beside a
	// database with history used to be "no evidence, start over"; since threat row 31 it is a
	// restore (rollback.go says why our own crashes cannot cause it).
	sidecarCases := []struct {
		name    string
		content []byte // nil: delete the sidecar
		want    RestoreReason
	}{
		{"sidecar behind the database, legacy form (crash before sidecar write)", []byte("1\n"), RestoreNone},
		{"sidecar missing (deleted)", nil, RestoreSidecarMissing},
		{"sidecar empty", []byte{}, RestoreSidecarGarbled},
		{"sidecar garbled", []byte("not a number"), RestoreSidecarGarbled},
		{"sidecar garbled, longer than it is written", bytes.Repeat([]byte("x"), 100), RestoreSidecarGarbled},
	}
	for _, tc := range sidecarCases {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := history(t, Options{})
			path := filepath.Join(dir, genFile)
			var err error
			if tc.content == nil {
				err = os.Remove(path)
			} else {
				err = os.WriteFile(path, tc.content, 0o600)
			}
			if err != nil {
				t.Fatal(err)
			}
			s := openTestStoreIn(t, dir, Options{})
			if got := s.Rollback(); got.Detected != (tc.want != RestoreNone) || got.Reason != tc.want {
				t.Fatalf("Rollback() = %+v, want reason %v", got, tc.want)
			}
			if sc := sidecar(t, dir); sc != dbGeneration(t, s) {
				t.Errorf("sidecar %d not rewritten to generation %d", sc, dbGeneration(t, s))
			}
		})
	}

	t.Run("first run is silent", func(t *testing.T) {
		var logs logBuffer
		s := openTestStore(t, Options{Logger: jsonLogger(&logs)})
		if s.Rollback().Detected || bytes.Contains([]byte(logs.String()), []byte("WARN")) {
			t.Errorf("first run: %+v, logs %s", s.Rollback(), logs.String())
		}
	})
}

// TestSidecarAfterClose: a commit that finishes while the store closes must not write the
// sidecar afterwards: once Close returns, the state (and state.gen) may be another process's.
func TestSidecarAfterClose(t *testing.T) {
	s := openTestStore(t)
	if err := s.Update(func(tx *Tx) error { return tx.PutCursor("k", Cursor{LastUID: 1}) }); err != nil {
		t.Fatal(err)
	}
	dir := s.Dir()
	before := sidecar(t, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s.recordGeneration(before + 100) // the late half of a commit racing Close
	if after := sidecar(t, dir); after != before {
		t.Fatalf("state.gen went from %d to %d after Close", before, after)
	}
}
