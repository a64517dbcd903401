package mailbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// FuzzRelayRecord: the relay store's message records (UID key, date + mail, flags) decode
// without panic; a failure is ErrRelayDataDamaged with no message; a success encodes back to
// the same bytes (one stored form per message, so a record the relay did not write is
// refused rather than guessed at).
func FuzzRelayRecord(f *testing.F) {
	rec := binary.BigEndian.AppendUint64(nil, 1_800_000_000_000_000_000)
	f.Add([]byte{0, 0, 0, 1}, append(rec, "Subject: x\r\n\r\nbody"...), []byte(`$custom \flagged \seen`))
	f.Add([]byte{0, 0, 0, 7}, rec, []byte(""))
	f.Add([]byte{0, 0, 0, 0}, rec, []byte(`\seen`))
	f.Add([]byte{0, 0, 1}, rec[:7], []byte(`\seen \seen`))
	f.Add([]byte{0, 0, 0, 2}, rec, []byte(`\Seen`))
	f.Add([]byte{0, 0, 0, 2}, rec, []byte(`\seen  \draft`))
	f.Fuzz(func(t *testing.T, uid, rec, flags []byte) {
		m, err := decodeRelayMail(uid, rec, flags)
		if err != nil {
			if m != nil || !errors.Is(err, ErrRelayDataDamaged) {
				t.Fatalf("decodeRelayMail = %v, %v: want no message and ErrRelayDataDamaged", m, err)
			}
			return
		}
		back := binary.BigEndian.AppendUint64(nil, uint64(m.t.UnixNano()))
		if !bytes.Equal(u32(uint32(m.uid)), uid) || !bytes.Equal(append(back, m.buf...), rec) {
			t.Fatalf("decodeRelayMail(%x, %q) = uid %d, %v, %q: does not encode back", uid, rec, m.uid, m.t, m.buf)
		}
		if got := encodeRelayFlags(m.flagList()); !bytes.Equal(got, flags) {
			t.Fatalf("decodeRelayFlags(%q) encodes back as %q", flags, got)
		}
	})
}

// TestRelayDataDamaged: a store whose records do not read is refused at start (the relay would
// otherwise serve mailboxes with mail missing under UIDVALIDITYs clients trust).
func TestRelayDataDamaged(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(mb *bolt.Bucket) error
	}{
		{"short record", func(mb *bolt.Bucket) error { return mb.Bucket(bktMail).Put(u32(1), []byte{1, 2}) }},
		{"bad flags", func(mb *bolt.Bucket) error {
			if err := mb.Bucket(bktMail).Put(u32(1), make([]byte, 8)); err != nil {
				return err
			}
			return mb.Bucket(bktFlags).Put(u32(1), []byte("\\Seen"))
		}},
		{"uid past uidnext", func(mb *bolt.Bucket) error {
			if err := mb.Bucket(bktMail).Put(u32(9), make([]byte, 8)); err != nil {
				return err
			}
			return mb.Bucket(bktFlags).Put(u32(9), nil)
		}},
		{"no name", func(mb *bolt.Bucket) error { return mb.Delete(keyName) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "relay")
			users := map[string]string{"a@relay.test": "pw"}
			r, err := StartRelay(context.Background(), RelayConfig{Users: users, Data: dir})
			if err != nil {
				t.Fatal(err)
			}
			r.Close()
			db, err := bolt.Open(filepath.Join(dir, relayDBFile), 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				ub := tx.Bucket(bktUsers).Bucket([]byte("a@relay.test"))
				k, _ := ub.Cursor().First()
				return tc.damage(ub.Bucket(k))
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			r, err = StartRelay(context.Background(), RelayConfig{Users: users, Data: dir})
			if err == nil {
				r.Close()
			}
			if !errors.Is(err, ErrRelayDataDamaged) {
				t.Fatalf("StartRelay on damaged data = %v, want ErrRelayDataDamaged", err)
			}
		})
	}
}
