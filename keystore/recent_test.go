package keystore

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// TestResultsNewestFirst: the results come newest first (ties by command id, descending), only
// the given peer's when one is named, and the walk stops as soon as fn says so: fn sees no
// result past the one where it stopped, and an error from fn comes back.
func TestResultsNewestFirst(t *testing.T) {
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for i, r := range []Result{
			{CommandID: tid(1), Peer: "a", Status: "done", Sent: t0.Add(time.Minute)},
			{CommandID: tid(3), Peer: "b", Status: "sent", Sent: t0},
			{CommandID: tid(2), Peer: "a", Status: "sent", Sent: t0},
			{CommandID: tid(4), Peer: "a", Status: "sent", Sent: t0.Add(-time.Hour)},
			{CommandID: tid(5), Peer: "b", Status: "sent", Sent: t0.Add(-2 * time.Hour)},
		} {
			r.Stdout = []byte{byte(i)}
			if err := tx.PutResult(r); err != nil {
				return err
			}
		}
		return nil
	})
	walk := func(peer string, limit int) (got []int) {
		mustView(t, s, func(tx *Tx) error {
			return tx.ResultsNewestFirst(peer, func(r Result) (bool, error) {
				if r.Peer != peer && peer != "" {
					t.Errorf("ResultsNewestFirst(%q) gave %s's result", peer, r.Peer)
				}
				got = append(got, int(r.CommandID[15]))
				return len(got) < limit, nil
			})
		})
		return got
	}
	for _, c := range []struct {
		peer  string
		limit int
		want  []int
	}{
		{"", 100, []int{1, 3, 2, 4, 5}},
		{"", 2, []int{1, 3}},
		{"", 1, []int{1}},
		{"a", 100, []int{1, 2, 4}},
		{"a", 2, []int{1, 2}},
		{"b", 100, []int{3, 5}},
		{"nobody", 100, nil},
	} {
		if got := walk(c.peer, c.limit); !slices.Equal(got, c.want) {
			t.Errorf("ResultsNewestFirst(%q) stopping after %d = %v, want %v", c.peer, c.limit, got, c.want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := s.View(func(tx *Tx) error {
		return tx.ResultsNewestFirst("", func(Result) (bool, error) { calls++; return true, stop })
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("ResultsNewestFirst with fn failing = %v after %d calls, want fn's error after 1", err, calls)
	}
}
