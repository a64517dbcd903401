package keystore

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestRecordRoundTrip: each record type put in one transaction comes back
// equal in another, including after a reopen.
func TestRecordRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		put  func(tx *Tx) error
		get  func(tx *Tx) (any, bool, error)
		want any
	}{
		{"identity",
			func(tx *Tx) error {
				return tx.PutIdentity(Identity{Address: "me@example.org", PrivateKey: testKey(t, 3), Created: t0})
			},
			func(tx *Tx) (any, bool, error) { return tx.Identity() },
			Identity{Address: "me@example.org", PrivateKey: testKey(t, 3), Created: t0}},
		{"identity in another zone comes back as the same instant in UTC",
			func(tx *Tx) error {
				return tx.PutIdentity(Identity{Address: "me@example.org", PrivateKey: testKey(t, 3), Created: t0.In(time.FixedZone("x", 3600))})
			},
			func(tx *Tx) (any, bool, error) { return tx.Identity() },
			Identity{Address: "me@example.org", PrivateKey: testKey(t, 3), Created: t0}},
		{"peer",
			func(tx *Tx) error { return tx.PutPeer(testPeer(t, "alice", 1)) },
			func(tx *Tx) (any, bool, error) { return tx.Peer("alice") },
			testPeer(t, "alice", 1)},
		{"peer by fingerprint",
			func(tx *Tx) error { return tx.PutPeer(testPeer(t, "alice", 1)) },
			func(tx *Tx) (any, bool, error) { return tx.PeerByFingerprint(testPeer(t, "alice", 1).Fingerprint) },
			testPeer(t, "alice", 1)},
		{"peer without allow list or last seen",
			func(tx *Tx) error {
				p := testPeer(t, "bob", 2)
				p.Allow, p.LastSeen = nil, time.Time{}
				return tx.PutPeer(p)
			},
			func(tx *Tx) (any, bool, error) { return tx.Peer("bob") },
			func() Peer { p := testPeer(t, "bob", 2); p.Allow, p.LastSeen = nil, time.Time{}; return p }()},
		{"outbox item",
			func(tx *Tx) error {
				_, err := tx.Enqueue(OutboxItem{To: "a@example.org", Package: []byte{0, 1, 2}, Attempts: 2,
					NextAttempt: t0.Add(time.Minute), Created: t0, LastError: "451 try later"})
				return err
			},
			func(tx *Tx) (any, bool, error) { o, err := tx.Outbox(); return o, len(o) == 1, err },
			[]OutboxItem{{ID: 1, To: "a@example.org", Package: []byte{0, 1, 2}, Attempts: 2,
				NextAttempt: t0.Add(time.Minute), Created: t0, LastError: "451 try later"}}},
		{"cursor",
			func(tx *Tx) error {
				return tx.PutCursor("Sealpost/Agent Inbox", Cursor{UIDValidity: 7, LastUID: 4294967295})
			},
			func(tx *Tx) (any, bool, error) { return tx.Cursor("Sealpost/Agent Inbox") },
			Cursor{UIDValidity: 7, LastUID: 4294967295}},
		{"result",
			func(tx *Tx) error {
				return tx.PutResult(Result{CommandID: tid(9), Peer: "alice", Command: []string{"df", "-h"}, Status: "done",
					ExitCode: 3, Error: "exit 3", Stdout: []byte("out\x00"), Stderr: []byte("err"), Sent: t0, Finished: t0.Add(time.Second)})
			},
			func(tx *Tx) (any, bool, error) { return tx.Result(tid(9)) },
			Result{CommandID: tid(9), Peer: "alice", Command: []string{"df", "-h"}, Status: "done",
				ExitCode: 3, Error: "exit 3", Stdout: []byte("out\x00"), Stderr: []byte("err"), Sent: t0, Finished: t0.Add(time.Second)}},
		{"result with outcome and bookkeeping",
			func(tx *Tx) error {
				return tx.PutResult(Result{CommandID: tid(10), Peer: "bob", Command: []string{"sleep", "9"}, Status: "done",
					Outcome: "signaled", Signal: 9, ExitCode: -1, StdoutTruncated: true, StderrTruncated: true,
					Sent: t0, Started: t0.Add(time.Second), Duration: 1500 * time.Millisecond, Finished: t0.Add(3 * time.Second),
					Attempts: 4, LastAttempt: t0.Add(2 * time.Second)})
			},
			func(tx *Tx) (any, bool, error) { return tx.Result(tid(10)) },
			Result{CommandID: tid(10), Peer: "bob", Command: []string{"sleep", "9"}, Status: "done",
				Outcome: "signaled", Signal: 9, ExitCode: -1, StdoutTruncated: true, StderrTruncated: true,
				Sent: t0, Started: t0.Add(time.Second), Duration: 1500 * time.Millisecond, Finished: t0.Add(3 * time.Second),
				Attempts: 4, LastAttempt: t0.Add(2 * time.Second)}},
		{"mailbox settings",
			func(tx *Tx) error {
				return tx.PutMailboxSettings([]byte(`{"imap":"mail.example.org:993","poll_interval":60}`))
			},
			func(tx *Tx) (any, bool, error) { return tx.MailboxSettings() },
			[]byte(`{"imap":"mail.example.org:993","poll_interval":60}`)},
		{"restore floor",
			func(tx *Tx) error { return tx.PutRestoreFloor(t0.In(time.FixedZone("east", 3600))) },
			func(tx *Tx) (any, bool, error) { return tx.RestoreFloor() },
			t0},
		{"restore floor before 1970",
			func(tx *Tx) error { return tx.PutRestoreFloor(time.Date(1900, 1, 2, 3, 4, 5, 6, time.UTC)) },
			func(tx *Tx) (any, bool, error) { return tx.RestoreFloor() },
			time.Date(1900, 1, 2, 3, 4, 5, 6, time.UTC)},
		{"last prune",
			func(tx *Tx) error { return tx.PutLastPrune(t0) },
			func(tx *Tx) (any, bool, error) { return tx.LastPrune() },
			t0},
		{"processed mark",
			func(tx *Tx) error { return tx.PutProcessedMark(ProcessedMark{UIDValidity: 7, UID: 9, Rebase: true}) },
			func(tx *Tx) (any, bool, error) { return tx.ProcessedMark() },
			ProcessedMark{UIDValidity: 7, UID: 9, Rebase: true}},
		{"failing mail",
			func(tx *Tx) error { return tx.PutFailingMail(FailingMail{UIDValidity: 7, UID: 9, First: t0, Count: 3}) },
			func(tx *Tx) (any, bool, error) { return tx.FailingMail() },
			FailingMail{UIDValidity: 7, UID: 9, First: t0, Count: 3}},
		{"queued command",
			func(tx *Tx) error {
				return tx.PutQueued(QueuedCommand{ID: tid(11), Peer: tid(2), Frame: []byte{0, 1, 2}, NotAfter: t0.Add(time.Hour), Queued: t0})
			},
			func(tx *Tx) (any, bool, error) { return tx.Queued(tid(11)) },
			QueuedCommand{ID: tid(11), Peer: tid(2), Frame: []byte{0, 1, 2}, NotAfter: t0.Add(time.Hour), Queued: t0}},
		{"session blob",
			func(tx *Tx) error { return tx.PutSession(tid(1), tid(2), []byte("epoch")) },
			func(tx *Tx) (any, bool, error) { return tx.Session(tid(1)) },
			[]byte("epoch")},
		{"ledger blob",
			func(tx *Tx) error { return tx.PutLedger(tid(2), tid(3), t0, []byte("seen")) },
			func(tx *Tx) (any, bool, error) { return tx.Ledger(tid(2), tid(3)) },
			[]byte("seen")},
		{"pending blob",
			func(tx *Tx) error { return tx.PutPending(tid(3), tid(2), []byte("queued")) },
			func(tx *Tx) (any, bool, error) { return tx.Pending(tid(3)) },
			[]byte("queued")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, Options{Now: clockAt(t0)})
			check := func(when string) {
				t.Helper()
				mustView(t, s, func(tx *Tx) error {
					got, ok, err := tc.get(tx)
					if err != nil || !ok {
						t.Fatalf("%s: found %v, err %v", when, ok, err)
					}
					if !reflect.DeepEqual(got, tc.want) {
						t.Errorf("%s:\n got  %#v\n want %#v", when, got, tc.want)
					}
					return nil
				})
			}
			mustUpdate(t, s, tc.put)
			check("same store")
			s = reopen(t, s, Options{})
			check("after reopen")
		})
	}
}

