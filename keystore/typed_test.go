package keystore

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

func queuedIDs(t *testing.T, tx *Tx, peer [16]byte) [][16]byte {
	t.Helper()
	var ids [][16]byte
	if err := tx.QueuedFor(peer, func(q QueuedCommand) error { ids = append(ids, q.ID); return nil }); err != nil {
		t.Fatalf("QueuedFor: %v", err)
	}
	return ids
}

// TestQueuedOrder: a peer's queue is walked in issue order (records without an issue time
// first, ties by id), other peers' commands are not in it, and a re-put moves the command.
func TestQueuedOrder(t *testing.T) {
	s := openTestStore(t)
	a, b := tid(200), tid(201)
	q := func(id int, peer [16]byte, at time.Time) QueuedCommand {
		return QueuedCommand{ID: tid(id), Peer: peer, Frame: []byte{byte(id)}, NotAfter: t0.Add(time.Hour), Queued: at}
	}
	mustUpdate(t, s, func(tx *Tx) error {
		for _, c := range []QueuedCommand{q(1, a, t0.Add(2*time.Second)), q(2, a, t0), q(3, a, time.Time{}), q(4, b, t0), q(5, a, t0)} {
			if err := tx.PutQueued(c); err != nil {
				return err
			}
		}
		return nil
	})
	rollback := errors.New("roll back")
	if err := s.Update(func(tx *Tx) error {
		if got, want := queuedIDs(t, tx, a), [][16]byte{tid(3), tid(2), tid(5), tid(1)}; !reflect.DeepEqual(got, want) {
			t.Errorf("QueuedFor(a) = %x, want %x", got, want)
		}
		// Issued again later: it moves to the end.
		if err := tx.PutQueued(q(3, a, t0.Add(time.Minute))); err != nil {
			return err
		}
		if got, want := queuedIDs(t, tx, a), [][16]byte{tid(2), tid(5), tid(1), tid(3)}; !reflect.DeepEqual(got, want) {
			t.Errorf("after a re-put QueuedFor(a) = %x, want %x", got, want)
		}
		if err := tx.PutQueued(q(3, b, t0)); !errors.Is(err, ErrConflict) {
			t.Errorf("PutQueued of a's command for b = %v, want ErrConflict", err)
		}
		var all [][16]byte
		if err := tx.ForEachQueued(func(q QueuedCommand) error {
			all = append(all, q.ID)
			return tx.DeleteQueued(q.ID) // fn may change the queue
		}); err != nil {
			return err
		}
		if want := [][16]byte{tid(1), tid(2), tid(3), tid(4), tid(5)}; !reflect.DeepEqual(all, want) {
			t.Errorf("ForEachQueued = %x, want %x", all, want)
		}
		if err := tx.DeleteQueued(tid(1)); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteQueued of a missing command = %v, want ErrNotFound", err)
		}
		return rollback
	}); !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	mustUpdate(t, s, func(tx *Tx) error {
		ids, err := tx.DeleteQueuedFor(a)
		if want := [][16]byte{tid(3), tid(2), tid(5), tid(1)}; err != nil || !reflect.DeepEqual(ids, want) {
			t.Errorf("DeleteQueuedFor(a) = %x, %v; want %x", ids, err, want)
		}
		if got := queuedIDs(t, tx, a); len(got) != 0 {
			t.Errorf("after DeleteQueuedFor(a): %x", got)
		}
		if got := queuedIDs(t, tx, b); !reflect.DeepEqual(got, [][16]byte{tid(4)}) {
			t.Errorf("QueuedFor(b) = %x", got)
		}
		return nil
	})
}

func resultIDs(rs []Result) []int {
	var out []int
	for _, r := range rs {
		out = append(out, int(r.CommandID[15]))
	}
	return out
}

