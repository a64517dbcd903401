package web

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sealpost/sealpost/node"
)

// Page sizes: the fleet page lists every peer; result lists are cut to the most recent.
const (
	recentResults = 50
	peerResults   = 20
	maxOutput     = 16 << 10 // bytes of each output stream shown on a page
)

type fleetPage struct {
	Total, Stale, Pending int
	Rows                  []FleetRow
}

func (s *server) fleet(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "fleet", "Fleet", func(ctx context.Context, src Source, _ node.Status) (any, error) {
		fl, err := src.Fleet(ctx, "")
		if err != nil {
			return nil, err
		}
		now := s.opts.Now()
		p := fleetPage{Total: len(fl), Rows: make([]FleetRow, 0, len(fl))}
		for _, e := range fl {
			if e.Stale {
				p.Stale++
			}
			p.Pending += e.Pending
			p.Rows = append(p.Rows, FleetRowOf(e, now))
		}
		return p, nil
	})
}

type fact struct {
	Name, Value string
	Bad         bool
}

type diskRow struct{ Mount, Size, Free, Pct string }

type sessionRow struct {
	Direction, ID, Status string
	Epoch                 uint64
}

type peerPage struct {
	Name     string
	Stale    bool
	Facts    []fact
	Checks   []checkRow
	Disks    []diskRow
	Sessions []sessionRow
	Report   string
	Results  []resultRow
}

// checkRow is one of the peer's own checks, as its last status report said.
type checkRow struct {
	Name, State, Output, At string
	Failing                 bool
}

func (s *server) peer(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.render(w, r, "peer", "Peer "+name, func(ctx context.Context, src Source, _ node.Status) (any, error) {
		fl, err := src.Fleet(ctx, "")
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(fl, func(e node.FleetEntry) bool { return e.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("no peer %q: %w (see the fleet page for the peers this node knows)", name, errNotFound)
		}
		e := fl[i]
		peers, err := src.Peers(ctx)
		if err != nil {
			return nil, err
		}
		results, err := src.RecentResults(ctx, name, peerResults)
		if err != nil {
			return nil, err
		}
		now := s.opts.Now()
		p := peerPage{Name: e.Name, Stale: e.Stale}
		add := func(name, value string) { p.Facts = append(p.Facts, fact{Name: name, Value: value}) }
		add("address", e.Address)
		add("tags", orDash(strings.Join(e.Tags, ", ")))
		add("session", fmt.Sprintf("%s, key epoch %d", e.Status, e.Epoch))
		add("last heard", when(now, LastHeard(e)))
		if !e.PingAt.IsZero() {
			add("round trip", fmt.Sprintf("%s (ping answered %s)", e.RoundTrip.Round(time.Millisecond), when(now, e.PingAt)))
		}
		if e.ReportEvery > 0 {
			add("reports", fmt.Sprintf("every %s, last %s", e.ReportEvery, when(now, e.LastReport)))
		}
		add("pending", strconv.Itoa(e.Pending)+" "+plural(e.Pending, "command", "commands")+" waiting for an answer")
		if len(e.Checks) > 0 {
			add("checks", fmt.Sprintf("%d of %d failing", e.ChecksFailing, len(e.Checks)))
		}
		for _, name := range slices.Sorted(maps.Keys(e.Checks)) {
			c := e.Checks[name]
			row := checkRow{Name: name, State: "ok", Output: c.Output, At: when(now, c.At)}
			if !c.OK {
				row.State, row.Failing = fmt.Sprintf("FAILING (exit %d)", c.Exit), true
			}
			p.Checks = append(p.Checks, row)
		}
		if si := e.SysInfo; si != nil {
			add("host", orDash(si.Hostname))
			add("os", orDash(strings.TrimSpace(si.OS+" "+si.Kernel+" "+si.Arch)))
			add("uptime", shortDuration(si.Uptime))
			add("load", fmt.Sprintf("%s (%d CPUs)", loads(si.Load1, si.Load5, si.Load15), si.NumCPU))
			if e.MemFreePct != nil {
				add("memory", fmt.Sprintf("%s available of %s (%s)", bytesIEC(si.MemAvailable), bytesIEC(si.MemTotal), percent(*e.MemFreePct)))
			}
			add("sealpost", strings.TrimSpace(si.Version+" "+si.GoVersion))
			add("sysinfo from", when(now, e.SysInfoAt))
			for _, d := range si.Disks {
				row := diskRow{Mount: d.Mount, Size: bytesIEC(d.Total), Free: bytesIEC(d.Free), Pct: "-"}
				if d.Total > 0 {
					row.Pct = percent(100 * float64(d.Free) / float64(d.Total))
				}
				p.Disks = append(p.Disks, row)
			}
		} else {
			add("host", "no sysinfo yet (sealpost sysinfo "+e.Name+")")
		}
		if j := slices.IndexFunc(peers, func(pi node.PeerInfo) bool { return pi.Name == name }); j >= 0 {
			pi := peers[j]
			add("fingerprint", orDash(pi.Fingerprint))
			add("may run here", orDash(strings.Join(pi.Allow, " ")))
			for _, sess := range []struct {
				dir  string
				info *node.SessionInfo
			}{{"we command it", pi.Outbound}, {"it commands us", pi.Inbound}} {
				if sess.info != nil {
					p.Sessions = append(p.Sessions, sessionRow{Direction: sess.dir, ID: sess.info.ID, Status: sess.info.Status, Epoch: sess.info.Epoch})
				}
			}
		}
		if len(e.Report) > 0 {
			p.Report = cut(e.Report, maxOutput)
		}
		p.Results = recent(results, peerResults, now)
		return p, nil
	})
}

type resultsPage struct {
	Rows []resultRow
}

type resultRow struct {
	ID, Short, Peer, PeerHref, Command, Status, Exit, Sent, Took, Error, Stdout, Stderr string
	StdoutCut, StderrCut                                                                bool
}

func (s *server) results(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "results", "Results", func(ctx context.Context, src Source, _ node.Status) (any, error) {
		rs, err := src.RecentResults(ctx, "", recentResults)
		if err != nil {
			return nil, err
		}
		return resultsPage{Rows: recent(rs, recentResults, s.opts.Now())}, nil
	})
}