func TestMissingRecords(t *testing.T) {
	s := openTestStore(t)
	mustView(t, s, func(tx *Tx) error {
		lookups := map[string]func() (bool, error){
			"session":  func() (bool, error) { b, ok, err := tx.Session(tid(1)); return ok || b != nil, err },
			"ledger":   func() (bool, error) { b, ok, err := tx.Ledger(tid(1), tid(2)); return ok || b != nil, err },
			"pending":  func() (bool, error) { b, ok, err := tx.Pending(tid(1)); return ok || b != nil, err },
			"pairing":  func() (bool, error) { b, ok, err := tx.Pairing("a@example.org"); return ok || b != nil, err },
			"identity": func() (bool, error) { _, ok, err := tx.Identity(); return ok, err },
			"peer":     func() (bool, error) { _, ok, err := tx.Peer("a"); return ok, err },
			"peer fp":  func() (bool, error) { _, ok, err := tx.PeerByFingerprint(tid(1)); return ok, err },
			"cursor":   func() (bool, error) { _, ok, err := tx.Cursor("INBOX"); return ok, err },
			"result":   func() (bool, error) { _, ok, err := tx.Result(tid(1)); return ok, err },
			"mailbox":  func() (bool, error) { b, ok, err := tx.MailboxSettings(); return ok || b != nil, err },
			"floor":    func() (bool, error) { _, ok, err := tx.RestoreFloor(); return ok, err },
			"prune":    func() (bool, error) { _, ok, err := tx.LastPrune(); return ok, err },
			"mark":     func() (bool, error) { _, ok, err := tx.ProcessedMark(); return ok, err },
			"failing":  func() (bool, error) { _, ok, err := tx.FailingMail(); return ok, err },
			"queued":   func() (bool, error) { _, ok, err := tx.Queued(tid(1)); return ok, err },
			"allow":    func() (bool, error) { a, err := tx.Allow("a"); return a != nil, err },
		}
		for name, look := range lookups {
			if found, err := look(); found || err != nil {
				t.Errorf("%s: found %v err %v, want (nil, false, nil)", name, found, err)
			}
		}
		return nil
	})
}

