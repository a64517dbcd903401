package keystore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node", "state")
	s := openTestStoreIn(t, dir, Options{})
	if s.Dir() != dir {
		t.Errorf("Dir() = %q, want %q", s.Dir(), dir)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o700 {
			t.Errorf("%s mode %v, want 0700", d, got)
		}
	}
	for _, name := range []string{dbFile, pidFile, genFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, got)
		}
	}
	if pid := readPID(dir); pid != os.Getpid() {
		t.Errorf("state.pid = %d, want %d", pid, os.Getpid())
	}
}

func TestOpenTightensLooseMode(t *testing.T) {
	s := openTestStore(t)
	closeChecked(t, s)
	if err := os.Chmod(statePath(s), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	s = openTestStoreIn(t, s.Dir(), Options{Logger: jsonLogger(&logs)})
	fi, err := os.Stat(statePath(s))
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode after reopen %v, want 0600", got)
	}
	if !strings.Contains(logs.String(), "mode tightened") || !strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("no warning logged: %s", logs.String())
	}
}

func TestCloseRemovesPIDAndIsIdempotent(t *testing.T) {
	s := openTestStore(t)
	closeChecked(t, s)
	if _, err := os.Stat(filepath.Join(s.Dir(), pidFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state.pid after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	s := openTestStore(t)
	rawUpdate(t, s, func(btx *bolt.Tx) error {
		return btx.Bucket(bMeta).Put(metaSchema, u64Key(schemaVersion+1))
	})
	closeChecked(t, s)
	if s2, err := Open(s.Dir(), Options{}); err == nil {
		s2.Close()
		t.Fatal("Open accepted a newer schema")
	} else if !strings.Contains(err.Error(), "schema version") {
		t.Errorf("error %q does not mention the schema", err)
	}
}

func TestUpdateCountsGenerations(t *testing.T) {
	s := openTestStore(t)
	g0 := dbGeneration(t, s)
	if sc := sidecar(t, s.Dir()); sc != g0 {
		t.Fatalf("after Open sidecar %d, db %d", sc, g0)
	}
	for i := 1; i <= 3; i++ {
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutCursor("k", Cursor{LastUID: uint32(i)}) })
		if g := dbGeneration(t, s); g != g0+uint64(i) {
			t.Fatalf("after %d updates generation %d, want %d", i, g, g0+uint64(i))
		}
		if sc := sidecar(t, s.Dir()); sc != g0+uint64(i) {
			t.Fatalf("after %d updates sidecar %d, want %d", i, sc, g0+uint64(i))
		}
	}
	// Check and View never commit, so never count.
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	mustView(t, s, func(tx *Tx) error { _, _, err := tx.Cursor("k"); return err })
	if g := dbGeneration(t, s); g != g0+3 {
		t.Errorf("Check/View moved the generation to %d", g)
	}
}

