package keystore

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// A report_to row round-trips, is checked on the way in, and goes with DeleteReportTo; the store
// passes Check with it (openTestStore checks at cleanup).
func TestReportTo(t *testing.T) {
	s := openTestStore(t)
	due := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	want := ReportTo{Name: "alice", Every: 15 * time.Minute, NextDue: due, Seq: 3, SentID: tid(1),
		SentState: json.RawMessage(`{"a":1}`), AckedSeq: 2, AckedState: json.RawMessage(`{"a":0}`), AckedAt: due}
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutReportTo(want) })
	mustView(t, s, func(tx *Tx) error {
		got, ok, err := tx.ReportTo("alice")
		if err != nil || !ok || got.Seq != 3 || got.SentID != tid(1) || string(got.AckedState) != `{"a":0}` {
			t.Errorf("ReportTo(alice) = %+v, %v, %v", got, ok, err)
		}
		n := 0
		return tx.ForEachReportTo(func(ReportTo) error { n++; return nil })
	})
	for _, bad := range []ReportTo{{Name: "alice"}, {Name: "alice", Every: time.Second, AckedSeq: 2, Seq: 1}, {Name: "alice", Every: time.Second, SentState: json.RawMessage("{")}} {
		err := s.Update(func(tx *Tx) error { return tx.PutReportTo(bad) })
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("PutReportTo(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.DeleteReportTo("alice") })
	mustView(t, s, func(tx *Tx) error {
		if _, ok, err := tx.ReportTo("alice"); ok || err != nil {
			t.Errorf("after DeleteReportTo: %v, %v", ok, err)
		}
		return nil
	})
}