func TestDeletesOfMissingRecords(t *testing.T) {
	cases := map[string]func(tx *Tx) error{
		"session": func(tx *Tx) error { return tx.DeleteSession(tid(1)) },
		"pending": func(tx *Tx) error { return tx.DeletePending(tid(1)) },
		"pairing": func(tx *Tx) error { return tx.DeletePairing("a@example.org") },
		"peer":    func(tx *Tx) error { return tx.DeletePeer("alice") },
		"outbox":  func(tx *Tx) error { return tx.DeleteOutbox(1) },
		"outbox update": func(tx *Tx) error {
			return tx.PutOutbox(OutboxItem{ID: 1, To: "a@example.org", Package: []byte("p")})
		},
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			s := openTestStore(t)
			if err := s.Update(fn); !errors.Is(err, ErrNotFound) {
				t.Errorf("got %v, want ErrNotFound", err)
			}
		})
	}
}

// TestUnknownFieldsTolerated: a record written by a newer build, with fields
// this one does not know, still reads.
func TestUnknownFieldsTolerated(t *testing.T) {
	s := openTestStore(t)
	p := testPeer(t, "alice", 1)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutPeer(p) })
	rawUpdate(t, s, func(btx *bolt.Tx) error {
		b := btx.Bucket(bPeers)
		var m map[string]any
		if err := json.Unmarshal(b.Get([]byte("alice")), &m); err != nil {
			return err
		}
		m["future_field"] = map[string]any{"x": 1}
		raw, _ := json.Marshal(m)
		if err := b.Put([]byte("alice"), raw); err != nil {
			return err
		}
		return btx.Bucket(bCursors).Put([]byte("INBOX"), []byte(`{"uid_validity":1,"last_uid":2,"modseq":99}`))
	})
	mustView(t, s, func(tx *Tx) error {
		got, ok, err := tx.Peer("alice")
		if !ok || err != nil || !reflect.DeepEqual(got, p) {
			t.Errorf("Peer = %+v %v %v", got, ok, err)
		}
		c, ok, err := tx.Cursor("INBOX")
		if !ok || err != nil || c != (Cursor{1, 2}) {
			t.Errorf("Cursor = %+v %v %v", c, ok, err)
		}
		return nil
	})
}

