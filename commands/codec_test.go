package commands

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// vector is one testdata/vectors/*.vec file (testdata/README.md).
type vector struct {
	name    string
	expect  string // "ok" or "error"
	typ     string // "request" or "result"
	field   string // for errors: the DecodeError's Field
	payload []byte
}

// requiredVectors must exist: losing them fails the tests instead of shrinking the fuzz seeds.
var requiredVectors = []string{
	"request_ping", "request_exec", "request_exec_metacharacters", "request_unknown_member",
	"request_member_case", "request_duplicate_member", "request_second_value", "request_trailing_garbage",
	"request_unknown_name", "request_too_many_args", "request_invalid_utf8",
	"result_exec", "result_sysinfo", "result_unknown_member", "result_stdout_nonzero_bits",
	"result_too_many_disks", "result_trailing",
	"result_outcome_exited", "result_outcome_signaled", "result_outcome_timed_out", "result_outcome_not_found",
	"result_outcome_unknown_token", "result_signal_high",
	"request_report_checks", "request_report_checks_removed", "request_report_checks_unknown_member",
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	files, err := filepath.Glob("testdata/vectors/*.vec")
	if err != nil {
		t.Fatal(err)
	}
	var out []vector
	names := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		head, payload, ok := bytes.Cut(b, []byte("\n\n"))
		if !ok {
			t.Fatalf("%s: no blank line after the header", f)
		}
		v := vector{name: strings.TrimSuffix(filepath.Base(f), ".vec"), payload: payload}
		for _, line := range strings.Split(string(head), "\n") {
			key, val, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("%s: header line %q is not \"key: value\"", f, line)
			}
			switch key {
			case "expect":
				v.expect = val
			case "type":
				v.typ = val
			case "field":
				v.field = strings.TrimPrefix(val, "-")
			case "comment":
			default:
				t.Fatalf("%s: unknown header %q", f, key)
			}
		}
		if (v.expect != "ok" && v.expect != "error") || (v.typ != "request" && v.typ != "result") {
			t.Fatalf("%s: bad header: expect %q, type %q", f, v.expect, v.typ)
		}
		names[v.name] = true
		out = append(out, v)
	}
	for _, n := range requiredVectors {
		if !names[n] {
			t.Fatalf("test vector testdata/vectors/%s.vec is missing", n)
		}
	}
	return out
}

// decodeVector runs a payload through its decoder, then (on success) through the encoder and
// the decoder again, and returns the first decoded value, the error, and whether the value
// survived the round trip.
func decodeVector(typ string, payload []byte) (value any, err error, stable bool) {
	if typ == "request" {
		r, err := DecodeRequest(payload)
		if err != nil {
			return r, err, reflect.DeepEqual(r, Request{})
		}
		enc, err := EncodeRequest(r)
		if err != nil {
			return r, err, false
		}
		r2, err := DecodeRequest(enc)
		return r, err, err == nil && reflect.DeepEqual(r, r2)
	}
	r, err := DecodeResult(payload)
	if err != nil {
		return r, err, reflect.DeepEqual(r, Result{})
	}
	enc, err := EncodeResult(r)
	if err != nil {
		return r, err, false
	}
	r2, err := DecodeResult(enc)
	return r, err, err == nil && reflect.DeepEqual(r, r2)
}

func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		got, err, stable := decodeVector(v.typ, v.payload)
		var de *DecodeError
		switch {
		case v.expect == "ok" && (err != nil || !stable):
			t.Errorf("%s: decode %q = %+v, %v (round trip stable: %v), want success", v.name, v.payload, got, err, stable)
		case v.expect == "error" && !errors.As(err, &de):
			t.Errorf("%s: decode %q = %+v, %v, want a *DecodeError for %q", v.name, v.payload, got, err, v.field)
		case v.expect == "error" && (de.Field != v.field || !stable):
			t.Errorf("%s: decode %q = %v (field %q; zero value: %v), want field %q", v.name, v.payload, err, de.Field, stable, v.field)
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	t.Parallel()
	cet := time.FixedZone("CET", 3600)
	sent := time.Date(2026, 3, 1, 13, 0, 0, 123456789, cet)
	long := strings.Repeat("a", MaxArgBytes)
	cases := []Request{
		{Name: CmdPing},
		{Name: CmdPing, Sent: time.Now()}, // monotonic reading and local zone dropped
		{Name: CmdSysinfo, Timeout: time.Second, Sent: sent},
		{Name: CmdExec, Argv: []string{"df", "-h"}, Timeout: 30 * time.Second},
		{Name: CmdExec, Argv: []string{"x", "", " ", "<&>", "\u2028", "\x01\x7f", "☃"}},
		{Name: CmdExec, Argv: []string{long}},
		{Name: CmdExec, Argv: make([]string, MaxArgs), Timeout: 1}, // argv[0] is set below
	}
	cases[len(cases)-1].Argv[0] = "prog"
	for _, want := range cases {
		b, err := EncodeRequest(want)
		if err != nil {
			t.Errorf("EncodeRequest(%+v) = %v", want, err)
			continue
		}
		got, err := DecodeRequest(b)
		if err != nil || !equalRequests(got, want) || got.Sent.Location() != time.UTC {
			t.Errorf("DecodeRequest(EncodeRequest(%+v)) = %+v, %v, want the same request in UTC", want, got, err)
		}
	}
}

func TestResultRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []Result{
		{},
		{ExitCode: -1, Error: "program not found: /x", Started: time.Now()},
		{ExitCode: 3, Stdout: []byte("out\x00\xff"), Stderr: []byte("err"), StdoutTruncated: true, Duration: time.Second, Started: time.Unix(1e9, 5)},
		{ExitCode: maxExitCode, TimedOut: true},
		{ExitCode: 0, Undelivered: "refused by the mail server: 552 too big", Duration: time.Second},
		{Info: &SysInfo{Hostname: "h", Load1: 0.5, Load5: 1e-9, Load15: 123.456, MemTotal: 1 << 63, Disks: []Disk{{"/", 2, 1}}}},
		{Info: &SysInfo{}},
		{Outcome: OutcomeSignaled, ExitCode: -1, Signal: MaxSignal, Error: "killed by signal 127"},
		{Outcome: OutcomeTimedOut, ExitCode: -1, Signal: 9, TimedOut: true},
		{Outcome: OutcomeDenied, ExitCode: -1, Error: "denied"},
	}
	for _, want := range cases {
		b, err := EncodeResult(want)
		if err != nil {
			t.Errorf("EncodeResult(%+v) = %v", want, err)
			continue
		}
		got, err := DecodeResult(b)
		if err != nil || !equalResults(got, want) {
			t.Errorf("DecodeResult(EncodeResult(%+v)) = %+v, %v", want, got, err)
		}
	}
}

// Documents too big to keep as files: the size limits.
func TestDecodeSizeLimits(t *testing.T) {
	t.Parallel()
	arg := func(n int) string { return strings.Repeat("a", n) }
	reqJSON := func(args ...string) []byte {
		b, err := marshal(map[string]any{"name": "exec", "argv": args})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name    string
		payload []byte
		result  bool
		field   string // "" with ok: decodes
		ok      bool
	}{
		{"request at the limit", append(reqJSON("x", arg(MaxArgBytes)), bytes.Repeat([]byte(" "), MaxRequestSize-len(reqJSON("x", arg(MaxArgBytes))))...), false, "", true},
		{"request over the limit", bytes.Repeat([]byte(" "), MaxRequestSize+1), false, "", false},
		{"request padded over the limit", append(reqJSON("x"), bytes.Repeat([]byte(" "), MaxRequestSize)...), false, "", false},
		{"argument over the limit", reqJSON("x", arg(MaxArgBytes+1)), false, "argv[1]", false},
		{"two arguments at the limit", reqJSON("x", arg(MaxArgBytes), arg(MaxArgBytes)), false, "", false},
		// U+2028 is 3 bytes raw and 6 escaped: fits as received, not as re-encoded.
		{"request re-encodes over the limit", []byte(`{"name":"exec","argv":["x","` + strings.Repeat("\u2028", 10000) + `","` + strings.Repeat("\u2028", 10000) + `"]}`), false, "", false},
		{"result over the limit", bytes.Repeat([]byte(" "), MaxResultSize+1), true, "", false},
		{"stdout over the limit", []byte(`{"stdout":"` + strings.Repeat("AAAA", MaxOutputLimit/3+1) + `"}`), true, "stdout", false},
		{"stderr at the limit", []byte(`{"stderr":"` + strings.Repeat("AAAA", MaxOutputLimit/4) + `"}`), true, "", true},
	}
	for _, c := range cases {
		if strings.HasPrefix(c.name, "request re-encodes") && len(c.payload) > MaxRequestSize {
			t.Fatalf("%s: the payload is %d bytes; it must fit as received", c.name, len(c.payload))
		}
		typ := "request"
		if c.result {
			typ = "result"
		}
		got, err, stable := decodeVector(typ, c.payload)
		var de *DecodeError
		if c.ok {
			if err != nil || !stable {
				t.Errorf("%s: decode = %v (stable %v), want success", c.name, err, stable)
			}
		} else if !errors.As(err, &de) || de.Field != c.field || !stable {
			t.Errorf("%s: decode = %T %v (zero %v), want *DecodeError for field %q", c.name, got, err, stable, c.field)
		}
	}
}

