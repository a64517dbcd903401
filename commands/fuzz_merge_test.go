package commands

// FuzzMergeSysInfo: a controller merges each status report's sysinfo delta into the state it
// kept of the peer. Arbitrary base and delta JSON must not panic; an error is a *DecodeError and
// comes with the zero SysInfo; a success is a valid SysInfo that its own members give back
// unchanged (merged into the zero state), and merging nothing into it changes nothing. Run with:
//
//	go test -run '^$' -fuzz '^FuzzMergeSysInfo$' -fuzztime 60s ./commands/

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func FuzzMergeSysInfo(f *testing.F) {
	base := SysInfo{Hostname: "bob", OS: "linux", Kernel: "6.1.0", Arch: "amd64", Version: "1.2", GoVersion: "go1.26",
		Uptime: time.Hour, Load1: 0.5, Load5: 0.25, NumCPU: 4, MemTotal: 8 << 30, MemAvailable: 1 << 30,
		Disks: []Disk{{Mount: "/", Total: 100, Free: 40}}}
	baseJSON, err := json.Marshal(base)
	if err != nil {
		f.Fatal(err)
	}
	whole, err := json.Marshal(SysInfoMembers(base))
	if err != nil {
		f.Fatal(err)
	}
	for _, delta := range []string{
		`{}`, string(whole), `{"load1":1.5,"load5":0}`, `{"load1":"1"}`, `{"cpu_temp":1}`, `{"load1":1e999}`, `{"load1":-0.0}`,
		`{"uptime":9223372036854775807}`, `{"uptime":1e300}`, `{"uptime":-1}`, `{"num_cpu":9223372036854775808}`,
		`{"mem_total":18446744073709551615}`, `{"mem_total":18446744073709551616}`, `{"mem_available":1.5}`,
		`{"disks":null}`, `{"disks":[]}`, `{"disks":[{"mount":""}]}`, `{"disks":[{"mount":"/","total":18446744073709551615,"free":18446744073709551615}]}`,
		`{"hostname":"\ud800"}`, `{"hostname":null}`, `{"os":"a\u0000b"}`,
	} {
		f.Add(baseJSON, []byte(delta))
	}
	f.Add([]byte(`{}`), []byte(`{}`))
	f.Add([]byte(`{"uptime":-1}`), []byte(`{"uptime":0}`))
	f.Add([]byte(`{"load1":-1}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, baseRaw, deltaRaw []byte) {
		var base SysInfo
		var delta map[string]json.RawMessage
		if json.Unmarshal(baseRaw, &base) != nil || json.Unmarshal(deltaRaw, &delta) != nil {
			return
		}
		got, err := MergeSysInfo(base, delta)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || !reflect.DeepEqual(got, SysInfo{}) {
				t.Fatalf("MergeSysInfo(%q, %q) = %+v, %v: want the zero SysInfo and a *DecodeError", baseRaw, deltaRaw, got, err)
			}
			return
		}
		if err := validateSysInfo(&got); err != nil {
			t.Fatalf("MergeSysInfo(%q, %q) = %+v, which is not valid: %v", baseRaw, deltaRaw, got, err)
		}
		again, err := MergeSysInfo(got, nil)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("MergeSysInfo(%q, %q) = %+v; merging nothing into it gives %+v, %v", baseRaw, deltaRaw, got, again, err)
		}
		back, err := MergeSysInfo(SysInfo{}, SysInfoMembers(got))
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Fatalf("MergeSysInfo(%q, %q) = %+v; its members give back %+v, %v", baseRaw, deltaRaw, got, back, err)
		}
	})
}