func TestPeerPinning(t *testing.T) {
	alice, bob := testPeer(t, "alice", 1), testPeer(t, "bob", 2)
	aliceAsMallory := testPeer(t, "mallory", 1)
	aliceNewKey := testPeer(t, "alice", 3)
	aliceMoved := alice
	aliceMoved.Address, aliceMoved.Allow, aliceMoved.LastSeen = "alice@elsewhere.org", []string{"uptime", "df -h"}, t0.Add(48*time.Hour)
	aliceSameFPOtherKey := alice
	aliceSameFPOtherKey.PublicKey = bob.PublicKey

	cases := []struct {
		name  string
		puts  []Peer
		want  []error
		final []Peer
	}{
		{"two peers", []Peer{alice, bob}, []error{nil, nil}, []Peer{alice, bob}},
		{"same fingerprint under another name", []Peer{alice, aliceAsMallory}, []error{nil, ErrConflict}, []Peer{alice}},
		{"same name, new key is not a silent re-pin", []Peer{alice, aliceNewKey}, []error{nil, ErrConflict}, []Peer{alice}},
		{"same name and fingerprint, other public key", []Peer{alice, aliceSameFPOtherKey}, []error{nil, ErrConflict}, []Peer{alice}},
		{"same pin may update address, allow and last seen", []Peer{alice, aliceMoved}, []error{nil, nil}, []Peer{aliceMoved}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t)
			for i, p := range tc.puts {
				if err := s.Update(func(tx *Tx) error { return tx.PutPeer(p) }); !errors.Is(err, tc.want[i]) {
					t.Fatalf("put %d (%s): %v, want %v", i, p.Name, err, tc.want[i])
				}
			}
			mustView(t, s, func(tx *Tx) error {
				got, err := tx.Peers()
				if !reflect.DeepEqual(got, tc.final) {
					t.Errorf("Peers() = %+v\nwant %+v", got, tc.final)
				}
				for _, p := range tc.final {
					byFP, ok, err := tx.PeerByFingerprint(p.Fingerprint)
					if !ok || err != nil || byFP.Name != p.Name {
						t.Errorf("PeerByFingerprint(%s) = %v %v %v", p.Name, byFP.Name, ok, err)
					}
				}
				return err
			})
		})
	}

	t.Run("delete frees the fingerprint for an explicit re-pin", func(t *testing.T) {
		s := openTestStore(t, Options{Now: clockAt(t0.Add(time.Hour))})
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutPeer(alice) })
		mustUpdate(t, s, func(tx *Tx) error { return tx.DeletePeer("alice") })
		mustUpdate(t, s, func(tx *Tx) error {
			if _, ok, err := tx.PeerByFingerprint(alice.Fingerprint); ok || err != nil {
				t.Errorf("fingerprint still pinned: %v %v", ok, err)
			}
			p := aliceAsMallory
			p.AddedAt = time.Time{} // zero: set to now for a new peer
			return tx.PutPeer(p)
		})
		mustView(t, s, func(tx *Tx) error {
			p, _, err := tx.Peer("mallory")
			if !p.AddedAt.Equal(t0.Add(time.Hour)) {
				t.Errorf("AddedAt = %v, want the clock", p.AddedAt)
			}
			return err
		})
	})

	t.Run("zero AddedAt on update keeps the original", func(t *testing.T) {
		s := openTestStore(t)
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutPeer(alice) })
		upd := alice
		upd.AddedAt = time.Time{}
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutPeer(upd) })
		mustView(t, s, func(tx *Tx) error {
			p, _, err := tx.Peer("alice")
			if !p.AddedAt.Equal(alice.AddedAt) {
				t.Errorf("AddedAt = %v, want %v", p.AddedAt, alice.AddedAt)
			}
			return err
		})
	})
}

