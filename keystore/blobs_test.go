package keystore

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// indexedAPI lets one table drive both sessions and pending commands, which
// share the "blob owned by a peer, listed by peer" shape.
type indexedAPI struct {
	name string
	get  func(tx *Tx, id [16]byte) ([]byte, bool, error)
	put  func(tx *Tx, id, peer [16]byte, blob []byte) error
	del  func(tx *Tx, id [16]byte) error
	of   func(tx *Tx, peer [16]byte) ([][16]byte, error)
}

var indexedAPIs = []indexedAPI{
	{"sessions", (*Tx).Session, (*Tx).PutSession, (*Tx).DeleteSession, (*Tx).SessionsOf},
	{"pending", (*Tx).Pending, (*Tx).PutPending, (*Tx).DeletePending, (*Tx).PendingOf},
}

func TestIndexMaintenance(t *testing.T) {
	alice, bob := tid(1000), tid(2000)
	type op struct {
		del      bool
		id, peer [16]byte
		want     error
	}
	cases := []struct {
		name  string
		ops   []op
		alice [][16]byte
		bob   [][16]byte
	}{
		{"puts are listed by peer in id order",
			[]op{{id: tid(3), peer: alice}, {id: tid(1), peer: alice}, {id: tid(2), peer: bob}},
			[][16]byte{tid(1), tid(3)}, [][16]byte{tid(2)}},
		{"overwrite keeps one index row",
			[]op{{id: tid(1), peer: alice}, {id: tid(1), peer: alice}},
			[][16]byte{tid(1)}, nil},
		{"delete removes the index row",
			[]op{{id: tid(1), peer: alice}, {id: tid(2), peer: alice}, {del: true, id: tid(1)}},
			[][16]byte{tid(2)}, nil},
		{"delete of the last id empties the list",
			[]op{{id: tid(1), peer: bob}, {del: true, id: tid(1)}},
			nil, nil},
		{"id reused for another peer is a conflict",
			[]op{{id: tid(1), peer: alice}, {id: tid(1), peer: bob, want: ErrConflict}},
			[][16]byte{tid(1)}, nil},
		{"delete of a missing id is not found",
			[]op{{del: true, id: tid(9), want: ErrNotFound}},
			nil, nil},
	}
	for _, api := range indexedAPIs {
		for _, tc := range cases {
			t.Run(api.name+"/"+tc.name, func(t *testing.T) {
				s := openTestStore(t)
				for i, o := range tc.ops {
					err := s.Update(func(tx *Tx) error {
						if o.del {
							return api.del(tx, o.id)
						}
						return api.put(tx, o.id, o.peer, []byte{byte(i + 1)})
					})
					if !errors.Is(err, o.want) {
						t.Fatalf("op %d: %v, want %v", i, err, o.want)
					}
				}
				mustView(t, s, func(tx *Tx) error {
					for peer, want := range map[[16]byte][][16]byte{alice: tc.alice, bob: tc.bob} {
						got, err := api.of(tx, peer)
						if err != nil {
							return err
						}
						if !reflect.DeepEqual(got, want) {
							t.Errorf("of(%x) = %x, want %x", peer, got, want)
						}
						for _, id := range got {
							if _, ok, err := api.get(tx, id); !ok || err != nil {
								t.Errorf("listed id %x not readable: %v %v", id, ok, err)
							}
						}
					}
					return nil
				})
			})
		}
	}
}

func TestDeleteAllSessions(t *testing.T) {
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for i := 1; i <= 5; i++ {
			if err := tx.PutSession(tid(i), tid(100+i%2), []byte("s")); err != nil {
				return err
			}
		}
		return tx.PutPending(tid(50), tid(100), []byte("p")) // not a session: survives
	})
	mustUpdate(t, s, func(tx *Tx) error {
		n, err := tx.DeleteAllSessions()
		if n != 5 {
			t.Errorf("deleted %d, want 5", n)
		}
		return err
	})
	mustView(t, s, func(tx *Tx) error {
		for _, peer := range [][16]byte{tid(100), tid(101)} {
			if ids, _ := tx.SessionsOf(peer); len(ids) != 0 {
				t.Errorf("SessionsOf(%x) = %x after DeleteAllSessions", peer, ids)
			}
		}
		if _, ok, _ := tx.Session(tid(1)); ok {
			t.Error("session survived")
		}
		if _, ok, _ := tx.Pending(tid(50)); !ok {
			t.Error("pending command was deleted with the sessions")
		}
		n, err := tx.DeleteAllSessions()
		if err == nil || n != 0 {
			t.Errorf("DeleteAllSessions in View = %d, %v; want an error", n, err)
		}
		return nil
	})
}

