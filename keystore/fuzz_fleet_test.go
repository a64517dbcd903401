package keystore

// Fuzz targets for the decoders of the fleet records (issue 11): peer_tags, peer_state,
// report_to, schedules and schedule_runs. As in fuzz_test.go: no panic; an error wraps
// ErrCorrupt and comes with the zero value; a success is encoded the way the store writes it
// (its Put method's normalisation, then JSON), and that encoding decodes under the same key to a
// value that encodes to the same bytes again. Run one with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzDecodeSchedule$' -fuzztime 60s ./keystore/

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"
)

// fleetFuzzStore is a Store holding a few records of each fleet bucket, written through the
// public API.
func fleetFuzzStore(f *testing.F) *Store {
	s := openTestStore(f, Options{Now: clockAt(t0)})
	east := time.FixedZone("east", 5*3600)
	mustUpdate(f, s, func(tx *Tx) error {
		sched := Schedule{Name: "nightly", Target: "@web,db1", Command: "exec", Argv: []string{"df", "-h", "/"}, Timeout: time.Minute,
			Cron: "0 3 * * *", Jitter: 10 * time.Minute, OnFailure: "logger -t sealpost", Created: t0,
			Slot: t0.Add(time.Hour), Due: t0.Add(time.Hour + time.Minute).In(east)}
		run := ScheduleRun{Schedule: "nightly", Fired: t0, Slot: t0.Add(-time.Second), Deadline: t0.Add(24 * time.Hour).In(east),
			Peers: []ScheduleRunPeer{{Peer: "bob", ID: "00112233445566778899aabbccddeeff", Answered: true, Status: "done", Outcome: "exited", ExitCode: 1},
				{Peer: "carol", Error: "not paired yet: nothing sent"}},
			Done: true, Judged: t0.Add(time.Minute), Failed: true, Hook: HookFailed, HookError: "exit status 1"}
		for _, err := range []error{
			tx.PutPeerTags("bob", []string{"web", "eu"}),
			tx.PutPeerTags("carol.example", []string{"a-1", "b_2", "c.3"}),
			tx.PutPeerState(PeerState{Name: "bob", SysInfo: json.RawMessage(`{"hostname":"bob","load1":0.5,"disks":[]}`), SysInfoAt: t0.In(east),
				RoundTrip: 1500 * time.Millisecond, PingAt: t0, ReportEvery: 15 * time.Minute, LastReport: t0, ReportSeq: 7,
				Report: json.RawMessage(`{"version":"1.2","queue":0}`)}),
			tx.PutPeerState(PeerState{Name: "carol", ReportEvery: time.Minute, ReportAsk: true, MaxOutput: 10 << 30}),
			tx.PutReportTo(ReportTo{Name: "alice", Every: 15 * time.Minute, NextDue: t0.In(east), Seq: 3, SentID: tid(3),
				SentState: json.RawMessage(`{"os":"x"}`), AckedSeq: 2, AckedState: json.RawMessage(`{}`), AckedAt: t0.Add(-time.Hour)}),
			tx.PutReportTo(ReportTo{Name: "dave", Every: time.Second, NextDue: t0}),
			tx.PutSchedule(sched),
			tx.PutSchedule(Schedule{Name: "often", Target: "bob", Command: "ping", Every: 2 * time.Second, Created: t0, Slot: t0, Due: t0}),
			tx.PutScheduleRun(run),
			tx.PutScheduleRun(ScheduleRun{Schedule: "often", Fired: t0.Add(time.Nanosecond), Manual: true, Error: "no peer has tag web"}),
		} {
			if err != nil {
				return err
			}
		}
		sched.Pending = []time.Time{t0}
		return tx.PutSchedule(sched)
	})
	return s
}

// fuzzRoundTrip checks a decoder's success: norm is what the record's Put method does before
// encoding. The value encodes; the encoding decodes under k; and that value encodes the same.
func fuzzRoundTrip[T any](t *testing.T, what string, k, v []byte, got T, decode func(k, v []byte) (T, error), norm func(T) T) {
	t.Helper()
	raw, err := json.Marshal(norm(got))
	if err != nil {
		t.Fatalf("%s(%q, %q) = %+v, which the store cannot encode: %v", what, k, v, got, err)
	}
	back, err := decode(k, raw)
	if err != nil {
		t.Fatalf("%s(%q, %q) = %+v; encoded as %q it does not decode: %v", what, k, v, got, raw, err)
	}
	again, err := json.Marshal(norm(back))
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("%s(%q, %q) = %+v, encoded as %q; that decodes to %+v, encoded as %q (%v)", what, k, v, got, raw, back, again, err)
	}
}

