package keystore

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// openTestStore opens a Store in a fresh t.TempDir(). Every test gets its
// stores from here (or openTestStoreIn), so every test ends by proving the
// file still passes Check.
func openTestStore(t testing.TB, opts ...Options) *Store {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	return openTestStoreIn(t, t.TempDir(), o)
}

// openTestStoreIn opens DIR and registers a cleanup that runs Check (failing
// the test on error) and then Close, unless the test closed it already.
func openTestStoreIn(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { closeChecked(t, s) })
	return s
}

// closeChecked is the cleanup's body, also used by tests that reopen.
func closeChecked(t testing.TB, s *Store) {
	t.Helper()
	if s.closed.Load() {
		return
	}
	if err := s.Check(); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// reopen checks and closes s, then opens its directory again.
func reopen(t testing.TB, s *Store, opts Options) *Store {
	t.Helper()
	closeChecked(t, s)
	return openTestStoreIn(t, s.Dir(), opts)
}

func mustUpdate(t testing.TB, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func mustView(t testing.TB, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.View(fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

func snapshot(t testing.TB, s *Store) map[string]map[string][]byte {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return snap
}

func assertSameSnapshot(t testing.TB, before, after map[string]map[string][]byte) {
	t.Helper()
	if !reflect.DeepEqual(before, after) {
		for b := range after {
			if !reflect.DeepEqual(before[b], after[b]) {
				t.Errorf("bucket %s changed:\n before %x\n after  %x", b, before[b], after[b])
			}
		}
		t.Fatal("state changed")
	}
}

// tid makes a distinct, non-zero, ordered 16-byte id.
func tid(n int) [16]byte {
	var id [16]byte
	id[0] = 0xA5
	binary.BigEndian.PutUint64(id[8:], uint64(n))
	return id
}

var t0 = time.Date(2031, 3, 4, 5, 6, 7, 8, time.UTC)

func clockAt(t time.Time) func() time.Time { return func() time.Time { return t } }

func testKey(t testing.TB, seed byte) ed25519.PrivateKey {
	t.Helper()
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

// testPeer builds a valid peer whose key is derived from seed.
func testPeer(t testing.TB, name string, seed byte) Peer {
	t.Helper()
	pub := testKey(t, seed).Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	var fp [16]byte
	copy(fp[:], sum[:])
	return Peer{Name: name, Address: name + "@example.org", PublicKey: pub, Fingerprint: fp,
		Allow: []string{"uptime"}, AddedAt: t0, LastSeen: t0.Add(time.Hour)}
}

// rawUpdate edits the file behind keystore's back, to plant corruption.
func rawUpdate(t testing.TB, s *Store, fn func(*bolt.Tx) error) {
	t.Helper()
	if err := s.db.Update(fn); err != nil {
		t.Fatalf("raw update: %v", err)
	}
}

func dbGeneration(t testing.TB, s *Store) uint64 {
	t.Helper()
	var g uint64
	if err := s.db.View(func(btx *bolt.Tx) error {
		var err error
		g, err = generation(btx.Bucket(bMeta))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return g
}

func sidecar(t testing.TB, dir string) uint64 {
	t.Helper()
	return genFileValue(t, filepath.Join(dir, genFile))
}

// genFileValue reads a generation file (sidecar or witness), which must hold a current record.
func genFileValue(t testing.TB, path string) uint64 {
	t.Helper()
	r, err := readGenFile(path)
	if err == nil {
		err = r.err
	}
	if err != nil || r.legacy {
		t.Fatalf("read %s: %v (legacy %v)", path, err, r.legacy)
	}
	return r.gen
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func statePath(s *Store) string { return filepath.Join(s.Dir(), dbFile) }

// logBuffer is a goroutine-safe sink for a slog JSON handler.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func jsonLogger(w *logBuffer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