func TestPairingRoundTrip(t *testing.T) {
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutPairing("Agent+1@Example.org", []byte("code")) })
	mustView(t, s, func(tx *Tx) error {
		if b, ok, err := tx.Pairing("Agent+1@Example.org"); !ok || err != nil || string(b) != "code" {
			t.Errorf("Pairing = %q %v %v", b, ok, err)
		}
		// Keys are exact bytes: keystore does not fold case.
		if _, ok, err := tx.Pairing("agent+1@example.org"); ok || err != nil {
			t.Errorf("case-folded lookup found %v %v", ok, err)
		}
		return nil
	})
	mustUpdate(t, s, func(tx *Tx) error { return tx.DeletePairing("Agent+1@Example.org") })
	if err := s.Update(func(tx *Tx) error { return tx.DeletePairing("Agent+1@Example.org") }); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func TestLedgerPurge(t *testing.T) {
	peer := tid(500)
	cases := []struct {
		name    string
		entries map[int]time.Time // cmd -> notAfter
		before  time.Time
		purged  int
		kept    []int
	}{
		{"empty ledger", nil, t0, 0, nil},
		{"strictly before: equal notAfter is kept",
			map[int]time.Time{1: t0.Add(-time.Nanosecond), 2: t0, 3: t0.Add(time.Nanosecond)},
			t0, 1, []int{2, 3}},
		{"times before 1970 and far in the future sort correctly",
			map[int]time.Time{1: time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), 2: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), 3: t0},
			t0.Add(time.Second), 2, []int{2}},
		{"other time zones are compared as instants",
			map[int]time.Time{1: t0.In(time.FixedZone("east", 5*3600)), 2: t0.Add(time.Hour).In(time.FixedZone("west", -5*3600))},
			t0.Add(time.Minute), 1, []int{2}},
		{"everything expired", map[int]time.Time{1: t0, 2: t0}, t0.Add(time.Hour), 2, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t)
			mustUpdate(t, s, func(tx *Tx) error {
				for cmd, na := range tc.entries {
					if err := tx.PutLedger(peer, tid(cmd), na, []byte{byte(cmd)}); err != nil {
						return err
					}
				}
				return nil
			})
			mustUpdate(t, s, func(tx *Tx) error {
				n, err := tx.PurgeLedger(tc.before)
				if n != tc.purged {
					t.Errorf("purged %d, want %d", n, tc.purged)
				}
				return err
			})
			var kept []int
			mustView(t, s, func(tx *Tx) error {
				return tx.ForEachLedger(func(p, cmd [16]byte, blob []byte) error {
					kept = append(kept, int(blob[0]))
					return nil
				})
			})
			if !reflect.DeepEqual(kept, tc.kept) {
				t.Errorf("kept %v, want %v", kept, tc.kept)
			}
		})
	}

	t.Run("overwrite moves the expiry", func(t *testing.T) {
		s := openTestStore(t)
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutLedger(peer, tid(1), t0, []byte("old")) })
		mustUpdate(t, s, func(tx *Tx) error { return tx.PutLedger(peer, tid(1), t0.Add(48*time.Hour), []byte("new")) })
		mustUpdate(t, s, func(tx *Tx) error {
			if n, err := tx.PurgeLedger(t0.Add(time.Hour)); n != 0 || err != nil {
				t.Errorf("purge after extension = %d, %v", n, err)
			}
			b, ok, err := tx.Ledger(peer, tid(1))
			if !ok || string(b) != "new" {
				t.Errorf("Ledger = %q %v %v", b, ok, err)
			}
			return err
		})
	})

	t.Run("time key order matches time order", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		edge := []time.Time{{}, time.Unix(math.MinInt64/2, 0), time.Unix(-1, 999999999), time.Unix(0, 0), time.Unix(math.MaxInt64/2, 5)}
		for range 2000 {
			edge = append(edge, time.Unix(r.Int64N(1<<40)-(1<<39), r.Int64N(1e9)))
		}
		for i := range edge {
			a, b := edge[i], edge[(i*7+3)%len(edge)]
			if got, want := bytes.Compare(timeKey(a), timeKey(b)), a.Compare(b); got != want {
				t.Fatalf("order of %v vs %v: keys %d, times %d", a, b, got, want)
			}
			if !parseTimeKey(timeKey(a)).Equal(a) {
				t.Fatalf("time key round trip of %v", a)
			}
		}
	})
}