// fuzzRejected checks a decoder's error: it wraps ErrCorrupt and comes with the zero value.
func fuzzRejected[T any](t *testing.T, what string, k, v []byte, got T, err error) {
	t.Helper()
	var zero T
	if !errors.Is(err, ErrCorrupt) || !reflect.DeepEqual(got, zero) {
		t.Fatalf("%s(%q, %q) = %+v, %v: want the zero value and ErrCorrupt", what, k, v, got, err)
	}
}

func FuzzDecodeTags(f *testing.F) {
	addBucketSeeds(f, fleetFuzzStore(f), bPeerTags)
	for _, v := range []string{`null`, `[]`, `["web","web"]`, `["eu","web"]`, `["web","eu"]`, `["Web"]`, `["-a"]`, `["a",1]`, `{"a":1}`, `["\u00e9"]`} {
		f.Add([]byte("bob"), []byte(v))
	}
	f.Add([]byte("a b"), []byte(`["web"]`))
	f.Add([]byte{}, []byte(`["web"]`))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		tags, err := decodeTags(k, v)
		if err != nil {
			fuzzRejected(t, "decodeTags", k, v, tags, err)
			return
		}
		if !slices.IsSorted(tags) || len(slices.Compact(slices.Clone(tags))) != len(tags) {
			t.Fatalf("decodeTags(%q, %q) = %q, not sorted and unique as PutPeerTags keeps them", k, v, tags)
		}
		fuzzRoundTrip(t, "decodeTags", k, v, tags, decodeTags, func(tags []string) []string {
			return slices.Compact(slices.Sorted(slices.Values(tags)))
		})
	})
}

func FuzzDecodePeerState(f *testing.F) {
	addBucketSeeds(f, fleetFuzzStore(f), bPeerState)
	for _, v := range []string{`{"name":"bob"}`, `{"name":"bob","sysinfo":null}`, `{"name":"bob","sysinfo":{ "a" : [ 1 ] }}`,
		`{"name":"bob","report":"x"}`, `{"name":"bob","round_trip":-1}`, `{"name":"bobby"}`,
		`{"name":"bob","report_seq":18446744073709551615,"report_every":9223372036854775807}`, `null`, `[]`} {
		f.Add([]byte("bob"), []byte(v))
	}
	f.Fuzz(func(t *testing.T, k, v []byte) {
		p, err := decodePeerState(k, v)
		if err != nil {
			fuzzRejected(t, "decodePeerState", k, v, p, err)
			return
		}
		fuzzRoundTrip(t, "decodePeerState", k, v, p, decodePeerState, func(p PeerState) PeerState {
			p.SysInfoAt, p.PingAt, p.LastReport = p.SysInfoAt.UTC(), p.PingAt.UTC(), p.LastReport.UTC() // as PutPeerState
			return p
		})
	})
}

func FuzzDecodeReportTo(f *testing.F) {
	addBucketSeeds(f, fleetFuzzStore(f), bReportTo)
	for _, v := range []string{`{"name":"alice","every":1}`, `{"name":"alice","every":0}`, `{"name":"alice","every":1,"seq":1,"acked_seq":2}`,
		`{"name":"alice","every":1,"sent_id":[1,2,3]}`, `{"name":"alice","every":1,"sent_state":{ }}`,
		`{"name":"alice","every":1,"acked_state":null}`, `null`} {
		f.Add([]byte("alice"), []byte(v))
	}
	f.Fuzz(func(t *testing.T, k, v []byte) {
		r, err := decodeReportTo(k, v)
		if err != nil {
			fuzzRejected(t, "decodeReportTo", k, v, r, err)
			return
		}
		fuzzRoundTrip(t, "decodeReportTo", k, v, r, decodeReportTo, func(r ReportTo) ReportTo {
			r.NextDue, r.AckedAt = r.NextDue.UTC(), r.AckedAt.UTC() // as PutReportTo
			return r
		})
	})
}

