package keystore

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func testSchedule(name string, at time.Time) Schedule {
	return Schedule{Name: name, Target: "@web", Command: "exec", Argv: []string{"true"}, Every: time.Hour,
		Created: at, Slot: at.Add(time.Hour), Due: at.Add(time.Hour)}
}

func TestSchedulesRoundTrip(t *testing.T) {
	s := openTestStore(t)
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	run := ScheduleRun{Schedule: "nightly", Fired: at, Slot: at, Deadline: at.Add(time.Hour),
		Peers: []ScheduleRunPeer{{Peer: "bob", ID: "00112233445566778899aabbccddeeff"}}}
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutSchedule(testSchedule("nightly", at)); err != nil {
			return err
		}
		if err := tx.PutSchedule(testSchedule("nightly2", at)); err != nil {
			return err
		}
		if err := tx.PutScheduleRun(run); err != nil {
			return err
		}
		if err := tx.PutScheduleRun(ScheduleRun{Schedule: "nightly2", Fired: at.Add(time.Minute)}); err != nil {
			return err
		}
		sc := testSchedule("nightly", at)
		sc.Pending = []time.Time{at}
		return tx.PutSchedule(sc)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		sc, ok, err := tx.Schedule("nightly")
		if err != nil || !ok || len(sc.Pending) != 1 || !sc.Pending[0].Equal(at) || sc.Argv[0] != "true" {
			return fmt.Errorf("Schedule(nightly) = %+v, %v, %v", sc, ok, err)
		}
		runs, err := tx.ScheduleRuns("nightly")
		if err != nil || len(runs) != 1 || runs[0].Peers[0].ID != run.Peers[0].ID {
			return fmt.Errorf("ScheduleRuns(nightly) = %+v, %v", runs, err)
		}
		last, ok, err := tx.LastScheduleRun("nightly")
		if err != nil || !ok || !last.Fired.Equal(at) {
			return fmt.Errorf("LastScheduleRun(nightly) = %+v, %v, %v", last, ok, err)
		}
		if last, ok, err := tx.LastScheduleRun("nightly2"); err != nil || !ok || !last.Fired.Equal(at.Add(time.Minute)) {
			return fmt.Errorf("LastScheduleRun(nightly2) = %+v, %v, %v", last, ok, err)
		}
		if _, ok, err := tx.LastScheduleRun("night"); err != nil || ok {
			return fmt.Errorf("LastScheduleRun(night) = %v, %v; want none", ok, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *Tx) error { return tx.DeleteSchedule("nightly") }); err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		runs, err := tx.ScheduleRuns("nightly")
		if len(runs) != 0 || err != nil {
			return fmt.Errorf("runs after DeleteSchedule: %v, %v", runs, err)
		}
		runs, err = tx.ScheduleRuns("nightly2")
		if len(runs) != 1 || err != nil {
			return fmt.Errorf("runs of the other schedule after DeleteSchedule: %v, %v", runs, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(func(tx *Tx) error { return tx.DeleteSchedule("nightly") }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("DeleteSchedule of a missing schedule = %v, want ErrNotFound", err)
	}
}

// TestScheduleHistoryBounded: the history keeps the newest MaxScheduleRuns runs, and never drops
// a pending one.
func TestScheduleHistoryBounded(t *testing.T) {
	s := openTestStore(t)
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutSchedule(testSchedule("often", at)); err != nil {
			return err
		}
		if err := tx.PutScheduleRun(ScheduleRun{Schedule: "often", Fired: at}); err != nil {
			return err
		}
		sc := testSchedule("often", at)
		sc.Pending = []time.Time{at} // the oldest stays pending
		if err := tx.PutSchedule(sc); err != nil {
			return err
		}
		for i := 1; i <= 3*MaxScheduleRuns; i++ {
			if err := tx.PutScheduleRun(ScheduleRun{Schedule: "often", Fired: at.Add(time.Duration(i) * time.Second)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		runs, err := tx.ScheduleRuns("often")
		if err != nil {
			return err
		}
		if len(runs) != MaxScheduleRuns || !runs[0].Fired.Equal(at) || !runs[len(runs)-1].Fired.Equal(at.Add(3*MaxScheduleRuns*time.Second)) {
			return fmt.Errorf("kept %d runs, %s to %s; want %d, the pending one and the newest", len(runs), runs[0].Fired, runs[len(runs)-1].Fired, MaxScheduleRuns)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestScheduleValidation(t *testing.T) {
	s := openTestStore(t)
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	bad := map[string]func(*Schedule){
		"no interval":      func(s *Schedule) { s.Every = 0 },
		"both":             func(s *Schedule) { s.Cron = "* * * * *" },
		"below 1s":         func(s *Schedule) { s.Every = time.Millisecond },
		"jitter too big":   func(s *Schedule) { s.Jitter = time.Hour },
		"no slot":          func(s *Schedule) { s.Slot, s.Due = time.Time{}, time.Time{} },
		"name with space":  func(s *Schedule) { s.Name = "a b" },
		"control in hook":  func(s *Schedule) { s.OnFailure = "echo\x1b[2J" },
		"pending, no run":  func(s *Schedule) { s.Pending = []time.Time{at} },
		"no command":       func(s *Schedule) { s.Command = "" },
		"target with a NL": func(s *Schedule) { s.Target = "bob\n" },
	}
	for what, mutate := range bad {
		sc := testSchedule("x", at)
		mutate(&sc)
		if err := s.Update(func(tx *Tx) error { return tx.PutSchedule(sc) }); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrNotFound) {
			t.Errorf("PutSchedule(%s) = %v, want ErrInvalid or ErrNotFound", what, err)
		}
	}
	err := s.Update(func(tx *Tx) error {
		return tx.PutScheduleRun(ScheduleRun{Schedule: "nobody", Fired: at})
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("PutScheduleRun of no schedule = %v, want ErrNotFound", err)
	}
	err = s.Update(func(tx *Tx) error {
		if err := tx.PutSchedule(testSchedule("x", at)); err != nil {
			return err
		}
		return tx.PutScheduleRun(ScheduleRun{Schedule: "x", Fired: at, Peers: []ScheduleRunPeer{{Peer: "bob", ID: "XYZ"}}})
	})
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("PutScheduleRun with a bad command id = %v, want ErrInvalid", err)
	}
}

// TestCheckScheduleRuns: Check finds a run without its schedule.
func TestCheckScheduleRuns(t *testing.T) {
	s := openTestStore(t)
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	if err := s.Update(func(tx *Tx) error {
		if err := tx.PutSchedule(testSchedule("x", at)); err != nil {
			return err
		}
		if err := tx.PutScheduleRun(ScheduleRun{Schedule: "x", Fired: at}); err != nil {
			return err
		}
		return tx.bucket(bSchedules).Delete([]byte("x")) // behind keystore's back
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check with an orphaned run = %v, want ErrCorrupt", err)
	}
	if err := s.Update(func(tx *Tx) error { return tx.bucket(bScheduleRuns).Delete(runKey("x", at)) }); err != nil {
		t.Fatal(err)
	}
}