func TestForEachLedger(t *testing.T) {
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for _, pc := range [][2]int{{2, 1}, {1, 2}, {1, 1}} {
			if err := tx.PutLedger(tid(pc[0]), tid(pc[1]), t0, []byte{byte(pc[0]), byte(pc[1])}); err != nil {
				return err
			}
		}
		return nil
	})
	t.Run("order is peer then command, and fn may write", func(t *testing.T) {
		var seen [][]byte
		mustUpdate(t, s, func(tx *Tx) error {
			return tx.ForEachLedger(func(peer, cmd [16]byte, blob []byte) error {
				seen = append(seen, blob)
				return tx.PutLedger(peer, cmd, t0.Add(time.Hour), append([]byte("x"), blob...))
			})
		})
		want := [][]byte{{1, 1}, {1, 2}, {2, 1}}
		if !reflect.DeepEqual(seen, want) {
			t.Errorf("visited %v, want %v", seen, want)
		}
	})
	t.Run("an error stops the walk and rolls back", func(t *testing.T) {
		before := snapshot(t, s)
		stop := errors.New("stop")
		calls := 0
		err := s.Update(func(tx *Tx) error {
			return tx.ForEachLedger(func(peer, cmd [16]byte, _ []byte) error {
				calls++
				if err := tx.PutLedger(peer, cmd, t0, []byte("changed")); err != nil {
					return err
				}
				return stop
			})
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("err %v after %d calls", err, calls)
		}
		assertSameSnapshot(t, before, snapshot(t, s))
	})
}

