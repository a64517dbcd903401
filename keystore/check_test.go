package keystore

import (
	"errors"
	"testing"
	"time"

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
		{"result missing from results_by_sent", del(bResultsBySent, append(timeKey(time.Time{}), b16(4)...))},
		{"orphan results_by_sent row", put(bResultsBySent, append(timeKey(t0), b16(77)...), []byte{})},
		{"results_by_sent row with the wrong time", put(bResultsBySent, append(timeKey(t0), b16(4)...), []byte{})},
		{"short results_by_sent key", put(bResultsBySent, b16(4), []byte{})},
		{"result with a bad outcome", put(bResults, b16(8), []byte(`{"command_id":"a5000000000000000000000000000008","peer":"a","status":"done","outcome":"Timed Out"}`))},
		{"queued missing from its index", del(bSendQueueByPeer, QueuedCommand{ID: tid(5), Peer: tid(200), Queued: t0}.indexKey())},
		{"orphan queue index row", put(bSendQueueByPeer, QueuedCommand{ID: tid(78), Peer: tid(200), Queued: t0}.indexKey(), []byte{})},
		{"queue index row with the wrong peer", put(bSendQueueByPeer, QueuedCommand{ID: tid(5), Peer: tid(201), Queued: t0}.indexKey(), []byte{})},
		{"queued command that does not decode", put(bSendQueue, b16(5), []byte(`{"peer":"zz","frame":"AA=="}`))},
		{"queued command with an upper-case peer", put(bSendQueue, b16(79), []byte(`{"peer":"A50000000000000000000000000000C8","frame":"AA=="}`))},
		{"short owed-ack key", put(bOwedAcks, []byte{1, 2, 3}, []byte("INBOX"))},
		{"owed ack without a mailbox", put(bOwedAcks, owedAckKey(1, 3), []byte{})},
		{"unknown node key", put(bNode, []byte("surprise"), []byte("x"))},
		{"short restore floor", put(bNode, nodeRestoreFloor, []byte{1})},
		{"mailbox settings not an object", put(bNode, nodeMailbox, []byte("[]"))},
		{"failing mail that does not decode", put(bNode, nodeFailingMail, []byte(`{"count":"x"}`))},
		{"processed mark that does not decode", put(bNode, nodeProcessedMark, []byte(`{"uid":-1}`))},
		{"allow list held for a pinned peer", put(bAllowUnpinned, []byte("alice"), []byte(`["df"]`))},
		{"held allow list that is null", put(bAllowUnpinned, []byte("dave"), []byte(`null`))},
		{"held allow list under a bad name", put(bAllowUnpinned, []byte("a b"), []byte(`["df"]`))},
		{"a config bucket (schema 1) in a schema-2 file", func(btx *bolt.Tx) error { _, err := btx.CreateBucket([]byte("config")); return err }},
		{"unknown meta key", put(bMeta, []byte("surprise"), []byte("x"))},
		{"short generation", put(bMeta, metaGeneration, []byte{1})},
		{"unknown bucket", func(btx *bolt.Tx) error { _, err := btx.CreateBucket([]byte("extra")); return err }},
		{"missing bucket", func(btx *bolt.Tx) error { return btx.DeleteBucket(bCursors) }},
		{"nested bucket", func(btx *bolt.Tx) error { _, err := btx.Bucket(bNode).CreateBucket([]byte("sub")); return err }},
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