// TestFailedUpdateChangesNothing: whatever a failing Update wrote before it
// failed — every kind of record, a bucket sequence, a bucket recreation — the
// file, the generation and the sidecar are exactly as before.
func TestFailedUpdateChangesNothing(t *testing.T) {
	boom := errors.New("boom")
	writeEverything := func(tx *Tx) error {
		p := testPeer(t, "newpeer", 9)
		for _, err := range []error{
			tx.PutSession(tid(100), tid(200), []byte("s")),
			tx.DeleteSession(tid(1)),
			tx.PutLedger(tid(200), tid(101), t0, []byte("l")),
			tx.PutPending(tid(102), tid(200), []byte("p")),
			tx.DeletePending(tid(3)),
			tx.PutPairing("new@example.org", []byte("pair")),
			tx.PutIdentity(Identity{Address: "other@example.org", PrivateKey: testKey(t, 7)}),
			tx.PutPeer(p),
			tx.DeletePeer("alice"),
			tx.PutCursor("INBOX", Cursor{UIDValidity: 9, LastUID: 99}),
			tx.PutResult(Result{CommandID: tid(103), Peer: "alice", Status: "ok"}),
			tx.PutMailboxSettings([]byte(`{"poll":"1s"}`)),
			tx.PutRestoreFloor(t0),
			tx.DeleteLastPrune(),
			tx.PutProcessedMark(ProcessedMark{UIDValidity: 3, UID: 4}),
			tx.PutFailingMail(FailingMail{UIDValidity: 3, UID: 5, Count: 1}),
			tx.PutOwedAck(OwedAck{Mailbox: "INBOX", UIDValidity: 3, UID: 6}),
			tx.DeleteOwedAck(1, 2),
			tx.PutQueued(QueuedCommand{ID: tid(104), Peer: tid(200), Frame: []byte("f"), Queued: t0}),
			tx.DeleteQueued(tid(5)),
			tx.PutAllow("bob", []string{"df"}),
			tx.PutAllow("alice", []string{"df"}),
			func() error { _, err := tx.PruneResults(t0.Add(time.Hour), 0); return err }(),
			tx.ClearRollback(),
		} {
			if err != nil {
				return err
			}
		}
		if _, err := tx.Enqueue(OutboxItem{To: "bob@example.org", Package: []byte("pkg")}); err != nil {
			return err
		}
		if _, err := tx.PurgeLedger(t0.AddDate(10, 0, 0)); err != nil {
			return err
		}
		_, err := tx.DeleteAllSessions()
		return err
	}
	cases := []struct {
		name string
		fn   func(*Tx) error
		want error
	}{
		{"caller error after writes", func(tx *Tx) error {
			if err := writeEverything(tx); err != nil {
				return err
			}
			return boom
		}, boom},
		{"conflict after writes", func(tx *Tx) error {
			if err := writeEverything(tx); err != nil {
				return err
			}
			p := testPeer(t, "mallory", 9) // newpeer's key under another name
			return tx.PutPeer(p)
		}, ErrConflict},
		{"invalid after writes", func(tx *Tx) error {
			if err := writeEverything(tx); err != nil {
				return err
			}
			return tx.PutSession(tid(5), tid(6), nil)
		}, ErrInvalid},
		{"not found after writes", func(tx *Tx) error {
			if err := writeEverything(tx); err != nil {
				return err
			}
			return tx.PutOutbox(OutboxItem{ID: 999, To: "x@example.org", Package: []byte("p")})
		}, ErrNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := populated(t)
			before, gen, sc := snapshot(t, s), dbGeneration(t, s), sidecar(t, s.Dir())
			if err := s.Update(tc.fn); !errors.Is(err, tc.want) {
				t.Fatalf("Update error %v, want %v", err, tc.want)
			}
			assertSameSnapshot(t, before, snapshot(t, s))
			if g := dbGeneration(t, s); g != gen {
				t.Errorf("generation %d -> %d", gen, g)
			}
			if got := sidecar(t, s.Dir()); got != sc {
				t.Errorf("sidecar %d -> %d", sc, got)
			}
		})
	}
	t.Run("panic", func(t *testing.T) {
		s := populated(t)
		before := snapshot(t, s)
		func() {
			defer func() {
				if recover() == nil {
					t.Error("panic was swallowed")
				}
			}()
			_ = s.Update(func(tx *Tx) error {
				if err := writeEverything(tx); err != nil {
					return err
				}
				panic("mid-transaction")
			})
		}()
		assertSameSnapshot(t, before, snapshot(t, s))
	})
}

// populated returns a store holding one of every record kind.
func populated(t *testing.T) *Store {
	t.Helper()
	s := openTestStore(t, Options{Now: clockAt(t0)})
	mustUpdate(t, s, func(tx *Tx) error {
		for _, err := range []error{
			tx.PutSession(tid(1), tid(200), []byte("session")),
			tx.PutLedger(tid(200), tid(2), t0, []byte("ledger")),
			tx.PutPending(tid(3), tid(200), []byte("pending")),
			tx.PutPairing("pair@example.org", []byte("pairing")),
			tx.PutIdentity(Identity{Address: "me@example.org", PrivateKey: testKey(t, 5)}),
			tx.PutPeer(testPeer(t, "alice", 1)),
			tx.PutCursor("INBOX", Cursor{UIDValidity: 1, LastUID: 2}),
			tx.PutResult(Result{CommandID: tid(4), Peer: "alice", Status: "sent"}),
			tx.PutResult(Result{CommandID: tid(6), Peer: "alice", Status: "done", Sent: t0.Add(-time.Hour), Finished: t0}),
			tx.PutMailboxSettings([]byte(`{"imap":"imap.example.org"}`)),
			tx.PutLastPrune(t0),
			tx.PutOwedAck(OwedAck{Mailbox: "INBOX", UIDValidity: 1, UID: 2}),
			tx.PutQueued(QueuedCommand{ID: tid(5), Peer: tid(200), Frame: []byte("frame"), NotAfter: t0, Queued: t0}),
			tx.PutAllow("carol", []string{"uptime"}),
		} {
			if err != nil {
				return err
			}
		}
		_, err := tx.Enqueue(OutboxItem{To: "alice@example.org", Package: []byte("sealed")})
		return err
	})
	return s
}

