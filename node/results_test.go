package node

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/keystore"
)

// TestRecentResults: the most recent results come newest first, cut at the limit, of one peer
// or of all, through the node and through its control socket alike; the limit is kept within
// 1 and MaxRecentResults.
func TestRecentResults(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	t0 := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	err := l.alice.store.Update(func(tx *keystore.Tx) error {
		for i := range 10 {
			r := keystore.Result{Peer: "bob", Status: StatusDone, Sent: t0.Add(time.Duration(i) * time.Minute)}
			if i%3 == 0 {
				r.Peer = "carol"
			}
			r.CommandID[15] = byte(i + 1)
			if err := tx.PutResult(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.alice.ListenControl(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := DialControl(l.dirs["alice"])
	if err != nil {
		t.Fatal(err)
	}
	for _, api := range []struct {
		name string
		api  API
	}{{"node", l.alice}, {"control socket", cl}} {
		for _, c := range []struct {
			peer  string
			limit int
			want  []int
		}{
			{"", 3, []int{10, 9, 8}},
			{"bob", 3, []int{9, 8, 6}},
			{"carol", 100, []int{10, 7, 4, 1}},
			{"", 0, []int{10}},
			{"nobody", 5, nil},
		} {
			rs, err := api.api.RecentResults(ctx, c.peer, c.limit)
			var got []int
			for _, r := range rs {
				got = append(got, int(r.CommandID[15]))
				if c.peer != "" && r.Peer != c.peer {
					t.Errorf("%s: RecentResults(%q) gave %s's result", api.name, c.peer, r.Peer)
				}
			}
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("%s: RecentResults(%q, %d) = %v, %v; want %v", api.name, c.peer, c.limit, got, err, c.want)
			}
		}
	}
}