func TestOutbox(t *testing.T) {
	s := openTestStore(t, Options{Now: clockAt(t0)})
	// id: NextAttempt offset (zero means "due at Created", which is t0).
	mustUpdate(t, s, func(tx *Tx) error {
		for _, off := range []time.Duration{0, 5 * time.Minute, -time.Minute, time.Hour, -time.Minute} {
			item := OutboxItem{To: "a@example.org", Package: []byte("p")}
			if off != 0 {
				item.NextAttempt = t0.Add(off)
			}
			if _, err := tx.Enqueue(item); err != nil {
				return err
			}
		}
		return nil
	})
	ids := func(items []OutboxItem) []uint64 {
		var out []uint64
		for _, o := range items {
			out = append(out, o.ID)
		}
		return out
	}
	cases := []struct {
		name string
		now  time.Time
		want []uint64
	}{
		{"before anything is due", t0.Add(-2 * time.Minute), nil},
		{"earliest first, ties by id", t0, []uint64{3, 5, 1}},
		{"inclusive of now", t0.Add(5 * time.Minute), []uint64{3, 5, 1, 2}},
		{"all due", t0.Add(2 * time.Hour), []uint64{3, 5, 1, 2, 4}},
	}
	for _, tc := range cases {
		t.Run("due/"+tc.name, func(t *testing.T) {
			mustView(t, s, func(tx *Tx) error {
				due, err := tx.DueOutbox(tc.now)
				if got := ids(due); !slices.Equal(got, tc.want) {
					t.Errorf("DueOutbox(%v) = %v, want %v", tc.now, got, tc.want)
				}
				return err
			})
		})
	}
	t.Run("update, delete and ids never reused", func(t *testing.T) {
		mustUpdate(t, s, func(tx *Tx) error {
			all, err := tx.Outbox()
			if err != nil {
				return err
			}
			if got := ids(all); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
				t.Errorf("Outbox() ids %v", got)
			}
			item := all[2]
			if item.Created != t0 || item.NextAttempt != t0.Add(-time.Minute) {
				t.Errorf("defaults: %+v", item)
			}
			item.Attempts, item.NextAttempt, item.LastError = 1, t0.Add(time.Hour), "timeout"
			if err := tx.PutOutbox(item); err != nil {
				return err
			}
			if err := tx.DeleteOutbox(5); err != nil {
				return err
			}
			id, err := tx.Enqueue(OutboxItem{To: "b@example.org", Package: []byte("q")})
			if id != 6 {
				t.Errorf("new id %d after deleting 5, want 6", id)
			}
			return err
		})
		mustView(t, s, func(tx *Tx) error {
			due, err := tx.DueOutbox(t0)
			if got := ids(due); !slices.Equal(got, []uint64{1, 6}) {
				t.Errorf("DueOutbox after update = %v, want [1 6]", got)
			}
			return err
		})
	})
}

func TestResultsOrder(t *testing.T) {
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for _, r := range []Result{
			{CommandID: tid(1), Peer: "a", Status: "done", Sent: t0.Add(time.Minute)},
			{CommandID: tid(3), Peer: "a", Status: "sent", Sent: t0},
			{CommandID: tid(2), Peer: "a", Status: "sent", Sent: t0},
			{CommandID: tid(4), Peer: "a", Status: "sent", Sent: t0.Add(-time.Hour)},
		} {
			if err := tx.PutResult(r); err != nil {
				return err
			}
		}
		return nil
	})
	mustView(t, s, func(tx *Tx) error {
		rs, err := tx.Results()
		var got []int
		for _, r := range rs {
			got = append(got, int(r.CommandID[15]))
		}
		if !slices.Equal(got, []int{4, 2, 3, 1}) {
			t.Errorf("Results() order %v, want [4 2 3 1]", got)
		}
		return err
	})
}