func FuzzDecodeSchedule(f *testing.F) {
	addBucketSeeds(f, fleetFuzzStore(f), bSchedules)
	for _, v := range []string{
		`{"name":"x","target":"bob","command":"ping","every":1000000000,"slot":"2031-01-01T00:00:00Z","due":"2031-01-01T00:00:00Z"}`,
		`{"name":"x","target":"bob","command":"ping","every":1,"slot":"2031-01-01T00:00:00Z","due":"2031-01-01T00:00:00Z"}`,
		`{"name":"x","target":"bob","command":"ping","cron":"* * * * *","every":1000000000,"slot":"2031-01-01T00:00:00Z","due":"2031-01-01T00:00:00Z"}`,
		`{"name":"x","target":"bob","command":"ping","cron":"* * * * *","slot":"2031-01-01T00:00:00Z","due":"2030-01-01T00:00:00Z"}`,
		`{"name":"x","target":"bob","command":"ping","cron":"* * * * *","slot":"2031-01-01T00:00:00Z","due":"2031-01-01T00:00:00Z","pending":["2031-01-01T00:00:00Z","2031-01-01T01:00:00+01:00"]}`,
		`{"name":"x","target":"bob","command":"ping","cron":"* * * * *","slot":"2031-01-01T00:00:00Z","due":"2031-01-01T00:00:00Z","pending":["2031-01-02T00:00:00Z","2031-01-01T00:00:00Z"]}`,
		`{"name":"x","target":"bob","command":"ping","every":2000000000,"jitter":2000000000,"slot":"2031-01-01T00:00:00Z","due":"2031-01-01T00:00:00Z"}`,
		`{"name":"x","target":"bob","command":"ping","every":1000000000,"on_failure":"a\nb","slot":"0000-01-01T00:00:00+01:00","due":"0000-01-01T00:00:00+01:00"}`,
		`{"name":"y"}`, `null`,
	} {
		f.Add([]byte("x"), []byte(v))
	}
	f.Fuzz(func(t *testing.T, k, v []byte) {
		s, err := decodeSchedule(k, v)
		if err != nil {
			fuzzRejected(t, "decodeSchedule", k, v, s, err)
			return
		}
		fuzzRoundTrip(t, "decodeSchedule", k, v, s, decodeSchedule, func(s Schedule) Schedule { // as PutSchedule
			s.Created, s.Slot, s.Due, s.LastFired = s.Created.UTC(), s.Slot.UTC(), s.Due.UTC(), s.LastFired.UTC()
			s.Pending = slices.Clone(s.Pending)
			for i := range s.Pending {
				s.Pending[i] = s.Pending[i].UTC()
			}
			slices.SortFunc(s.Pending, time.Time.Compare)
			s.Pending = slices.CompactFunc(s.Pending, time.Time.Equal)
			return s
		})
	})
}

func FuzzDecodeScheduleRun(f *testing.F) {
	addBucketSeeds(f, fleetFuzzStore(f), bScheduleRuns)
	k := runKey("x", t0)
	for _, v := range []string{
		`{"schedule":"x","fired":"2031-03-04T05:06:07.000000008Z"}`,
		`{"schedule":"x","fired":"2031-03-04T10:06:07.000000008+05:00","peers":null}`,
		`{"schedule":"x","fired":"2031-03-04T05:06:07Z"}`,
		`{"schedule":"y","fired":"2031-03-04T05:06:07.000000008Z"}`,
		`{"schedule":"x","fired":"2031-03-04T05:06:07.000000008Z","hook":"maybe"}`,
		`{"schedule":"x","fired":"2031-03-04T05:06:07.000000008Z","peers":[{"peer":"bob","id":"00112233445566778899AABBCCDDEEFF"}]}`,
		`{"schedule":"x","fired":"2031-03-04T05:06:07.000000008Z","peers":[{"peer":"","id":""}]}`,
	} {
		f.Add(k, []byte(v))
	}
	f.Add([]byte("x"), []byte(`{"schedule":"x"}`))
	f.Add(append([]byte("x\x00"), make([]byte, timeKeyLen)...), []byte(`{"schedule":"x","fired":"0001-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		r, err := decodeScheduleRun(k, v)
		if err != nil {
			fuzzRejected(t, "decodeScheduleRun", k, v, r, err)
			return
		}
		if !bytes.Equal(runKey(r.Schedule, r.Fired), k) {
			t.Fatalf("decodeScheduleRun(%q, %q) = run of %q at %s, which the store keeps under %q", k, v, r.Schedule, r.Fired, runKey(r.Schedule, r.Fired))
		}
		fuzzRoundTrip(t, "decodeScheduleRun", k, v, r, decodeScheduleRun, func(r ScheduleRun) ScheduleRun { // as PutScheduleRun
			r.Fired, r.Slot, r.Deadline, r.Judged = r.Fired.UTC(), r.Slot.UTC(), r.Deadline.UTC(), r.Judged.UTC()
			return r
		})
	})
}
