package main

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

var whereNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// whereSample is a fleet: bob answered a sysinfo 3 hours ago (a fuller disk, bookworm),
// carol a minute ago, dave never answered one (his numbers are unknown).
func whereSample() []node.FleetEntry {
	pct := func(v float64) *float64 { return &v }
	return []node.FleetEntry{
		{Name: "bob", Tags: []string{"web", "eu"}, Status: "Confirmed", Epoch: 4, LastSeen: whereNow.Add(-3 * time.Hour),
			RoundTrip: 1500 * time.Millisecond, PingAt: whereNow.Add(-3 * time.Hour), DiskFreePct: pct(7), MemFreePct: pct(40),
			SysInfoAt: whereNow.Add(-3 * time.Hour),
			SysInfo: &commands.SysInfo{Hostname: "bob.example", OS: "linux", Kernel: "6.1.0-18-amd64 bookworm", Uptime: 72 * time.Hour,
				Load1: 2.5, MemTotal: 8 << 30, MemAvailable: 3 << 30, NumCPU: 4, Disks: []commands.Disk{{Mount: "/", Total: 100, Free: 7}}}},
		{Name: "carol", Tags: []string{"web"}, Status: "Confirmed", Epoch: 2, LastSeen: whereNow.Add(-time.Minute), Pending: 2,
			DiskFreePct: pct(60), MemFreePct: pct(80), SysInfoAt: whereNow.Add(-time.Minute),
			SysInfo: &commands.SysInfo{Hostname: "carol.example", OS: "linux", Kernel: "6.12.0 trixie", Uptime: time.Hour, Load1: 0.1,
				MemTotal: 4 << 30, MemAvailable: 3 << 30, NumCPU: 2, Disks: []commands.Disk{{Mount: "/", Total: 100, Free: 60}}}},
		{Name: "dave", Status: "paired", Stale: true, ReportEvery: time.Hour, ChecksFailing: 2,
			Checks: map[string]commands.CheckResult{"apt": {Exit: 1}, "disk": {Exit: 2}, "ntp": {OK: true}}},
	}
}

func whereNames(t *testing.T, src string) []string {
	t.Helper()
	f, err := compileWhere(src)
	if err != nil {
		t.Fatalf("compileWhere(%q) = %v, want it to compile", src, err)
	}
	var names []string
	for _, e := range whereSample() {
		if f.match(e, whereNow) {
			names = append(names, e.Name)
		}
	}
	return names
}

func TestWhereMatches(t *testing.T) {
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`disk_free_pct < 101`, []string{"bob", "carol"}}, // dave's is unknown: no match, no failure
		{`disk_free_pct < 10`, []string{"bob"}},
		{`not (disk_free_pct < 10)`, []string{"carol"}},
		{`disk_free_pct == nil`, []string{"dave"}},
		{`os !~ "no-such-os"`, []string{"bob", "carol", "dave"}},
		{`kernel !~ "bookworm"`, []string{"carol", "dave"}},
		{`kernel =~ "book.orm"`, []string{"bob"}},
		{`kernel not matches "bookworm"`, []string{"carol", "dave"}},
		{`last_seen > 2h`, []string{"bob"}},
		{`last_seen > 1h30m && last_seen < 1d`, []string{"bob"}},
		{`last_seen < 90s`, []string{"carol"}},
		{`last_seen > duration("2h")`, []string{"bob"}},
		{`last_seen == nil`, []string{"dave"}},
		{`uptime >= 3d`, []string{"bob"}},
		{`round_trip > 1s`, []string{"bob"}},
		{`"web" in tags && pending > 0`, []string{"carol"}},
		{`checks_failing > 0`, []string{"dave"}},
		{`"eu" not in tags`, []string{"carol", "dave"}},
		{`stale`, []string{"dave"}},
		{`name == "bob" || hostname == "carol.example"`, []string{"bob", "carol"}},
		{`hostname == "2h"`, nil},                         // a duration inside a string stays a string
		{`hostname =~ "!~"`, nil},                         // and so does =~ or !~ inside one
		{`load1 > 1 && mem_total > 5e9`, []string{"bob"}}, // 5e9 is a number, not a duration
		{`num_cpu >= 2 // a comment with 2h and !~ "`, []string{"bob", "carol"}},
		{`epoch in 2..4`, []string{"bob", "carol"}},
	} {
		if got := whereNames(t, c.expr); !slices.Equal(got, c.want) {
			t.Errorf("--where %q keeps %q, want %q", c.expr, got, c.want)
		}
	}
}

// TestWhereErrors: an expression that cannot compile says where, in the expression as typed
// (not as rewritten).
func TestWhereErrors(t *testing.T) {
	for _, c := range []struct {
		expr   string
		offset int // rune offset of the error; -1: none
	}{
		{`disk_free_pct < "x"`, 14},
		{`no_such_field > 1`, 0},
		{`last_seen > 2h && dsk < 3`, 18},
		{`os !~ "("`, 3},
		{`last_seen > 2`, 10}, // a duration against a number
		{`disk_free_pct`, -1}, // not a condition
		{`os == "x" &&`, 11},  // ends early: at the last token
		{`hostname == "never closed`, 25},
	} {
		_, err := compileWhere(c.expr)
		var we *whereError
		if !errors.As(err, &we) {
			t.Errorf("compileWhere(%q) = %v, want a *whereError", c.expr, err)
			continue
		}
		if we.Offset != c.offset || we.Expr != c.expr {
			t.Errorf("compileWhere(%q): error at %d in %q (%v), want at %d", c.expr, we.Offset, we.Expr, we, c.offset)
		}
	}
}

// TestWhereFieldsListed: the field list of --help is whereEnv's, in its order.
func TestWhereFieldsListed(t *testing.T) {
	var names []string
	ty := reflect.TypeFor[whereEnv]()
	for i := range ty.NumField() {
		names = append(names, ty.Field(i).Tag.Get("expr"))
	}
	if got, want := strings.Join(names, " "), strings.ReplaceAll(whereFields, "\n", " "); got != want {
		t.Fatalf("whereEnv's fields are\n  %s\nbut --help lists\n  %s", got, whereFields)
	}
}

// FuzzWhere: any expression either fails to compile with a *whereError whose offset lies
// within it, or compiles and runs on every sample entry without panicking.
func FuzzWhere(f *testing.F) {
	for _, s := range []string{`disk_free_pct < 10`, `os !~ "bookworm"`, `last_seen > 2h`, `kernel =~ "x" // c`,
		`1h30m5s < uptime`, `"a\"2h" == name`, "`raw 2h` == name", `/* 2h */ stale`, `1..3`, `tags[0] == "web"`,
		`load1 > 1.5e3`, `0x1f > epoch`, `999999999999999h > last_seen`, `µs`, `2µs < round_trip`} {
		f.Add(s)
	}
	entries := whereSample()
	f.Fuzz(func(t *testing.T, src string) {
		filter, err := compileWhere(src)
		if err != nil {
			var we *whereError
			if !errors.As(err, &we) {
				t.Fatalf("compileWhere(%q) = %v, not a *whereError", src, err)
			}
			if we.Offset > len([]rune(src)) {
				t.Fatalf("compileWhere(%q): offset %d past the end", src, we.Offset)
			}
			_ = we.Error()
			return
		}
		for _, e := range entries {
			filter.match(e, whereNow)
		}
	})
}
