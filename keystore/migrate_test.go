package keystore

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// v1ID is the command ids testdata/gen-v1 uses.
func v1ID(n byte) [16]byte {
	var v [16]byte
	v[0] = 0xC0
	v[15] = n
	return v
}

// openV1Fixture copies testdata/state-v1.db, written by the schema-1 keystore (testdata/gen-v1),
// into a fresh state directory together with its sidecar, so rollback detection sees the copy as
// the same state it was (a database copied without its sidecar reads as a restore, on purpose),
// and opens it.
func openV1Fixture(t *testing.T) *Store {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join("testdata", "state-v1.db"), filepath.Join(dir, dbFile))
	copyFile(t, filepath.Join("testdata", "state-v1.gen"), filepath.Join(dir, genFile))
	return openTestStoreIn(t, dir, Options{Now: clockAt(t0)})
}

// TestMigrateV1File opens a state written by the previous version and finds every record in its
// typed home with the values it was written with (testdata/gen-v1/main.go); the cleanup runs Check.
func TestMigrateV1File(t *testing.T) {
	s := openV1Fixture(t)
	if rb := s.Rollback(); rb.Detected {
		t.Fatalf("the migrated copy reads as restored: %+v", rb)
	}
	checkV1Migrated(t, s)
	// A second Open finds the current schema and changes nothing.
	s = reopen(t, s, Options{Now: clockAt(t0)})
	checkV1Migrated(t, s)
}

// TestMigrateV2File opens a state written by schema 2 (testdata/state-v2.db: the schema-1
// fixture as the schema-2 build migrated it) and finds it all as it was, with the schema-3
// buckets added.
func TestMigrateV2File(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join("testdata", "state-v2.db"), filepath.Join(dir, dbFile))
	copyFile(t, filepath.Join("testdata", "state-v2.gen"), filepath.Join(dir, genFile))
	s := openTestStoreIn(t, dir, Options{Now: clockAt(t0)})
	if rb := s.Rollback(); rb.Detected {
		t.Fatalf("the schema-2 copy reads as restored: %+v", rb)
	}
	checkV1Migrated(t, s)
	if _, ok := snapshot(t, s)[string(bPeerTags)]; !ok {
		t.Fatal("no peer_tags bucket after opening a schema-2 file")
	}
}

