package commands

import (
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"
)

// A delta carries exactly the members that changed, zero values included, and merging it into
// the old state gives the new one.
func TestReportDeltaMerge(t *testing.T) {
	t.Parallel()
	old := SysInfo{Hostname: "bob", OS: "linux", Load1: 0.5, Load5: 0.25, Uptime: time.Hour,
		Disks: []Disk{{Mount: "/", Total: 100, Free: 40}}, NumCPU: 4}
	cur := old
	cur.Load1, cur.Load5 = 1.5, 0 // load5 dropped to zero: it must still travel
	delta := ChangedMembers(SysInfoMembers(old), SysInfoMembers(cur))
	if got := slices.Sorted(maps.Keys(delta)); !slices.Equal(got, []string{"load1", "load5"}) {
		t.Fatalf("ChangedMembers = %q, want load1 and load5", got)
	}
	merged, err := MergeSysInfo(old, delta)
	if err != nil || !reflect.DeepEqual(merged, cur) {
		t.Fatalf("MergeSysInfo = %+v, %v, want %+v", merged, err, cur)
	}
	if d := ChangedMembers(SysInfoMembers(cur), SysInfoMembers(cur)); d != nil {
		t.Errorf("ChangedMembers of an unchanged state = %v, want nil", d)
	}
	if whole := ChangedMembers(nil, SysInfoMembers(SysInfo{})); len(whole) != len(sysinfoZero) {
		t.Errorf("ChangedMembers(nil, all) has %d members, want all %d", len(whole), len(sysinfoZero))
	}
	var de *DecodeError
	if _, err := MergeSysInfo(old, map[string]json.RawMessage{"cpu_temp": json.RawMessage("1")}); !errors.As(err, &de) {
		t.Errorf("MergeSysInfo with an unknown member = %v, want a *DecodeError", err)
	}
}

// A report request survives encoding and decoding with its members canonical, and encoding
// does not change the caller's report.
func TestReportRequestRoundTrip(t *testing.T) {
	t.Parallel()
	q, v := int64(0), "1.2"
	rep := &Report{Seq: 2, Base: 1, SysInfo: map[string]json.RawMessage{"load1": json.RawMessage("1.50")}, Queue: &q, Version: &v}
	b, err := EncodeRequest(Request{Name: CmdReport, Report: rep})
	if err != nil {
		t.Fatal(err)
	}
	if string(rep.SysInfo["load1"]) != "1.50" {
		t.Errorf("EncodeRequest changed the caller's report: %s", rep.SysInfo["load1"])
	}
	got, err := DecodeRequest(b)
	if err != nil || got.Report == nil || string(got.Report.SysInfo["load1"]) != "1.5" || *got.Report.Queue != 0 || *got.Report.Version != v {
		t.Fatalf("DecodeRequest(%s) = %+v, %v", b, got.Report, err)
	}
}

// A report's uptime and loads are bounded when it is decoded (the uptime 2^63-808 of THREATS
// row 30 overflowed when the controller advanced it), and a merge whose base is out of those
// bounds is a *DecodeError, not a value.
func TestReportBounds(t *testing.T) {
	t.Parallel()
	for _, body := range []string{
		`{"name":"report","report":{"seq":1,"sysinfo":{"uptime":9223372036854775000}}}`,
		`{"name":"report","report":{"seq":1,"sysinfo":{"load15":1e7}}}`,
		`{"name":"report","report":{"seq":1,"sysinfo":{"load1":1e400}}}`,
	} {
		var de *DecodeError
		if _, err := DecodeRequest([]byte(body)); !errors.As(err, &de) {
			t.Errorf("DecodeRequest(%s) = %v, want a *DecodeError", body, err)
		}
	}
	if _, err := DecodeRequest([]byte(`{"name":"report","report":{"seq":1,"sysinfo":{"uptime":3153600000000000000,"load1":1000000}}}`)); err != nil {
		t.Errorf("a report at the bounds: %v", err)
	}
	var de *DecodeError
	if _, err := MergeSysInfo(SysInfo{Uptime: MaxUptime + 1}, nil); !errors.As(err, &de) {
		t.Errorf("MergeSysInfo of a base above MaxUptime = %v, want a *DecodeError", err)
	}
	if si, err := MergeSysInfo(SysInfo{Uptime: MaxUptime + 1}, map[string]json.RawMessage{"uptime": json.RawMessage("5")}); err != nil || si.Uptime != 5 {
		t.Errorf("MergeSysInfo replacing an out-of-bounds uptime = %+v, %v", si, err)
	}
}
