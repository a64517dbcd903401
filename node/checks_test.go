package node

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
)

func addCheck(t *testing.T, n *Node, name string, timeout time.Duration, argv ...string) CheckSpec {
	t.Helper()
	s, err := n.AddCheck(context.Background(), CheckSpec{Name: name, Argv: argv, Timeout: timeout})
	if err != nil {
		t.Fatalf("AddCheck(%s, %q) = %v", name, argv, err)
	}
	return s
}

// TestStatusReportChecks: bob has a passing and a failing check; after alice asks for reports,
// alice's fleet view shows both and one failing; when the failing one starts passing, the next
// report carries only that check; removing a check sends checks_removed. (Issue 11, item 4.)
func TestStatusReportChecks(t *testing.T) {
	l := newReportLab(t)
	flag := filepath.Join(t.TempDir(), "flag")
	addCheck(t, l.bob, "always", 0, "true")
	addCheck(t, l.bob, "flag", 5*time.Second, "ls", flag)

	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	if r, err := l.alice.Reports(ctx, RunSpec{Peer: "bob", Request: commands.Request{Every: 2 * time.Second}}, true); err != nil || r.ExitCode != 0 {
		t.Fatalf("Reports(bob, 2s) = %+v, %v", r, err)
	}
	first := recv(l, l.reports, "first report")
	if got := slices.Sorted(maps.Keys(first.Checks)); !slices.Equal(got, []string{"always", "flag"}) ||
		!first.Checks["always"].OK || first.Checks["flag"].OK || first.Checks["flag"].Exit <= 0 || first.Checks["flag"].Output == "" {
		t.Fatalf("first report's checks = %+v, want always ok and flag failing with its output", first.Checks)
	}
	recv(l, l.answers, "answer to the first report")
	e := l.fleetBob()
	if e.ChecksFailing != 1 || len(e.Checks) != 2 || e.Checks["flag"].OK || !e.Checks["always"].OK {
		t.Fatalf("fleet row of bob: %d checks failing, checks %+v; want 1 of 2", e.ChecksFailing, e.Checks)
	}

	// The failing check starts passing: the next report carries only that one.
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l.advance(2 * time.Second)
	l.bob.sendReports(l.ctx)
	second := recv(l, l.reports, "second report")
	if got := slices.Sorted(maps.Keys(second.Checks)); second.Base == 0 || !slices.Equal(got, []string{"flag"}) ||
		!second.Checks["flag"].OK || second.ChecksRemoved != nil {
		t.Fatalf("second report = %+v, want a delta with the flag check only, now ok", second)
	}
	recv(l, l.answers, "answer to the second report")
	if e := l.fleetBob(); e.ChecksFailing != 0 || len(e.Checks) != 2 || !e.Checks["flag"].OK {
		t.Fatalf("fleet row of bob after the delta: %d failing, checks %+v", e.ChecksFailing, e.Checks)
	}

	// Nothing changed but when the checks ran: the heartbeat carries no check.
	l.advance(2 * time.Second)
	l.bob.sendReports(l.ctx)
	if hb := recv(l, l.reports, "heartbeat"); hb.Checks != nil || hb.ChecksRemoved != nil {
		t.Fatalf("heartbeat = %+v, want no checks (a new run time alone does not travel)", hb)
	}
	recv(l, l.answers, "answer to the heartbeat")

	// A check removed: checks_removed names it, and alice forgets it.
	if err := l.bob.RemoveCheck(l.ctx, "flag"); err != nil {
		t.Fatal(err)
	}
	if err := l.bob.RemoveCheck(l.ctx, "flag"); !errors.Is(err, ErrNoCheck) {
		t.Fatalf("RemoveCheck(flag) again = %v, want ErrNoCheck", err)
	}
	l.advance(2 * time.Second)
	l.bob.sendReports(l.ctx)
	third := recv(l, l.reports, "third report")
	if third.Checks != nil || !slices.Equal(third.ChecksRemoved, []string{"flag"}) {
		t.Fatalf("third report = %+v, want checks_removed [flag] only", third)
	}
	recv(l, l.answers, "answer to the third report")
	if e := l.fleetBob(); e.ChecksFailing != 0 || len(e.Checks) != 1 || !e.Checks["always"].OK {
		t.Fatalf("fleet row of bob after the removal: %d failing, checks %+v; want always only", e.ChecksFailing, e.Checks)
	}
}

// TestChecksAddAndRun: a check's program is resolved to an absolute path when added (a relative
// path is refused, as in allow lists); RunChecks runs them all, each within its timeout, and
// tells exit codes and the first line of the output.
func TestChecksAddAndRun(t *testing.T) {
	l := newLab(t)
	n := l.bob
	if s := addCheck(t, n, "ok", 0, "true"); !filepath.IsAbs(s.Argv[0]) {
		t.Errorf("AddCheck(ok, true) = %+v, want the program as an absolute path", s)
	}
	addCheck(t, n, "slow", time.Second, "sleep", "30")
	addCheck(t, n, "missing", 0, "ls", "/no/such/file/here")
	for _, bad := range []CheckSpec{
		{Name: "rel", Argv: []string{"./true"}},
		{Name: "none"},
		{Name: "long", Argv: []string{"true"}, Timeout: MaxCheckTimeout + time.Second},
		{Name: "a b", Argv: []string{"true"}},
	} {
		if _, err := n.AddCheck(l.ctx, bad); err == nil {
			t.Errorf("AddCheck(%+v) succeeded, want an error", bad)
		}
	}
	list, err := n.Checks(l.ctx)
	if err != nil || len(list) != 3 || list[0].Name != "missing" || list[1].Timeout != 0 || list[2].Timeout != time.Second {
		t.Fatalf("Checks() = %+v, %v", list, err)
	}
	res, err := n.RunChecks(l.ctx)
	if err != nil || len(res) != 3 {
		t.Fatalf("RunChecks() = %+v, %v", res, err)
	}
	byName := map[string]CheckResult{}
	for _, r := range res {
		byName[r.Name] = r
	}
	if r := byName["ok"]; !r.OK || r.Exit != 0 || r.At.IsZero() {
		t.Errorf("ok: %+v, want ok", r)
	}
	if r := byName["slow"]; r.OK || r.Exit != -1 || r.Output == "" {
		t.Errorf("slow: %+v, want exit -1 (timed out) with why", r)
	}
	if r := byName["missing"]; r.OK || r.Exit <= 0 || r.Output == "" {
		t.Errorf("missing: %+v, want a failing exit with ls's complaint", r)
	}
}