func checkV1Migrated(t *testing.T, s *Store) {
	t.Helper()
	snap := snapshot(t, s)
	if _, ok := snap["config"]; ok {
		t.Errorf("the config bucket survived the migration")
	}
	if v := snap[string(bMeta)][string(metaSchema)]; binary.BigEndian.Uint64(v) != schemaVersion {
		t.Errorf("meta/schema = %x, want %d", v, schemaVersion)
	}
	bob, alice := testPeer(t, "bob", 2), testPeer(t, "alice", 1)
	mustView(t, s, func(tx *Tx) error {
		id, ok, err := tx.Identity()
		self := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
		if err != nil || !ok || id.Address != "me@example.org" || !bytes.Equal(id.PrivateKey, self) || !id.Created.Equal(t0) {
			t.Errorf("Identity() = %v, %v, %v", id, ok, err)
		}
		peers, err := tx.Peers()
		if err != nil || len(peers) != 2 {
			t.Fatalf("Peers() = %v, %v", peers, err)
		}
		want := map[string][]string{"alice": {"echo", "uptime"}, "bob": nil}
		for _, p := range peers {
			fp := map[string][16]byte{"alice": alice.Fingerprint, "bob": bob.Fingerprint}[p.Name]
			if p.Fingerprint != fp || !reflect.DeepEqual(p.Allow, want[p.Name]) || !p.AddedAt.Equal(t0) {
				t.Errorf("peer %s: fingerprint %x allow %q added %v; want %x %q %v", p.Name, p.Fingerprint, p.Allow, p.AddedAt, fp, want[p.Name], t0)
			}
		}
		for name, want := range map[string][]string{"alice": {"echo", "uptime"}, "bob": nil, "carol": {"df"}, "dave": nil} {
			if got, err := tx.Allow(name); err != nil || !reflect.DeepEqual(got, want) {
				t.Errorf("Allow(%s) = %q, %v; want %q", name, got, err, want)
			}
		}

		settings, ok, err := tx.MailboxSettings()
		wantSettings := `{"address":"me@example.org","imap":"imap.example.org:993","smtp":"smtp.example.org:465","login":"me","password_env":"SEALPOST_PASSWORD","tls":"implicit","poll_interval":60000000000}`
		if err != nil || !ok || string(settings) != wantSettings {
			t.Errorf("MailboxSettings() = %s, %v, %v", settings, ok, err)
		}
		for _, c := range []struct {
			name string
			get  func() (time.Time, bool, error)
			want time.Time
		}{{"RestoreFloor", tx.RestoreFloor, t0.Add(-24 * time.Hour)}, {"LastPrune", tx.LastPrune, t0.Add(-3 * time.Hour)}} {
			if got, ok, err := c.get(); err != nil || !ok || !got.Equal(c.want) {
				t.Errorf("%s() = %v, %v, %v; want %v", c.name, got, ok, err, c.want)
			}
		}
		if m, ok, err := tx.ProcessedMark(); err != nil || !ok || m != (ProcessedMark{UIDValidity: 7, UID: 40}) {
			t.Errorf("ProcessedMark() = %+v, %v, %v", m, ok, err)
		}
		if f, ok, err := tx.FailingMail(); err != nil || !ok || f.UIDValidity != 7 || f.UID != 44 || f.Count != 2 || !f.First.Equal(t0.Add(-time.Minute)) {
			t.Errorf("FailingMail() = %+v, %v, %v", f, ok, err)
		}

		var acks []OwedAck
		if err := tx.ForEachOwedAck(func(a OwedAck) error { acks = append(acks, a); return nil }); err != nil {
			t.Error(err)
		}
		if want := []OwedAck{{"INBOX", 7, 42}, {"INBOX", 7, 43}}; !reflect.DeepEqual(acks, want) {
			t.Errorf("owed acks %+v, want %+v", acks, want)
		}

		var queued []QueuedCommand
		if err := tx.QueuedFor(bob.Fingerprint, func(q QueuedCommand) error { queued = append(queued, q); return nil }); err != nil {
			t.Error(err)
		}
		wantQ := []QueuedCommand{ // the one written before issue times were kept comes first
			{ID: v1ID(2), Peer: bob.Fingerprint, Frame: []byte("frame two"), NotAfter: t0.Add(24 * time.Hour)},
			{ID: v1ID(1), Peer: bob.Fingerprint, Frame: []byte("frame one"), NotAfter: t0.Add(24 * time.Hour), Queued: t0.Add(2 * time.Second)},
		}
		if len(queued) != len(wantQ) {
			t.Fatalf("queued for bob: %+v, want %+v", queued, wantQ)
		}
		for i := range queued {
			if !sameQueued(queued[i], wantQ[i]) {
				t.Errorf("queued[%d] = %+v, want %+v", i, queued[i], wantQ[i])
			}
		}

		results, err := tx.Results()
		if err != nil {
			t.Fatal(err)
		}
		var order []byte
		for _, r := range results {
			order = append(order, r.CommandID[15])
		}
		if want := []byte{6, 5, 3, 2, 1}; !bytes.Equal(order, want) {
			t.Errorf("results in order %v, want %v (by time sent)", order, want)
		}
		r, ok, err := tx.Result(v1ID(3))
		if err != nil || !ok || r.Status != "sent" || r.Attempts != 2 || !r.LastAttempt.Equal(t0.Add(time.Minute)) || !r.Sent.Equal(t0) {
			t.Errorf("Result(3) = %+v, %v, %v; want the retry record folded in (2 attempts, last at t0+1m)", r, ok, err)
		}
		if r, ok, err := tx.Result(v1ID(4)); ok || err != nil {
			t.Errorf("Result(4) = %+v, %v, %v; the retry record of a missing result must not make one", r, ok, err)
		}
		if r, _, _ := tx.Result(v1ID(5)); r.Status != "done" || string(r.Stdout) != "hi\n" || string(r.Stderr) != "warn\n" || r.Attempts != 0 || !r.Finished.Equal(t0.Add(-time.Hour+time.Second)) {
			t.Errorf("Result(5) = %+v", r)
		}

		// The records schema 2 did not move are as they were.
		if b, ok, err := tx.Pairing("carol@example.org"); err != nil || !ok || string(b) != "opaque pairing blob" {
			t.Errorf("Pairing = %q, %v, %v", b, ok, err)
		}
		if b, ok, err := tx.Session(v1ID(0x51)); err != nil || !ok || string(b) != "opaque session blob" {
			t.Errorf("Session = %q, %v, %v", b, ok, err)
		}
		if b, ok, err := tx.Pending(v1ID(3)); err != nil || !ok || string(b) != "opaque pending blob" {
			t.Errorf("Pending = %q, %v, %v", b, ok, err)
		}
		if b, ok, err := tx.Ledger(alice.Fingerprint, v1ID(0x71)); err != nil || !ok || string(b) != "opaque ledger blob" {
			t.Errorf("Ledger = %q, %v, %v", b, ok, err)
		}
		if c, ok, err := tx.Cursor("INBOX"); err != nil || !ok || c != (Cursor{UIDValidity: 7, LastUID: 43}) {
			t.Errorf("Cursor = %+v, %v, %v", c, ok, err)
		}
		if o, err := tx.Outbox(); err != nil || len(o) != 1 || o[0].To != "bob@example.org" || string(o[0].Package) != "sealed" {
			t.Errorf("Outbox = %+v, %v", o, err)
		}
		return nil
	})
}

func sameQueued(a, b QueuedCommand) bool {
	return a.ID == b.ID && a.Peer == b.Peer && bytes.Equal(a.Frame, b.Frame) && a.NotAfter.Equal(b.NotAfter) && a.Queued.Equal(b.Queued)
}