// The result limits keep every valid Result within MaxResultSize: the largest one encodes and
// decodes.
func TestResultWorstCaseFits(t *testing.T) {
	t.Parallel()
	ctl := strings.Repeat("\x01", MaxInfoString) // each byte escapes to six
	disks := make([]Disk, MaxDisks)
	for i := range disks {
		disks[i] = Disk{Mount: strings.Repeat("\x01", MaxMountBytes), Total: 1<<64 - 1, Free: 1<<64 - 1}
	}
	r := Result{
		ExitCode: maxExitCode, Stdout: bytes.Repeat([]byte{0xff}, MaxOutputLimit), Stderr: bytes.Repeat([]byte{0xff}, MaxOutputLimit),
		StdoutTruncated: true, StderrTruncated: true, Duration: 1<<63 - 1, TimedOut: true,
		Outcome: OutcomeNotExecutable, Signal: MaxSignal, // the longest token
		Error: strings.Repeat("\x01", MaxErrorBytes), Undelivered: strings.Repeat("\x01", MaxErrorBytes), Started: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		Info: &SysInfo{Hostname: ctl, OS: ctl, Kernel: ctl, Arch: ctl, Version: ctl, GoVersion: ctl, Uptime: 1<<63 - 1,
			Load1: 1.7976931348623157e308, Load5: 1.7976931348623157e308, Load15: 1.7976931348623157e308,
			MemTotal: 1<<64 - 1, MemAvailable: 1<<64 - 1, Disks: disks, NumCPU: math.MaxInt},
	}
	b, err := EncodeResult(r)
	if err != nil {
		t.Fatalf("EncodeResult(worst case) = %v", err)
	}
	if len(b) > MaxResultSize {
		t.Fatalf("EncodeResult(worst case) = %d bytes, above MaxResultSize %d", len(b), MaxResultSize)
	}
	t.Logf("worst-case result: %d bytes of %d", len(b), MaxResultSize)
	if got, err := DecodeResult(b); err != nil || !reflect.DeepEqual(got, r) {
		t.Errorf("DecodeResult(EncodeResult(worst case)) = %v", err)
	}
}

func TestEncodeRefuses(t *testing.T) {
	t.Parallel()
	requests := []struct {
		r     Request
		field string
	}{
		{Request{Name: "shell"}, "name"},
		{Request{Name: CmdExec}, "argv"},
		{Request{Name: CmdExec, Argv: []string{"a", "\xff"}}, "argv[1]"},
		{Request{Name: CmdExec, Argv: []string{"a", "\x00"}}, "argv[1]"},
		{Request{Name: CmdPing, Timeout: -time.Second}, "timeout"},
		{Request{Name: CmdPing, Sent: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}, "sent"},
		{Request{Name: CmdExec, Argv: []string{"a", strings.Repeat("\x01", 20000)}}, ""}, // encodes above 64 KiB
	}
	for _, c := range requests {
		b, err := EncodeRequest(c.r)
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != c.field || b != nil {
			t.Errorf("EncodeRequest(%.80q) = %d bytes, %v, want a *DecodeError for %q", c.r.Argv, len(b), err, c.field)
		}
	}
	results := []struct {
		r     Result
		field string
	}{
		{Result{ExitCode: -2}, "exit_code"},
		{Result{Stdout: make([]byte, MaxOutputLimit+1)}, "stdout"},
		{Result{Error: "\xff"}, "error"},
		{Result{Duration: -1}, "duration"},
		{Result{Info: &SysInfo{Load1: -1}}, "sysinfo.load1"},
		{Result{Info: &SysInfo{Load15: nan()}}, "sysinfo.load15"},
		{Result{Info: &SysInfo{Disks: []Disk{{Mount: "/", Total: 1}, {Mount: ""}}}}, "sysinfo.disks[1].mount"},
		{Result{Started: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)}, "started"},
	}
	for _, c := range results {
		b, err := EncodeResult(c.r)
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != c.field || b != nil {
			t.Errorf("EncodeResult(%+v) = %d bytes, %v, want a *DecodeError for %q", c.r, len(b), err, c.field)
		}
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}

// maxExitCode is the largest exit code a Result may carry on this platform.
const maxExitCode = min(math.MaxUint32, math.MaxInt)