func TestViewRejectsWrites(t *testing.T) {
	s := openTestStore(t)
	before := snapshot(t, s)
	if err := s.View(func(tx *Tx) error { return tx.PutCursor("k", Cursor{}) }); !errors.Is(err, bolt.ErrTxNotWritable) {
		t.Errorf("write in View: %v", err)
	}
	assertSameSnapshot(t, before, snapshot(t, s))
}

// TestValuesAreCopied: neither a caller mutating its input after Put nor
// mutating a returned slice reaches the stored value.
func TestValuesAreCopied(t *testing.T) {
	s := openTestStore(t)
	blob := []byte("original")
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutSession(tid(1), tid(2), blob); err != nil {
			return err
		}
		if err := tx.PutPairing("a@example.org", blob); err != nil {
			return err
		}
		if err := tx.PutQueued(QueuedCommand{ID: tid(5), Peer: tid(2), Frame: blob}); err != nil {
			return err
		}
		copy(blob, "CLOBBERED") // before commit: bbolt still holds Put values
		return nil
	})
	mustView(t, s, func(tx *Tx) error {
		getters := map[string]func() ([]byte, bool, error){
			"session": func() ([]byte, bool, error) { return tx.Session(tid(1)) },
			"pairing": func() ([]byte, bool, error) { return tx.Pairing("a@example.org") },
			"queued frame": func() ([]byte, bool, error) {
				q, ok, err := tx.Queued(tid(5))
				return q.Frame, ok, err
			},
		}
		for name, get := range getters {
			got, ok, err := get()
			if err != nil || !ok || !bytes.Equal(got, []byte("original")) {
				t.Errorf("%s = %q %v %v", name, got, ok, err)
			}
			copy(got, "XXXXXXXX")
			again, _, _ := get()
			if !bytes.Equal(again, []byte("original")) {
				t.Errorf("%s: mutating a returned value changed the store: %q", name, again)
			}
		}
		return nil
	})
}

func TestSnapshotIncludesSequences(t *testing.T) {
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		_, err := tx.Enqueue(OutboxItem{To: "a@example.org", Package: []byte("p")})
		return err
	})
	snap := snapshot(t, s)
	if got := binary.BigEndian.Uint64(snap[sequenceSnapshot]["outbox"]); got != 1 {
		t.Errorf("outbox sequence in snapshot = %d, want 1", got)
	}
	for _, b := range allBuckets {
		if _, ok := snap[string(b)]; !ok {
			t.Errorf("snapshot lacks bucket %s", b)
		}
	}
}

// TestConcurrentUpdates: bbolt serialises writers; every commit counts once
// and the sidecar ends at the last generation, never behind it.
func TestConcurrentUpdates(t *testing.T) {
	s := openTestStore(t)
	g0 := dbGeneration(t, s)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if err := s.Update(func(tx *Tx) error {
					return tx.PutSession(tid(w*1000+i+1), tid(w+1), []byte("s"))
				}); err != nil {
					t.Error(err)
					return
				}
				if err := s.View(func(tx *Tx) error { _, err := tx.SessionsOf(tid(w + 1)); return err }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	want := g0 + workers*each
	if g := dbGeneration(t, s); g != want {
		t.Errorf("generation %d, want %d", g, want)
	}
	if sc := sidecar(t, s.Dir()); sc != want {
		t.Errorf("sidecar %d, want %d", sc, want)
	}
}