// TestPruneResults: only results both sent and finished before the cutoff go, oldest first, at
// most the limit; results in flight stay however old; the listing stays in time order.
func TestPruneResults(t *testing.T) {
	s := openTestStore(t)
	day := 24 * time.Hour
	r := func(id int, sent, finished time.Time) Result {
		return Result{CommandID: tid(id), Peer: "bob", Status: "x", Sent: sent, Finished: finished}
	}
	mustUpdate(t, s, func(tx *Tx) error {
		for _, r := range []Result{
			r(1, t0.Add(-10*day), t0.Add(-10*day)),  // old, final
			r(2, t0.Add(-9*day), time.Time{}),       // old, in flight
			r(3, t0.Add(-8*day), t0.Add(-8*day)),    // old, final
			r(4, t0.Add(-2*day), t0.Add(-2*day)),    // old, final
			r(5, t0.Add(-2*day), t0.Add(time.Hour)), // sent before, finished after the cutoff
			r(6, t0, t0),                            // new
		} {
			if err := tx.PutResult(r); err != nil {
				return err
			}
		}
		return nil
	})
	cutoff := t0.Add(-day)
	mustUpdate(t, s, func(tx *Tx) error {
		if n, err := tx.PruneResults(cutoff, 2); n != 2 || err != nil {
			t.Errorf("PruneResults(limit 2) = %d, %v", n, err)
		}
		rs, err := tx.Results()
		if got, want := resultIDs(rs), []int{2, 4, 5, 6}; err != nil || !slices.Equal(got, want) {
			t.Errorf("after pruning 2: %v, %v; want %v", got, err, want)
		}
		if n, err := tx.PruneResults(cutoff, 0); n != 1 || err != nil {
			t.Errorf("PruneResults(no limit) = %d, %v", n, err)
		}
		rs, err = tx.Results()
		if got, want := resultIDs(rs), []int{2, 5, 6}; err != nil || !slices.Equal(got, want) {
			t.Errorf("after pruning: %v, %v; want %v", got, err, want)
		}
		// A result put again with another sent time moves in the listing.
		if err := tx.PutResult(r(2, t0.Add(time.Hour), time.Time{})); err != nil {
			return err
		}
		rs, err = tx.Results()
		if got, want := resultIDs(rs), []int{5, 6, 2}; err != nil || !slices.Equal(got, want) {
			t.Errorf("after a re-put: %v, %v; want %v", got, err, want)
		}
		return nil
	})
}

// TestResultsByPrefix: any number of hex digits, either case, odd counts matching half a byte.
func TestResultsByPrefix(t *testing.T) {
	s := openTestStore(t)
	ids := map[int][16]byte{}
	for i, b := range [][2]byte{{0xab, 0x10}, {0xab, 0x1f}, {0xab, 0x20}, {0xac, 0x00}, {0x0a, 0xbb}} {
		var id [16]byte
		id[0], id[1], id[15] = b[0], b[1], byte(i+1)
		ids[i+1] = id
	}
	mustUpdate(t, s, func(tx *Tx) error {
		for _, id := range ids {
			if err := tx.PutResult(Result{CommandID: id, Peer: "bob", Status: "sent"}); err != nil {
				return err
			}
		}
		return nil
	})
	mustView(t, s, func(tx *Tx) error {
		for prefix, want := range map[string][]int{
			"a": {1, 2, 3, 4}, "ab": {1, 2, 3}, "AB1": {1, 2}, "ab1f": {2}, "ab2": {3}, "ab3": nil, "0": {5},
			"0abb": {5}, "f": nil, "ab10" + "000000000000000000000000001": nil,
		} {
			rs, err := tx.ResultsByPrefix(prefix)
			if got := resultIDs(rs); err != nil || !slices.Equal(got, want) {
				t.Errorf("ResultsByPrefix(%q) = %v, %v; want %v", prefix, got, err, want)
			}
		}
		full := ids[1]
		if rs, err := tx.ResultsByPrefix(string(hexOf(full[:]))); err != nil || len(rs) != 1 {
			t.Errorf("ResultsByPrefix(the whole id) = %v, %v", resultIDs(rs), err)
		}
		for _, bad := range []string{"", "g", "ab-", "0x1", string(hexOf(full[:])) + "0"} {
			if rs, err := tx.ResultsByPrefix(bad); !errors.Is(err, ErrInvalid) || rs != nil {
				t.Errorf("ResultsByPrefix(%q) = %v, %v; want ErrInvalid", bad, rs, err)
			}
		}
		return nil
	})
}

