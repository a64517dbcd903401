package keystore

import (
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestCheckFindsCorruption plants one inconsistency at a time behind
// keystore's back and expects Check to report it as ErrCorrupt.
func TestCheckFindsCorruption(t *testing.T) {
	put := func(bucket []byte, k, v []byte) func(*bolt.Tx) error {
		return func(btx *bolt.Tx) error { return btx.Bucket(bucket).Put(k, v) }
	}
	del := func(bucket []byte, k []byte) func(*bolt.Tx) error {
		return func(btx *bolt.Tx) error { return btx.Bucket(bucket).Delete(k) }
	}
	alice := testPeer(t, "alice", 1)
	cases := []struct {
		name  string
		plant func(*bolt.Tx) error
	}{
		{"session missing from its index", del(bSessionsByPeer, pairKey(tid(200), tid(1)))},
		{"orphan session index row", put(bSessionsByPeer, pairKey(tid(200), tid(77)), []byte{})},
		{"session index row for the wrong peer", put(bSessionsByPeer, pairKey(tid(201), tid(1)), []byte{})},
		{"short session key", put(bSessions, []byte("short"), append(b16(200), 'x'))},
		{"session value without a blob", put(bSessions, b16(1), b16(200))},
		{"pending missing from its index", del(bPendingByPeer, pairKey(tid(200), tid(3)))},
		{"ledger missing from expiry index", func(btx *bolt.Tx) error {
			c := btx.Bucket(bLedgerExpiry).Cursor()
			k, _ := c.First()
			return btx.Bucket(bLedgerExpiry).Delete(k)
		}},
		{"expiry row with the wrong time", put(bLedgerExpiry, append(timeKey(t0.Add(1)), pairKey(tid(200), tid(2))...), []byte{})},
		{"pairing under a non-address key", put(bPairings, []byte("nobody"), []byte("x"))},
		{"identity that does not decode", put(bIdentity, identityKey, []byte("{"))},
		{"identity with a short key", put(bIdentity, identityKey, []byte(`{"address":"me@example.org","private_key":"AAAA"}`))},
		{"peer name and key differ", func(btx *bolt.Tx) error {
			raw := btx.Bucket(bPeers).Get([]byte("alice"))
			return btx.Bucket(bPeers).Put([]byte("alias"), append([]byte{}, raw...))
		}},
		{"peer missing from fingerprint index", del(bPeersByFP, alice.Fingerprint[:])},
		{"fingerprint index names a missing peer", put(bPeersByFP, b16(66), []byte("ghost"))},
		{"fingerprint index names the wrong peer", func(btx *bolt.Tx) error {
			if err := (&Tx{btx: btx}).putPeerRaw(testPeer(t, "bob", 2)); err != nil {
				return err
			}
			return btx.Bucket(bPeersByFP).Put(alice.Fingerprint[:], []byte("bob"))
		}},
		{"outbox id above the sequence", func(btx *bolt.Tx) error {
			b := btx.Bucket(bOutbox)
			return putJSON(b, u64Key(9), OutboxItem{ID: 9, To: "a@example.org", Package: []byte("p")}.record())
		}},
		{"outbox id disagrees with key", put(bOutbox, u64Key(1), []byte(`{"id":2,"to":"a@example.org","package":"cA=="}`))},
		{"result under the wrong key", func(btx *bolt.Tx) error {
			raw := btx.Bucket(bResults).Get(b16(4))
			return btx.Bucket(bResults).Put(b16(5), append([]byte{}, raw...))
		}},
		{"cursor that does not decode", put(bCursors, []byte("INBOX"), []byte("[]"))},
		{"config under an invalid key", put(bConfig, []byte("a key"), []byte("v"))},
		{"unknown meta key", put(bMeta, []byte("surprise"), []byte("x"))},
		{"short generation", put(bMeta, metaGeneration, []byte{1})},
		{"unknown bucket", func(btx *bolt.Tx) error { _, err := btx.CreateBucket([]byte("extra")); return err }},
		{"missing bucket", func(btx *bolt.Tx) error { return btx.DeleteBucket(bCursors) }},
		{"nested bucket", func(btx *bolt.Tx) error { _, err := btx.Bucket(bConfig).CreateBucket([]byte("sub")); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := populated(t)
			if err := s.Check(); err != nil {
				t.Fatalf("clean store fails Check: %v", err)
			}
			rawUpdate(t, s, tc.plant)
			err := s.Check()
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Check() = %v, want ErrCorrupt", err)
			}
			t.Logf("reported: %v", err)
			// The cleanup would fail on the planted damage; close here.
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// putPeerRaw writes a peer record and its index without PutPeer's
// conflict checks, to build inconsistent states.
func (tx *Tx) putPeerRaw(p Peer) error {
	if err := putJSON(tx.btx.Bucket(bPeers), []byte(p.Name), p.record()); err != nil {
		return err
	}
	return tx.btx.Bucket(bPeersByFP).Put(p.Fingerprint[:], []byte(p.Name))
}

func b16(n int) []byte {
	id := tid(n)
	return id[:]
}