// recent is the rows of the first n of rs (RecentResults gives them newest first).
func recent(rs []node.Result, n int, now time.Time) []resultRow {
	rs = rs[:min(n, len(rs))]
	out := make([]resultRow, 0, len(rs))
	for _, r := range rs {
		id := r.CommandID.String()
		row := resultRow{ID: id, Short: id[:min(12, len(id))], Peer: r.Peer, PeerHref: peerHref(r.Peer),
			Command: strings.Join(r.Command, " "), Status: r.Status, Exit: "-", Sent: when(now, r.Sent), Took: "-", Error: r.Error}
		if r.Status == node.StatusDone {
			if code, ok := r.ShellExitCode(); ok {
				row.Exit = strconv.Itoa(code)
			} else {
				row.Exit = "?"
			}
		}
		if !r.Finished.IsZero() {
			row.Took = r.Finished.Sub(r.Sent).Round(time.Millisecond).String()
		}
		stdout, stderr := r.Stdout, r.Stderr
		outLen, errLen := int64(len(stdout)), int64(len(stderr))
		if r.Streamed && node.Final(r.Status) {
			// A streamed output is in spool files: only its start is read, for the page.
			stdout, stderr, outLen, errLen = fileHead(r.StdoutPath, maxOutput+1), fileHead(r.StderrPath, maxOutput+1), r.StdoutSize, r.StderrSize
		}
		row.Stdout, row.StdoutCut = cut(stdout, maxOutput), r.StdoutTruncated || outLen > maxOutput
		row.Stderr, row.StderrCut = cut(stderr, maxOutput), r.StderrTruncated || errLen > maxOutput
		out = append(out, row)
	}
	return out
}