// makeV1 turns a closed store's file back into schema 1 the way the previous version laid it
// out (no schema-2 buckets, a config bucket holding records), by editing it with bbolt directly.
func makeV1(t *testing.T, dir string, config map[string]string) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, dbFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(btx *bolt.Tx) error {
		for _, b := range [][]byte{bAllowUnpinned, bResultsBySent, bSendQueue, bSendQueueByPeer, bOwedAcks, bNode, []byte("config")} {
			if err := btx.DeleteBucket(b); err != nil && !errors.Is(err, berrors.ErrBucketNotFound) {
				return err
			}
		}
		cb, err := btx.CreateBucket([]byte("config"))
		if err != nil {
			return err
		}
		for k, v := range config {
			if err := cb.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return btx.Bucket(bMeta).Put(metaSchema, u64Key(1))
	}); err != nil {
		t.Fatal(err)
	}
}

// TestMigrateRefuses: a schema-1 record this build does not know, or one that does not decode,
// makes Open fail with a MigrationError naming it, and leaves the file as it was; once the
// record is gone the migration runs.
func TestMigrateRefuses(t *testing.T) {
	valid := map[string]string{"last-prune": "2031-03-04T05:06:07Z", "policy/alice": `["df"]`}
	cases := []struct {
		key, val string
		want     error
	}{
		{"surprise", "x", ErrUnknownRecord},
		{"policy", `[]`, ErrUnknownRecord},
		{"restore-floor", "yesterday", ErrCorrupt},
		{"mailbox", `"a string"`, ErrInvalid},
		{"processed-mark", `{"uid":-1}`, ErrCorrupt},
		{"failing-mail", `{"count":-2}`, ErrInvalid},
		{"owed-ack/7-42", `{"mailbox":"INBOX","uidvalidity":7,"uid":41}`, ErrCorrupt},
		{"owed-ack/7-42", `{"mailbox":"","uidvalidity":7,"uid":42}`, ErrInvalid},
		{"policy/a b", `["df"]`, ErrInvalid},
		{"policy/alice", `{"allow":[]}`, ErrCorrupt},
		{"queue/xyz", `{}`, ErrCorrupt},
		{fmt.Sprintf("queue/%x", tid(9)), `{"peer":"a5000000000000000000000000000001","frame":""}`, ErrCorrupt},
		{fmt.Sprintf("retry/%x", tid(9)), `{"count":"two"}`, ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			s := openTestStore(t, Options{Now: clockAt(t0)})
			mustUpdate(t, s, func(tx *Tx) error { return tx.PutPeer(testPeer(t, "alice", 1)) })
			closeChecked(t, s)
			config := map[string]string{tc.key: tc.val}
			for k, v := range valid {
				if k != tc.key {
					config[k] = v
				}
			}
			makeV1(t, s.Dir(), config)
			before, err := os.ReadFile(filepath.Join(s.Dir(), dbFile))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Open(s.Dir(), Options{})
			var me *MigrationError
			if !errors.As(err, &me) || me.Key != tc.key || me.Bucket != "config" || !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v; want a MigrationError for config key %q wrapping %v", err, tc.key, tc.want)
			}
			t.Logf("reported: %v", err)
			if after, _ := os.ReadFile(filepath.Join(s.Dir(), dbFile)); !bytes.Equal(before, after) {
				t.Errorf("a refused migration changed the file")
			}
			makeV1(t, s.Dir(), valid) // the same file without the bad record
			s = openTestStoreIn(t, s.Dir(), Options{})
			mustView(t, s, func(tx *Tx) error {
				if got, err := tx.Allow("alice"); err != nil || !reflect.DeepEqual(got, []string{"df"}) {
					t.Errorf("Allow(alice) = %q, %v", got, err)
				}
				return nil
			})
		})
	}
}

// TestSchemaRefused: a file of a schema newer than this build's, or of no schema at all, is not
// opened (ErrSchema) and is left as it was.
func TestSchemaRefused(t *testing.T) {
	for _, v := range []uint64{0, schemaVersion + 1, 1 << 40} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			s := openTestStore(t)
			closeChecked(t, s)
			db, err := bolt.Open(filepath.Join(s.Dir(), dbFile), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Update(func(btx *bolt.Tx) error { return btx.Bucket(bMeta).Put(metaSchema, u64Key(v)) }); err != nil {
				t.Fatal(err)
			}
			db.Close()
			before, _ := os.ReadFile(filepath.Join(s.Dir(), dbFile))
			if _, err := Open(s.Dir(), Options{}); !errors.Is(err, ErrSchema) {
				t.Fatalf("Open of schema %d = %v, want ErrSchema", v, err)
			}
			if after, _ := os.ReadFile(filepath.Join(s.Dir(), dbFile)); !bytes.Equal(before, after) {
				t.Errorf("a refused Open changed the file")
			}
		})
	}
}
