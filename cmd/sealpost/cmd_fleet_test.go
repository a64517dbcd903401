package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// TestFleetJSONShape: --json is an array of objects with name, last_seen, stale (a boolean)
// and the sysinfo members under their PROTOCOL.md section 19 names; --where filters it.
func TestFleetJSONShape(t *testing.T) {
	var out bytes.Buffer
	g := &globals{stdout: &out, stderr: &out}
	if err := showFleet(g, whereSample(), nil, true, whereNow); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("fleet --json = %s (%v), want an array of 3 objects", out.String(), err)
	}
	bob := rows[0]
	for _, key := range []string{"name", "last_seen", "stale", "hostname", "os", "kernel", "uptime", "load1", "mem_total", "mem_available", "disks", "num_cpu", "disk_free_pct", "pending", "epoch"} {
		if _, ok := bob[key]; !ok {
			t.Errorf("fleet --json: bob's object has no %q: %v", key, bob)
		}
	}
	if s, ok := rows[2]["stale"].(bool); !ok || !s {
		t.Errorf("fleet --json: dave's stale = %v, want the boolean true", rows[2]["stale"])
	}

	filter, err := compileWhere(`disk_free_pct < 10`)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := showFleet(g, whereSample(), filter, true, whereNow); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil || len(rows) != 1 || rows[0]["name"] != "bob" {
		t.Fatalf("fleet --json --where 'disk_free_pct < 10' = %s (%v), want bob only", out.String(), err)
	}
	out.Reset()
	filter, _ = compileWhere(`name == "nobody"`)
	if err := showFleet(g, whereSample(), filter, true, whereNow); err != nil || strings.TrimSpace(out.String()) != "[]" {
		t.Fatalf("fleet --json matching nothing = %q (%v), want []", out.String(), err)
	}
}

// TestFleetTable: one line per peer with the figures and the STALE mark; what a peer reported
// reaches the terminal with its control characters escaped (THREATS.md row 41).
func TestFleetTable(t *testing.T) {
	fleet := whereSample()
	fleet[1].SysInfo.OS = "linux\x1b]0;owned\x07\x1b[2J"
	var out bytes.Buffer
	g := &globals{stdout: &out, stderr: &out}
	if err := showFleet(g, fleet, nil, false, whereNow); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("fleet table:\n%s\nwant a header and 3 lines", out.String())
	}
	for _, want := range []struct {
		line int
		has  []string
	}{
		{1, []string{"bob", "3h0m ago", "1.5s", "linux 6.1.0-18-amd64 bookworm", "3d0h", "2.50", "40% of 8.0G", "/ 7% free"}},
		{2, []string{"carol", "1m0s ago", `\x1b]0;owned\a\x1b[2J`}},
		{3, []string{"dave", "never", "STALE, 2 checks failing"}},
	} {
		for _, s := range want.has {
			if !strings.Contains(lines[want.line], s) {
				t.Errorf("fleet line %d = %q, want %q in it", want.line, lines[want.line], s)
			}
		}
	}
	if strings.ContainsRune(out.String(), '\x1b') {
		t.Errorf("fleet table passes a peer's escape sequence to the terminal:\n%q", out.String())
	}
}

// TestFleetBadWhereIsUsage: a bad --where is a usage error found before the state is opened,
// and the message shows the expression and where it is wrong.
func TestFleetBadWhereIsUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	g := &globals{state: filepath.Join(t.TempDir(), "none"), stdout: &out, stderr: &errOut}
	for _, args := range [][]string{
		{"--where", `disk_free_pct < "x"`},
		{"--where", ``},
		{"--where", `os !~ "("`, "@web"},
		{"bob", "carol"},
		{"bad target"},
	} {
		err := runFleet(context.Background(), g, args)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("fleet %q = %v, want a usage error", args, err)
			continue
		}
		if code := exitCode(&errOut, "fleet", err); code != exitUsage {
			t.Errorf("fleet %q exits %d, want %d", args, code, exitUsage)
		}
	}
	errOut.Reset()
	exitCode(&errOut, "fleet", runFleet(context.Background(), g, []string{"--where", `disk_free_pct < "x"`}))
	if want := "\n  disk_free_pct < \"x\"\n                ^\n"; !strings.Contains(errOut.String(), want) {
		t.Errorf("fleet with a bad --where says\n%s\nwant the expression with a caret under the error:%s", errOut.String(), want)
	}
}

// TestFleetTableCapsNumbers: a peer reporting a load of 1e308 gets ">999" in the table, not a
// 300-digit column.
func TestFleetTableCapsNumbers(t *testing.T) {
	fleet := whereSample()
	fleet[0].SysInfo.Load1 = 1e308
	var out bytes.Buffer
	g := &globals{stdout: &out, stderr: &out}
	if err := showFleet(g, fleet, nil, false, whereNow); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if !strings.Contains(lines[1], ">999 ") || len(lines[1]) > 200 {
		t.Errorf("fleet line of a peer with a load of 1e308 = %q, want the load shown as >999", lines[1])
	}
}