type statusPage struct{ Facts []fact }

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "status", "Status", func(ctx context.Context, _ Source, st node.Status) (any, error) {
		now := s.opts.Now()
		var p statusPage
		add := func(name, value string, bad bool) {
			p.Facts = append(p.Facts, fact{Name: name, Value: value, Bad: bad})
		}
		add("node", st.Address+"  "+st.Fingerprint, false)
		if st.Agent {
			add("agent", fmt.Sprintf("running since %s (pid %d)", when(now, st.AgentSince), st.AgentPID), false)
		} else {
			add("agent", "not running: nothing reads this node's mail (start `sealpost agent`)", true)
		}
		for _, sv := range st.Servers {
			name := strings.ToUpper(sv.Role) + " " + sv.Addr
			switch {
			case !sv.FailingSince.IsZero():
				add(name, fmt.Sprintf("failing since %s: %s", when(now, sv.FailingSince), sv.LastError), true)
			case sv.LastOK.IsZero():
				add(name, "not used yet", false)
			default:
				add(name, "ok, last exchange "+when(now, sv.LastOK), false)
			}
		}
		add("mail", fmt.Sprintf("IMAP %s, SMTP %s, TLS %s", st.IMAP, st.SMTP, st.TLS), false)
		add("peers", fmt.Sprintf("%d, %d of them with a confirmed session", st.Peers, st.PeersConfirmed), false)
		if st.Waiting == 0 {
			add("commands", "none waiting for an answer", false)
		} else {
			add("commands", fmt.Sprintf("%d waiting for an answer, the oldest sent %s", st.Waiting, when(now, st.OldestWaiting)), false)
		}
		if st.Outbox == 0 {
			add("outbox", "empty", false)
		} else {
			add("outbox", fmt.Sprintf("%d %s not sent yet, next try %s", st.Outbox, plural(st.Outbox, "mail", "mails"), st.NextAttempt.Local().Format("15:04:05")), false)
			if st.LastError != "" {
				add("last error", st.LastError, true)
			}
		}
		if !st.LastPrune.IsZero() {
			add("cleanup", "old processed mail last looked for "+when(now, st.LastPrune), false)
		}
		add("state", st.StateDir, false)
		return p, nil
	})
}

// schedulesPage lists the schedules and how their last run went.
type schedulesPage struct {
	Schedules []scheduleRow
}

type scheduleRow struct {
	Name, Target, Command, When, Next, Last, LastClass string
	Failed                                             bool
}

func (s *server) schedules(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, "schedules", "Schedules", func(ctx context.Context, src Source, _ node.Status) (any, error) {
		list, err := src.Schedules(ctx)
		if err != nil {
			return nil, err
		}
		now := s.opts.Now()
		var p schedulesPage
		for _, sc := range list {
			row := scheduleRow{Name: sc.Name, Target: sc.Target, Next: when(now, sc.Next), Last: "not run yet"}
			row.Command = sc.Request.Name
			if sc.Request.Name == "exec" {
				row.Command = strings.Join(sc.Request.Argv, " ")
			}
			switch {
			case sc.Cron != "":
				row.When = "cron " + sc.Cron
			default:
				row.When = "every " + sc.Every.String()
			}
			if r := sc.LastRun; r != nil {
				switch {
				case !r.Done:
					row.Last = "fired " + when(now, r.Fired) + ", waiting for answers"
				case r.Failed:
					row.Last, row.Failed = "FAILED, fired "+when(now, r.Fired), true
				default:
					row.Last = "ok, fired " + when(now, r.Fired)
				}
			}
			p.Schedules = append(p.Schedules, row)
		}
		return p, nil
	})
}

func peerHref(name string) string { return "/peer/" + url.PathEscape(name) }

// when shows a time as 15:04:05 today or with its date otherwise, and how long ago.
func when(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	layout := "15:04:05"
	if y, m, d := t.Local().Date(); y != now.Local().Year() || m != now.Local().Month() || d != now.Local().Day() {
		layout = "2006-01-02 15:04:05"
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format(layout), shortDuration(now.Sub(t)))
}

// cut is at most max bytes of b as valid UTF-8 text (html/template escapes it; invalid bytes
// become U+FFFD rather than reaching the browser raw).
func cut(b []byte, max int) string {
	return strings.ToValidUTF8(string(b[:min(len(b), max)]), "\uFFFD")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// fileHead reads at most n bytes from the start of a file (nothing when it cannot be read).
func fileHead(path string, n int) []byte {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, int64(n)))
	return b
}