// TestKeyValidation: bad keys and values are refused with ErrInvalid, on
// reads as well as writes, and nothing is written.
func TestKeyValidation(t *testing.T) {
	zero := [16]byte{}
	good := tid(1)
	long := string(bytes.Repeat([]byte("a"), 400)) + "@example.org"
	cases := []struct {
		name string
		fn   func(tx *Tx) error
	}{
		{"session zero id", func(tx *Tx) error { return tx.PutSession(zero, good, []byte("x")) }},
		{"session zero peer", func(tx *Tx) error { return tx.PutSession(good, zero, []byte("x")) }},
		{"session empty blob", func(tx *Tx) error { return tx.PutSession(good, good, nil) }},
		{"session read zero id", func(tx *Tx) error { _, _, err := tx.Session(zero); return err }},
		{"sessions of zero peer", func(tx *Tx) error { _, err := tx.SessionsOf(zero); return err }},
		{"pending zero cmd", func(tx *Tx) error { return tx.PutPending(zero, good, []byte("x")) }},
		{"ledger zero peer", func(tx *Tx) error { return tx.PutLedger(zero, good, t0, []byte("x")) }},
		{"ledger zero cmd", func(tx *Tx) error { return tx.PutLedger(good, zero, t0, []byte("x")) }},
		{"ledger no expiry", func(tx *Tx) error { return tx.PutLedger(good, good, time.Time{}, []byte("x")) }},
		{"ledger empty blob", func(tx *Tx) error { return tx.PutLedger(good, good, t0, []byte{}) }},
		{"pairing empty address", func(tx *Tx) error { return tx.PutPairing("", []byte("x")) }},
		{"pairing no at sign", func(tx *Tx) error { return tx.PutPairing("agent", []byte("x")) }},
		{"pairing trailing at", func(tx *Tx) error { return tx.PutPairing("agent@", []byte("x")) }},
		{"pairing space", func(tx *Tx) error { return tx.PutPairing("a b@example.org", []byte("x")) }},
		{"pairing control char", func(tx *Tx) error { return tx.PutPairing("a\x00@example.org", []byte("x")) }},
		{"pairing too long", func(tx *Tx) error { return tx.PutPairing(long, []byte("x")) }},
		{"pairing bad utf8", func(tx *Tx) error { return tx.PutPairing("\xff@example.org", []byte("x")) }},
		{"pairing empty blob", func(tx *Tx) error { return tx.PutPairing("a@example.org", nil) }},
		{"identity short key", func(tx *Tx) error {
			return tx.PutIdentity(Identity{Address: "me@example.org", PrivateKey: make([]byte, 32)})
		}},
		{"identity spliced key", func(tx *Tx) error {
			k := append([]byte{}, testKey(t, 1)...)
			copy(k[32:], testKey(t, 2)[32:])
			return tx.PutIdentity(Identity{Address: "me@example.org", PrivateKey: k})
		}},
		{"identity empty address", func(tx *Tx) error { return tx.PutIdentity(Identity{PrivateKey: testKey(t, 1)}) }},
		{"peer empty name", func(tx *Tx) error { p := testPeer(t, "x", 1); p.Name = ""; return tx.PutPeer(p) }},
		{"peer name with space", func(tx *Tx) error { p := testPeer(t, "x", 1); p.Name = "a b"; return tx.PutPeer(p) }},
		{"peer empty address", func(tx *Tx) error { p := testPeer(t, "x", 1); p.Address = ""; return tx.PutPeer(p) }},
		{"peer short key", func(tx *Tx) error { p := testPeer(t, "x", 1); p.PublicKey = p.PublicKey[:31]; return tx.PutPeer(p) }},
		{"peer zero fingerprint", func(tx *Tx) error { p := testPeer(t, "x", 1); p.Fingerprint = zero; return tx.PutPeer(p) }},
		{"peer empty allow entry", func(tx *Tx) error { p := testPeer(t, "x", 1); p.Allow = []string{""}; return tx.PutPeer(p) }},
		{"peer lookup empty name", func(tx *Tx) error { _, _, err := tx.Peer(""); return err }},
		{"peer lookup zero fingerprint", func(tx *Tx) error { _, _, err := tx.PeerByFingerprint(zero); return err }},
		{"delete peer empty name", func(tx *Tx) error { return tx.DeletePeer("") }},
		{"enqueue with id", func(tx *Tx) error {
			_, err := tx.Enqueue(OutboxItem{ID: 7, To: "a@example.org", Package: []byte("p")})
			return err
		}},
		{"enqueue bad recipient", func(tx *Tx) error {
			_, err := tx.Enqueue(OutboxItem{To: "nobody", Package: []byte("p")})
			return err
		}},
		{"enqueue empty package", func(tx *Tx) error {
			_, err := tx.Enqueue(OutboxItem{To: "a@example.org"})
			return err
		}},
		{"enqueue negative attempts", func(tx *Tx) error {
			_, err := tx.Enqueue(OutboxItem{To: "a@example.org", Package: []byte("p"), Attempts: -1})
			return err
		}},
		{"cursor empty mailbox", func(tx *Tx) error { return tx.PutCursor("", Cursor{}) }},
		{"cursor mailbox padded", func(tx *Tx) error { return tx.PutCursor(" INBOX", Cursor{}) }},
		{"result zero id", func(tx *Tx) error { return tx.PutResult(Result{Peer: "a", Status: "ok"}) }},
		{"result no status", func(tx *Tx) error { return tx.PutResult(Result{CommandID: good, Peer: "a"}) }},
		{"result no peer", func(tx *Tx) error { return tx.PutResult(Result{CommandID: good, Status: "ok"}) }},
		{"result outcome not a token", func(tx *Tx) error {
			return tx.PutResult(Result{CommandID: good, Peer: "a", Status: "done", Outcome: "Timed out"})
		}},
		{"result negative attempts", func(tx *Tx) error {
			return tx.PutResult(Result{CommandID: good, Peer: "a", Status: "sent", Attempts: -1})
		}},
		{"result negative duration", func(tx *Tx) error {
			return tx.PutResult(Result{CommandID: good, Peer: "a", Status: "done", Duration: -1})
		}},
		{"mailbox settings not JSON", func(tx *Tx) error { return tx.PutMailboxSettings([]byte("imap.example.org")) }},
		{"mailbox settings not an object", func(tx *Tx) error { return tx.PutMailboxSettings([]byte(`["imap"]`)) }},
		{"failing mail negative count", func(tx *Tx) error { return tx.PutFailingMail(FailingMail{UID: 1, Count: -1}) }},
		{"failing mail year 10000", func(tx *Tx) error {
			return tx.PutFailingMail(FailingMail{UID: 1, First: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)})
		}},
		{"queued zero id", func(tx *Tx) error { return tx.PutQueued(QueuedCommand{Peer: good, Frame: []byte("f")}) }},
		{"queued zero peer", func(tx *Tx) error { return tx.PutQueued(QueuedCommand{ID: good, Frame: []byte("f")}) }},
		{"queued empty frame", func(tx *Tx) error { return tx.PutQueued(QueuedCommand{ID: good, Peer: good}) }},
		{"owed ack empty mailbox", func(tx *Tx) error { return tx.PutOwedAck(OwedAck{UIDValidity: 1, UID: 2}) }},
		{"allow entry with a newline", func(tx *Tx) error { return tx.PutAllow("alice", []string{"a\nb"}) }},
		{"allow for a name with a space", func(tx *Tx) error { return tx.PutAllow("a b", []string{"uptime"}) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t)
			before := snapshot(t, s)
			if err := s.Update(tc.fn); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
			assertSameSnapshot(t, before, snapshot(t, s))
		})
	}
}
