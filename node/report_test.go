package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// reportLab is the two-node lab with both nodes serving, on a clock only the test moves, bob's
// sysinfo under the test's control, and channels for the reports alice accepts and the answers
// bob's reports get.
type reportLab struct {
	*lab
	offset   atomic.Int64 // added to the real clock, for both nodes
	mu       sync.Mutex
	info     commands.SysInfo // what bob reports
	reports  chan commands.Report
	answers  chan Event // bob's EventResult: the answer to one of its reports
	aliceEnd func()
}

func newReportLab(t *testing.T) *reportLab {
	l := &reportLab{lab: newLab(t), reports: make(chan commands.Report, 16), answers: make(chan Event, 16),
		info: commands.SysInfo{Hostname: "bob-host", OS: "linux", Kernel: "6.1", Load1: 0.5, Load5: 0.25, Uptime: time.Hour,
			MemTotal: 1 << 30, MemAvailable: 1 << 29, Disks: []commands.Disk{{Mount: "/", Total: 100, Free: 40}}}}
	// The clock stands still but when the test moves it: a report is due only when the test
	// says so, however slowly the test runs.
	base := time.Now()
	clock := func() time.Time { return base.Add(time.Duration(l.offset.Load())) }
	l.clocks = map[string]func() time.Time{"alice": clock, "bob": clock}
	l.alice.Close()
	l.bob.Close()
	l.alice = l.open("alice", nil, false)
	l.bob = l.open("bob", nil, false)
	l.bob.opts.MinReportEvery = time.Second // below the default minute, for the 2 s of the tests
	l.bob.opts.Events = func(e Event) {
		if e.Kind == EventResult {
			l.answers <- e
		}
	}
	bob := l.bob
	reportSysInfo = func(n *Node) commands.SysInfo {
		if n != bob {
			return n.reg.SysInfo()
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.info
	}
	testHookReport = func(to *Node, from string, rep commands.Report) { l.reports <- rep }
	t.Cleanup(func() {
		reportSysInfo = func(n *Node) commands.SysInfo { return n.reg.SysInfo() }
		testHookReport = nil
	})
	ctx, cancel := context.WithCancel(l.ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.alice.Serve(ctx, false) }()
	l.aliceEnd = func() { cancel(); <-done }
	t.Cleanup(l.aliceEnd)
	l.serveBob()
	t.Cleanup(l.stopBob)
	return l
}

func (l *reportLab) advance(d time.Duration) { l.offset.Add(int64(d)) }

func (l *reportLab) setInfo(fn func(*commands.SysInfo)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(&l.info)
}

func recv[T any](l *reportLab, ch chan T, what string) T {
	l.t.Helper()
	select {
	case v := <-ch:
		return v
	case <-l.ctx.Done():
		l.t.Fatalf("no %s before the test's deadline", what)
	}
	var zero T
	return zero
}

func (l *reportLab) bobEntry() keystore.ReportTo {
	l.t.Helper()
	var r keystore.ReportTo
	if err := l.bob.store.View(func(tx *keystore.Tx) error {
		var err error
		r, _, err = tx.ReportTo("alice")
		return err
	}); err != nil {
		l.t.Fatal(err)
	}
	return r
}

func (l *reportLab) fleetBob() FleetEntry {
	l.t.Helper()
	f, err := l.alice.Fleet(l.ctx, "bob")
	if err != nil || len(f) != 1 {
		l.t.Fatalf("Fleet(bob) = %+v, %v", f, err)
	}
	return f[0]
}

// TestStatusReports: after alice asks bob for a report every 2 s, bob's sysinfo reaches alice's
// fleet view with no other command from alice; a later report that changed only the load
// carries only the load; a quiet host's report carries nothing but its numbers; a delta against
// a base alice lacks gets need_whole and the next report is whole; stopping bob's agent makes
// bob stale once twice the interval passed. (Issue 11, item 4.)
func TestStatusReports(t *testing.T) {
	l := newReportLab(t)
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	r, err := l.alice.Reports(ctx, RunSpec{Peer: "bob", Request: commands.Request{Every: 2 * time.Second}}, true)
	if err != nil || r.Status != StatusDone || r.ExitCode != 0 {
		t.Fatalf("Reports(bob, 2s) = %+v, %v; want done with exit 0", r, err)
	}

	// The first report, whole, comes by itself: bob's agent sends it once it took the wish.
	first := recv(l, l.reports, "first report")
	if first.Seq != 1 || first.Base != 0 || first.Version == nil || first.Queue == nil || first.LastError == nil {
		t.Fatalf("first report = %+v, want seq 1, whole, with its own part", first)
	}
	if a := recv(l, l.answers, "answer to the first report"); a.Status != StatusDone {
		t.Fatalf("answer to the first report: %+v", a)
	}
	e := l.fleetBob()
	if e.SysInfo == nil || e.Hostname != "bob-host" || e.Load1 != 0.5 || e.Stale || e.LastReport.IsZero() || e.ReportEvery != 2*time.Second {
		t.Fatalf("fleet row of bob after the first report = %+v (sysinfo %+v)", e, e.SysInfo)
	}
	if rs, _ := l.alice.Results(l.ctx); len(rs) != 1 || rs[0].Command[0] != commands.CmdReportEvery {
		t.Fatalf("alice's results = %+v, want only the report-every: no command sent for the sysinfo", rs)
	}
	if rs, _ := l.bob.Results(l.ctx); len(rs) != 0 {
		t.Errorf("bob's results = %+v, want none: an answered report leaves no record", rs)
	}
	if got := l.bobEntry(); got.AckedSeq != 1 {
		t.Fatalf("bob's report_to after the answer: %+v, want report 1 acknowledged", got)
	}

	// Only the load changes: the next report carries only the load (uptime grew with the clock).
	l.setInfo(func(si *commands.SysInfo) { si.Load1, si.Uptime = 2.5, si.Uptime+2*time.Second })
	l.advance(2 * time.Second)
	l.bob.sendReports(l.ctx)
	second := recv(l, l.reports, "second report")
	if got := slices.Sorted(maps.Keys(second.SysInfo)); second.Seq != 2 || second.Base != 1 || !slices.Equal(got, []string{"load1"}) ||
		second.Version != nil || second.Queue != nil || second.LastError != nil {
		t.Fatalf("second report = %+v (sysinfo members %q), want seq 2 against 1 with load1 only", second, got)
	}
	recv(l, l.answers, "answer to the second report")
	if e := l.fleetBob(); e.Load1 != 2.5 || e.Hostname != "bob-host" || e.Uptime < time.Hour+2*time.Second {
		t.Fatalf("fleet row of bob after the delta = %+v", e.SysInfo)
	}

	// Nothing changes: the report is the heartbeat, with only its numbers.
	l.setInfo(func(si *commands.SysInfo) { si.Uptime += 2 * time.Second })
	l.advance(2 * time.Second)
	l.bob.sendReports(l.ctx)
	if hb := recv(l, l.reports, "heartbeat"); hb.Seq != 3 || hb.Base != 2 || hb.SysInfo != nil || hb.Version != nil || hb.Queue != nil || hb.LastError != nil {
		t.Fatalf("heartbeat = %+v, want seq 3 against 2 and nothing else", hb)
	}
	recv(l, l.answers, "answer to the heartbeat")

	// Alice lacks the base (her state was restored, say): need_whole, then a whole report.
	if err := l.alice.store.Update(func(tx *keystore.Tx) error {
		ps, _, err := tx.PeerState("bob")
		ps.ReportSeq = 1
		if err == nil {
			err = tx.PutPeerState(ps)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	l.advance(2 * time.Second)
	l.bob.sendReports(l.ctx)
	recv(l, l.answers, "answer need_whole")
	if got := l.bobEntry(); got.AckedSeq != 0 || got.NextDue.After(l.bob.now()) || got.Run != 0 {
		t.Fatalf("bob's report_to after need_whole: %+v, want nothing acknowledged, a new numbering and a report due now", got)
	}
	// bob's agent sends the whole report, in a new numbering, once its floor (1 s) passed since
	// the last one.
	l.advance(time.Second)
	if w := recv(l, l.reports, "whole report after need_whole"); w.Seq != 5 || w.Base != 0 || len(w.SysInfo) == 0 || w.Run == first.Run || w.Run == 0 {
		t.Fatalf("report after need_whole = %+v, want seq 5, whole, in a numbering other than %d", w, first.Run)
	}
	recv(l, l.answers, "answer to the whole report")

	// bob's agent stops: bob turns stale once twice the interval passed without a word.
	l.stopBob()
	if e := l.fleetBob(); e.Stale {
		t.Fatalf("bob stale at once after stopping: %+v", e)
	}
	l.advance(4*time.Second + time.Millisecond)
	if e := l.fleetBob(); !e.Stale {
		t.Fatalf("bob not stale 4 s after its last report with a 2 s interval: %+v", e)
	}
}

// TestReportNotAskedIsDenied: a report from a peer alice did not ask (or asked to stop) is
// denied and changes nothing of alice's state; bob then stops reporting to her.
func TestReportNotAskedIsDenied(t *testing.T) {
	l := newReportLab(t)
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	// bob believes alice asked (a wish recorded, say, before alice said off).
	if err := l.bob.store.Update(func(tx *keystore.Tx) error {
		return tx.PutReportTo(keystore.ReportTo{Name: "alice", Every: time.Hour, NextDue: l.bob.now()})
	}); err != nil {
		t.Fatal(err)
	}
	l.bob.sendReports(ctx)
	if a := recv(l, l.answers, "answer to the report"); a.Status != "denied" {
		t.Fatalf("answer to an unasked report: %+v, want denied", a)
	}
	if e := l.fleetBob(); e.SysInfo != nil || !e.LastReport.IsZero() {
		t.Fatalf("alice kept an unasked report: %+v", e)
	}
	var ok bool
	if err := l.bob.store.View(func(tx *keystore.Tx) error {
		var err error
		_, ok, err = tx.ReportTo("alice")
		return err
	}); err != nil || ok {
		t.Fatalf("bob still reports to alice after her denial (%v, %v)", ok, err)
	}
	select {
	case rep := <-l.reports:
		t.Fatalf("alice accepted %+v", rep)
	default:
	}
}

// TestReportsOff: off stops bob's reports and clears the interval on alice's side.
func TestReportsOff(t *testing.T) {
	l := newReportLab(t)
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	for _, every := range []time.Duration{time.Hour, 0} {
		if r, err := l.alice.Reports(ctx, RunSpec{Peer: "bob", Request: commands.Request{Every: every}}, true); err != nil || r.Status != StatusDone {
			t.Fatalf("Reports(bob, %v) = %+v, %v", every, r, err)
		}
	}
	if e := l.fleetBob(); e.ReportEvery != 0 || e.Stale {
		t.Fatalf("fleet row after off: %+v", e)
	}
	if got := l.bobEntry(); got.Name != "" {
		t.Fatalf("bob's report_to after off: %+v, want none", got)
	}
	if _, err := l.alice.Reports(ctx, RunSpec{Peer: "bob", Request: commands.Request{Every: time.Millisecond}}, false); err == nil {
		t.Fatal("Reports with an interval below the minimum: no error")
	}
}

// TestReportSysInfoBounded: when collecting the host's facts hangs (statfs on a hung mount), a
// report waits sysinfoWait and goes with the last facts collected, and the serving loop goes on;
// while the hung collection lasts, no second one is started.
func TestReportSysInfoBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &Node{}
		release := make(chan struct{})
		var calls atomic.Int32
		old := reportSysInfo
		reportSysInfo = func(*Node) commands.SysInfo {
			if calls.Add(1) == 1 {
				return commands.SysInfo{Hostname: "web1"}
			}
			<-release
			return commands.SysInfo{Hostname: "web1-late"}
		}
		defer func() { reportSysInfo = old }()
		if si, fresh := n.boundedSysInfo(); !fresh || si.Hostname != "web1" {
			t.Fatalf("first collection: %+v, fresh %v", si, fresh)
		}
		if si, fresh := n.boundedSysInfo(); fresh || si.Hostname != "web1" { // waits sysinfoWait (fake clock)
			t.Fatalf("a hung collection: %+v, fresh %v; want the last facts, not fresh", si, fresh)
		}
		if si, fresh := n.boundedSysInfo(); fresh || si.Hostname != "web1" || calls.Load() != 2 {
			t.Fatalf("while it still hangs: %+v, fresh %v, %d collections; want no new one", si, fresh, calls.Load())
		}
		close(release)
		synctest.Wait()
		if si, fresh := n.boundedSysInfo(); !fresh || calls.Load() != 3 {
			t.Fatalf("after the hang ended: %+v, fresh %v, %d collections", si, fresh, calls.Load())
		}
	})
}

// TestReportEveryAtPairing: `peer add --report-every` before the peer is paired asks for the
// reports once pairing completes, and the first report reaches the fleet view without any
// other command.
func TestReportEveryAtPairing(t *testing.T) {
	l := newLab(t)
	carol := l.open("carol", nil, true)
	// Each mail alice takes in from carol (pairing, handshake, the report) is an event; the
	// fleet view is looked at after each.
	fromCarol := make(chan struct{}, 64)
	l.alice.opts.Events = func(e Event) {
		if e.Kind == EventReceived && e.Peer == "carol" {
			select {
			case fromCarol <- struct{}{}:
			default:
			}
		}
	}
	added, err := l.alice.AddPeer(l.ctx, PeerSpec{Name: "carol", Address: "carol@example.test", ReportEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := carol.AddPeer(l.ctx, PeerSpec{Name: "alice", Address: "alice@example.test", Code: added.GeneratedCode}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	done := make(chan struct{}, 2)
	for _, n := range []*Node{l.alice, carol} {
		go func() { n.Serve(ctx, false); done <- struct{}{} }()
	}
	defer func() { cancel(); <-done; <-done }()
	wctx, wcancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer wcancel()
	for {
		select {
		case <-wctx.Done():
			t.Fatal("no report from carol within 30 s")
		case <-fromCarol:
		}
		fl, err := l.alice.Fleet(wctx, "carol")
		if err != nil {
			t.Fatal(err)
		}
		if len(fl) == 1 && fl[0].SysInfo != nil && !fl[0].LastReport.IsZero() {
			if fl[0].ReportEvery != time.Hour {
				t.Fatalf("carol's report interval: %v", fl[0].ReportEvery)
			}
			return
		}
	}
}

// TestProgramsNamedLikeRequests: a program called report, report-every or ping is an ordinary
// command: its result is kept, and it touches neither the reports nor the fleet view's round
// trip. (Recognising reports by the command line deleted the result of `run bob -- report`.)
func TestProgramsNamedLikeRequests(t *testing.T) {
	l := newLab(t)
	dir := t.TempDir()
	var allow []string
	for _, name := range []string{"report", "report-every", "ping"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+name+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		allow = append(allow, p)
	}
	if _, err := l.bob.Allow(l.ctx, "alice", allow, nil); err != nil {
		t.Fatal(err)
	}
	l.serveBob()
	for _, name := range []string{"report", "report-every", "ping"} {
		r := l.run(name)
		if r.Status != StatusDone || string(r.Stdout) != name+"\n" {
			t.Fatalf("run %s: %+v", name, r)
		}
		if got, ok, err := l.alice.Result(r.CommandID); err != nil || !ok || got.Status != StatusDone {
			t.Fatalf("the result of run %s afterwards: %+v, %v, %v", name, got, ok, err)
		}
	}
	fl, err := l.alice.Fleet(l.ctx, "bob")
	if err != nil || len(fl) != 1 {
		t.Fatal(fl, err)
	}
	if fl[0].RoundTrip != 0 {
		t.Fatalf("a program called ping set the round trip of bob's pings: %v", fl[0].RoundTrip)
	}
}

// errRollback ends a test's store transaction without committing it.
var errRollback = errors.New("rolled back")

// acceptIn runs acceptReport for peer bob in n's store, in a transaction that commits.
func acceptIn(t testing.TB, n *Node, rep commands.Report, now time.Time) reportVerdict {
	t.Helper()
	var v reportVerdict
	if err := n.store.Update(func(tx *keystore.Tx) error {
		var err error
		v, err = n.acceptReport(tx, "bob", rep, now)
		return err
	}); err != nil {
		t.Fatalf("acceptReport(%+v) = %v: an error the node would take for its own trouble", rep, err)
	}
	return v
}

func putPeerState(t testing.TB, n *Node, ps keystore.PeerState) {
	t.Helper()
	if err := n.store.Update(func(tx *keystore.Tx) error { return tx.PutPeerState(ps) }); err != nil {
		t.Fatal(err)
	}
}

func peerStateOf(t testing.TB, n *Node, name string) (keystore.PeerState, bool) {
	t.Helper()
	var ps keystore.PeerState
	var ok bool
	if err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		ps, ok, err = tx.PeerState(name)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ps, ok
}

// TestReportUptimeOverflowIsAnAnswer (THREATS row 30): a held uptime of 2^63-808 ns, then a
// delta without uptime an hour later, overflowed to a negative uptime that failed the merge as
// the node's own error, which kept the mail (and all behind it) in the inbox. Now the uptime
// advances saturating, and whatever does not merge is answered (need_whole, bad-command).
func TestReportUptimeOverflowIsAnAnswer(t *testing.T) {
	l := newLab(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	putPeerState(t, l.alice, keystore.PeerState{Name: "bob", ReportEvery: time.Minute, ReportRun: 7, ReportSeq: 1,
		SysInfo: []byte(`{"hostname":"bob","uptime":9223372036854775000}`), SysInfoAt: t0, LastReport: t0})
	v := acceptIn(t, l.alice, commands.Report{Run: 7, Seq: 2, Base: 1, SysInfo: map[string]json.RawMessage{"load1": json.RawMessage("1")}}, t0.Add(time.Hour))
	if v.refuse != 0 {
		t.Fatalf("delta on an out-of-bounds uptime: %+v, want an answer with exit 0", v)
	}
	if ps, _ := peerStateOf(t, l.alice, "bob"); v.needWhole {
		if ps.ReportSeq != 1 {
			t.Fatalf("need_whole, but the delta was kept: %+v", ps)
		}
	} else {
		var si commands.SysInfo
		if err := json.Unmarshal(ps.SysInfo, &si); err != nil || si.Uptime < 0 || si.Uptime > commands.MaxUptime {
			t.Fatalf("uptime held after the delta: %+v, %v", si, err)
		}
	}
	// A whole report out of the limits (past the decoder, say) is refused as a bad command.
	v = acceptIn(t, l.alice, commands.Report{Run: 8, Seq: 1, SysInfo: map[string]json.RawMessage{"uptime": json.RawMessage("9223372036854775000")}}, t0.Add(2*time.Hour))
	if v.refuse != session.CodeBadCommand {
		t.Fatalf("whole report with an uptime near 2^63: %+v, want bad-command", v)
	}
}

// FuzzReportAccept drives the controller's accept path with a whole report, a delta and a
// heartbeat later, on whatever uptime, load, delta members and clock steps: acceptReport never
// returns an error (which the node would take for its own trouble, holding the mail in the inbox:
// THREATS row 30) and never panics, and what it keeps reads back within the report limits.
func FuzzReportAccept(f *testing.F) {
	l := newLabTB(f)
	n := l.alice
	f.Add(int64(time.Hour), 0.5, []byte(`{"load1":2.5}`), int64(time.Minute), int64(time.Minute))
	f.Add(int64(9223372036854775000), 1e300, []byte(`{}`), int64(time.Hour), int64(math.MaxInt64))
	f.Add(int64(-1), math.NaN(), []byte(`{"uptime":1,"disks":[{"mount":""}]}`), int64(-time.Hour), int64(0))
	f.Add(int64(commands.MaxUptime), math.Inf(1), []byte(`{"cpu_temp":1,"load5":"x"}`), int64(math.MinInt64), int64(1))
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, uptime int64, load float64, delta []byte, step1, step2 int64) {
		var members map[string]json.RawMessage
		_ = json.Unmarshal(delta, &members)
		whole := map[string]json.RawMessage{
			"hostname": json.RawMessage(`"bob"`),
			"uptime":   json.RawMessage(strconv.FormatInt(uptime, 10)),
			"load1":    json.RawMessage(strconv.FormatFloat(load, 'g', -1, 64)), // NaN, +Inf: not JSON
		}
		now1 := t0.Add(time.Duration(step1))
		now2 := now1.Add(time.Duration(step2))
		err := n.store.Update(func(tx *keystore.Tx) error {
			if err := tx.PutPeerState(keystore.PeerState{Name: "bob", ReportEvery: time.Minute}); err != nil {
				return err
			}
			for _, c := range []struct {
				rep commands.Report
				at  time.Time
			}{
				{commands.Report{Run: 1, Seq: 1, SysInfo: whole}, t0},
				{commands.Report{Run: 1, Seq: 2, Base: 1, SysInfo: members}, now1},
				{commands.Report{Run: 1, Seq: 3, Base: 2}, now2},
			} {
				v, err := n.acceptReport(tx, "bob", c.rep, c.at)
				if err != nil {
					return fmt.Errorf("acceptReport(%+v): %w", c.rep, err)
				}
				if v.refuse != 0 || v.needWhole {
					continue
				}
				ps, _, err := tx.PeerState("bob")
				if err != nil {
					return err
				}
				var si commands.SysInfo
				if err := json.Unmarshal(ps.SysInfo, &si); err != nil {
					return fmt.Errorf("held sysinfo %s: %w", ps.SysInfo, err)
				}
				if _, err := commands.MergeSysInfo(si, nil); err != nil {
					return fmt.Errorf("held sysinfo %s out of the report limits: %w", ps.SysInfo, err)
				}
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	})
}

// TestReportOrder: a whole report of the numbering held that is not newer than the one held
// (overtaken in the mail) changes nothing and asks for a whole report; a report of another
// numbering (the agent restarted it) is taken when whole, and a delta of it is not.
func TestReportOrder(t *testing.T) {
	l := newLab(t)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	putPeerState(t, l.alice, keystore.PeerState{Name: "bob", ReportEvery: time.Minute})
	host := func(h string) map[string]json.RawMessage {
		return map[string]json.RawMessage{"hostname": json.RawMessage(strconv.Quote(h))}
	}
	held := func() (string, uint64, uint64) {
		ps, _ := peerStateOf(t, l.alice, "bob")
		var si commands.SysInfo
		if err := json.Unmarshal(ps.SysInfo, &si); err != nil {
			t.Fatal(err)
		}
		return si.Hostname, ps.ReportRun, ps.ReportSeq
	}
	if v := acceptIn(t, l.alice, commands.Report{Run: 7, Seq: 5, SysInfo: host("new")}, t0); v.needWhole || v.refuse != 0 {
		t.Fatalf("report 5: %+v", v)
	}
	for _, seq := range []uint64{3, 5} {
		if v := acceptIn(t, l.alice, commands.Report{Run: 7, Seq: seq, SysInfo: host("old")}, t0.Add(time.Minute)); !v.needWhole || v.refuse != 0 {
			t.Fatalf("report %d after 5: %+v, want need_whole", seq, v)
		}
		if h, run, seq := held(); h != "new" || run != 7 || seq != 5 {
			t.Fatalf("report %d after 5 changed what is held: %s, run %d, seq %d", seq, h, run, seq)
		}
	}
	if v := acceptIn(t, l.alice, commands.Report{Run: 9, Seq: 2, Base: 1, SysInfo: host("delta")}, t0.Add(2*time.Minute)); !v.needWhole {
		t.Fatalf("a delta of another numbering: %+v, want need_whole", v)
	}
	if v := acceptIn(t, l.alice, commands.Report{Run: 9, Seq: 1, SysInfo: host("restarted")}, t0.Add(3*time.Minute)); v.needWhole || v.refuse != 0 {
		t.Fatalf("a whole report of a new numbering: %+v", v)
	}
	if h, run, seq := held(); h != "restarted" || run != 9 || seq != 1 {
		t.Fatalf("after a new numbering: %s, run %d, seq %d", h, run, seq)
	}
}

// TestReportAgentFloor: asked for reports every 2 s, an agent with the default floor reports
// every minute and says so in its answer.
func TestReportAgentFloor(t *testing.T) {
	l := newReportLab(t)
	l.bob.opts.MinReportEvery = 0 // the default: a minute
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	r, err := l.alice.Reports(ctx, RunSpec{Peer: "bob", Request: commands.Request{Every: 2 * time.Second}}, true)
	if err != nil || r.Status != StatusDone || len(r.Stdout) == 0 {
		t.Fatalf("Reports(bob, 2s) = %+v, %v; want done, saying the interval was raised", r, err)
	}
	recv(l, l.reports, "first report")
	recv(l, l.answers, "answer to the first report")
	if e := l.bobEntry(); e.Every != DefaultMinReportEvery {
		t.Fatalf("bob's interval: %v, want the floor %v", e.Every, DefaultMinReportEvery)
	}
	// Alice learns it from the answer: STALE counts by the interval bob reports at.
	if ps, _ := peerStateOf(t, l.alice, "bob"); ps.ReportEvery != DefaultMinReportEvery {
		t.Fatalf("alice's interval for bob: %v, want bob's floor %v", ps.ReportEvery, DefaultMinReportEvery)
	}
	l.advance(2 * time.Second)
	l.bob.sendReports(l.ctx)
	if e := l.bobEntry(); e.Seq != 1 {
		t.Fatalf("a report 2 s after the last, below the floor: %+v", e)
	}
	l.advance(DefaultMinReportEvery)
	l.bob.sendReports(l.ctx)
	if e := l.bobEntry(); e.Seq != 2 {
		t.Fatalf("no report a minute after the last: %+v", e)
	}
}

// TestReportUnansweredBounds: while alice does not answer, bob keeps one report in flight (a new
// one only once the last one's lifetime passed), drops the record of each one that went
// unanswered, and backs off after three.
func TestReportUnansweredBounds(t *testing.T) {
	l := newReportLab(t)
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	if _, err := l.alice.Reports(ctx, RunSpec{Peer: "bob", Request: commands.Request{Every: 2 * time.Second}}, true); err != nil {
		t.Fatal(err)
	}
	recv(l, l.reports, "first report")
	recv(l, l.answers, "answer to the first report")
	l.aliceEnd() // alice stops answering
	l.advance(2 * time.Second)
	l.bob.sendReports(l.ctx)
	inFlight := l.bobEntry()
	if inFlight.Seq != 2 || inFlight.SentID == ([16]byte{}) {
		t.Fatalf("report 2 not in flight: %+v", inFlight)
	}
	ttl := reportTTL(2 * time.Second)
	for i := 0; i < 5; i++ {
		l.advance(2 * time.Second)
		l.bob.sendReports(l.ctx)
	}
	if e := l.bobEntry(); e.Seq != 2 {
		t.Fatalf("a new report while report 2 is in flight: %+v", e)
	}
	sent := inFlight.SentAt
	for missed := 1; missed <= 3; missed++ {
		l.advance(sent.Add(ttl).Sub(l.bob.now()))
		l.bob.sendReports(l.ctx)
		e := l.bobEntry()
		if e.Seq != uint64(2+missed) || e.Missed != missed {
			t.Fatalf("after %d unanswered: %+v, want report %d sent", missed, e, 2+missed)
		}
		rs, err := l.bob.Results(l.ctx)
		if err != nil || len(rs) != 1 || rs[0].CommandID != e.SentID {
			t.Fatalf("bob's results after %d unanswered: %+v, %v; want only the report in flight", missed, rs, err)
		}
		if got, want := e.NextDue.Sub(e.SentAt), max(2*time.Second, time.Second)<<max(missed-2, 0); got != want {
			t.Errorf("after %d unanswered the next report is due in %v, want %v", missed, got, want)
		}
		sent = e.SentAt
	}
}

func TestReportEveryBackoff(t *testing.T) {
	n := &Node{opts: Options{MinReportEvery: time.Second}}
	for _, c := range []struct {
		every  time.Duration
		missed int
		want   time.Duration
	}{
		{time.Minute, 0, time.Minute}, {time.Minute, 2, time.Minute}, {time.Minute, 3, 2 * time.Minute},
		{time.Minute, 4, 4 * time.Minute}, {time.Minute, 1000, time.Hour}, {24 * time.Hour, 9, 24 * time.Hour},
		{time.Millisecond, 0, time.Second},
	} {
		if got := n.reportEvery(keystore.ReportTo{Every: c.every, Missed: c.missed}); got != c.want {
			t.Errorf("reportEvery(%v, %d missed) = %v, want %v", c.every, c.missed, got, c.want)
		}
	}
}

// TestReportAskLapsesWithPairing: the report wish of `peer add --report-every` goes with its
// pairing when that expires, and a new pairing armed without --report-every does not inherit it.
func TestReportAskLapsesWithPairing(t *testing.T) {
	l := newReportLab(t)
	l.aliceEnd()
	add := func(every time.Duration) {
		t.Helper()
		if _, err := l.alice.AddPeer(l.ctx, PeerSpec{Name: "carol", Address: "carol@example.test", ReportEvery: every}); err != nil {
			t.Fatal(err)
		}
	}
	add(time.Hour)
	l.alice.sendReports(l.ctx)
	if ps, ok := peerStateOf(t, l.alice, "carol"); !ok || !ps.ReportAsk {
		t.Fatalf("the wish of an armed pairing: %+v, %v", ps, ok)
	}
	add(0) // armed again, without --report-every
	if ps, ok := peerStateOf(t, l.alice, "carol"); ok {
		t.Fatalf("a new pairing without --report-every inherited %+v", ps)
	}
	add(time.Hour)
	l.advance(session.DefaultPairingTTL + time.Minute)
	l.alice.sendReports(l.ctx)
	if ps, ok := peerStateOf(t, l.alice, "carol"); ok {
		t.Fatalf("the wish outlived its expired pairing: %+v", ps)
	}
}