func hexOf(b []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return out
}

// TestAllowHome: an allow list set before the peer is pinned is held for its name and moves into
// the peer when it is pinned; afterwards the peer record is its only home.
func TestAllowHome(t *testing.T) {
	s := openTestStore(t, Options{Now: clockAt(t0)})
	carol, dave := testPeer(t, "carol", 3), testPeer(t, "dave", 4)
	mustUpdate(t, s, func(tx *Tx) error {
		for _, err := range []error{
			tx.PutAllow("carol", []string{"df", "uptime"}),
			tx.PutAllow("dave", []string{"df"}),
			tx.PutAllow("erin", []string{"df"}),
			tx.PutAllow("erin", nil), // removes the held list
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	mustUpdate(t, s, func(tx *Tx) error {
		if got, err := tx.Allow("carol"); err != nil || !slices.Equal(got, []string{"df", "uptime"}) {
			t.Errorf("Allow(carol) before pinning = %q, %v", got, err)
		}
		if got, err := tx.Allow("erin"); err != nil || got != nil {
			t.Errorf("Allow(erin) = %q, %v; want nil", got, err)
		}
		carol.Allow = nil // pinned the way pairing does: the held list is taken over
		dave.Allow = []string{"reboot"}
		if err := tx.PutPeer(carol); err != nil {
			return err
		}
		if err := tx.PutPeer(dave); err != nil { // an explicit list wins, the held one goes
			return err
		}
		return nil
	})
	mustUpdate(t, s, func(tx *Tx) error {
		for name, want := range map[string][]string{"carol": {"df", "uptime"}, "dave": {"reboot"}} {
			p, _, err := tx.Peer(name)
			if err != nil || !slices.Equal(p.Allow, want) {
				t.Errorf("Peer(%s).Allow = %q, %v; want %q", name, p.Allow, err, want)
			}
		}
		if n := len(snapshotBucket(t, tx, bAllowUnpinned)); n != 0 {
			t.Errorf("%d allow lists still held after pinning", n)
		}
		if err := tx.PutAllow("carol", []string{"true"}); err != nil {
			return err
		}
		if p, _, err := tx.Peer("carol"); err != nil || !slices.Equal(p.Allow, []string{"true"}) || !p.AddedAt.Equal(carol.AddedAt) {
			t.Errorf("after PutAllow: %+v, %v", p, err)
		}
		return nil
	})
}

func snapshotBucket(t *testing.T, tx *Tx, name []byte) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	_ = tx.bucket(name).ForEach(func(k, v []byte) error { m[string(k)] = clone(v); return nil })
	return m
}

// TestOwedAcks: notes list by UIDVALIDITY then UID, may be deleted while listed, and deleting a
// missing one is not an error.
func TestOwedAcks(t *testing.T) {
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for _, a := range []OwedAck{{"INBOX", 2, 1}, {"INBOX", 1, 300}, {"Other Box", 1, 2}} {
			if err := tx.PutOwedAck(a); err != nil {
				return err
			}
		}
		return tx.DeleteOwedAck(9, 9)
	})
	mustUpdate(t, s, func(tx *Tx) error {
		var got []OwedAck
		if err := tx.ForEachOwedAck(func(a OwedAck) error {
			got = append(got, a)
			return tx.DeleteOwedAck(a.UIDValidity, a.UID)
		}); err != nil {
			return err
		}
		if want := []OwedAck{{"Other Box", 1, 2}, {"INBOX", 1, 300}, {"INBOX", 2, 1}}; !reflect.DeepEqual(got, want) {
			t.Errorf("owed acks %+v, want %+v", got, want)
		}
		return tx.ForEachOwedAck(func(a OwedAck) error { t.Errorf("left after deleting: %+v", a); return nil })
	})
}
