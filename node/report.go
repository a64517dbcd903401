package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// Status reports (docs/PROTOCOL.md section 19, "Status reports"). A controller asks a peer with
// a report-every command (Reports); the peer records the wish (keystore.ReportTo) and from then
// on mails the controller a report command at that interval, in its own session toward the
// controller, so a report has the protocol's authentication, replay protection, exactly-once and
// rotation. The first report is whole, later ones carry only what changed since the last one the
// controller acknowledged. Neither command runs anything: each is answered in the transaction
// that accepts it (answerReportCommand), like ping.

// EventReport is a status report received (Status: "whole", "delta", "need-whole" or
// "denied"), or a report-every answered (Status: "every" or "off").
const EventReport EventKind = "report"

// ErrReportsUnsupported: the peer answered report-every as a command it does not know (denied
// or bad-command): its sealpost predates status reports.
var ErrReportsUnsupported = fmt.Errorf("the peer's sealpost is too old for status reports")

// uptimeSlack is how far a reported uptime may be from the one extrapolated from the last
// acknowledged report before a delta carries it: uptime grows with the clock, so a quiet host's
// reports leave it out, and the controller extrapolates; a reboot makes it travel.
const uptimeSlack = time.Minute

// DefaultMinReportEvery is Options.MinReportEvery's default: an agent mails one controller at
// most one report a minute, whatever interval it is asked for.
const DefaultMinReportEvery = time.Minute

// An agent backs off from a controller that does not answer: once reportMissedBackoff reports
// in a row had their lifetime without an answer, each further one doubles the interval, up to
// reportMaxBackoff (or the asked interval, when longer). Any answer ends the back-off.
const (
	reportMissedBackoff = 3
	reportMaxBackoff    = time.Hour
)

// minReportEvery is this agent's floor under the intervals controllers ask (Options.MinReportEvery).
func (n *Node) minReportEvery() time.Duration {
	if n.opts.MinReportEvery > 0 {
		return n.opts.MinReportEvery
	}
	return DefaultMinReportEvery
}

// reportEvery is the interval the agent keeps to with r: the asked one, at least the floor,
// doubled for each report from the reportMissedBackoff-th on that went unanswered in a row.
func (n *Node) reportEvery(r keystore.ReportTo) time.Duration {
	every := max(r.Every, n.minReportEvery())
	ceiling := max(every, reportMaxBackoff)
	for i := reportMissedBackoff; i <= r.Missed && every < ceiling; i++ {
		every *= 2
	}
	return min(every, ceiling)
}

// reportDue is when the next report to r may go: when it is due, but never sooner than the
// floor after the last one, and not while the last one is in flight (until it is answered, or
// its lifetime passed): a controller that never answers gets one report per lifetime, not a pile.
func (n *Node) reportDue(r keystore.ReportTo) time.Time {
	due := r.NextDue
	if r.SentAt.IsZero() {
		return due
	}
	if t := r.SentAt.Add(n.minReportEvery()); t.After(due) {
		due = t
	}
	if r.SentID != ([16]byte{}) {
		if t := r.SentAt.Add(reportTTL(n.reportEvery(r))); t.After(due) {
			due = t
		}
	}
	return due
}

// abandonReport gives up on a report of ours that had its lifetime without an answer, or that
// a new report-every made moot: its pending command, its place in the queue for a session and
// its result go, as an answered report's result does (a report would otherwise leave a result
// kept for months). An answer that still comes is refused as one for no pending command.
func (n *Node) abandonReport(tx *keystore.Tx, st TxStore, id session.CommandID) error {
	if err := st.DeletePending(id); err != nil {
		return err
	}
	if _, ok, err := tx.Queued(id); err != nil {
		return err
	} else if ok {
		if err := tx.DeleteQueued(id); err != nil {
			return err
		}
	}
	return tx.DeleteResult(id)
}

// newReportRun picks a report numbering (keystore.ReportTo.Run): random, so that a controller
// tells a new numbering from an old one without the agent keeping any history.
func newReportRun() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if v := binary.BigEndian.Uint64(b[:]); v != 0 {
			return v, nil
		}
	}
}

// reportTTL is the lifetime of a report command: about its interval, and at least a minute so
// that mail delay alone does not expire it.
func reportTTL(every time.Duration) time.Duration { return max(every, time.Minute) }

// Reports asks peer to mail status reports every interval (0 stops them) and, with wait, waits
// for its answer. It records the interval in the peer's fleet state first, so a report that
// overtakes the answer is accepted, and sends report-every as an ordinary command. The result
// of a peer too old for reports has Status "denied" or "bad-command" (ReportsUnsupported); the
// interval is then cleared again when that answer arrives.
func (n *Node) Reports(ctx context.Context, spec RunSpec, wait bool) (Result, error) {
	spec.Request = commands.Request{Name: commands.CmdReportEvery, Every: spec.Request.Every}
	if _, err := encodeRequest(spec.Request); err != nil {
		return Result{}, err
	}
	if err := n.update(func(tx *keystore.Tx, _ TxStore) error {
		if _, ok, err := tx.Peer(spec.Peer); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("no peer named %q: add it with `sealpost peer add %s --address ADDRESS`", spec.Peer, spec.Peer)
		}
		ps, _, err := tx.PeerState(spec.Peer)
		if err != nil {
			return err
		}
		ps.ReportEvery = spec.Request.Every
		return tx.PutPeerState(ps)
	}); err != nil {
		return Result{}, err
	}
	return n.Run(ctx, spec, wait, nil)
}

// askReportsAtPairing sends the report-every that `peer add --report-every` asked for, now that
// the peer is pinned, in the transaction that pins it: it waits for the session like any command.
func (n *Node) askReportsAtPairing(tx *keystore.Tx, st TxStore, peer keystore.Peer) error {
	ps, _, err := tx.PeerState(peer.Name)
	if err != nil || !ps.ReportAsk {
		return err
	}
	now := n.now()
	req := commands.Request{Name: commands.CmdReportEvery, Every: ps.ReportEvery, Sent: now}
	frame, err := encodeRequest(req)
	if err != nil {
		return err
	}
	var id session.CommandID
	if _, err := rand.Read(id[:]); err != nil {
		return err
	}
	if _, err := n.submitIn(tx, st, id, RunSpec{ID: id, Peer: peer.Name, Request: req, TTL: 24 * time.Hour}, frame, now, nil); err != nil {
		return err
	}
	ps.ReportAsk = false
	return tx.PutPeerState(ps)
}

// reportAskSweepEvery is how often the serving loop looks for report wishes of pairings that
// never completed (dropLapsedReportAsks).
const reportAskSweepEvery = time.Minute

// reportAskLapsed reports whether name's fleet row is only the wish of a `peer add
// --report-every` whose pairing is gone: the peer is not pinned, and no pairing under its name is
// armed and unexpired (it expired, was disarmed after its attempts, or was replaced).
func reportAskLapsed(tx *keystore.Tx, name string, now time.Time) (bool, error) {
	ps, ok, err := tx.PeerState(name)
	if err != nil || !ok || !ps.ReportAsk {
		return false, err
	}
	if _, pinned, err := tx.Peer(name); err != nil || pinned {
		return false, err
	}
	armed := false
	err = tx.ForEachPairing(func(_ string, blob []byte) error {
		if pr, err := decode[session.Pairing](blob, "pairing"); err == nil && pr.Name == name && pr.Expires >= now.UnixMilli() {
			armed = true
		}
		return nil
	})
	return !armed, err
}

// forgetReportAsk drops name's fleet row when it only holds the report wish of a pairing that
// never completed (ReportAsk, not pinned): AddPeer calls it when it arms a new pairing without
// --report-every, so that the new pairing does not inherit the old wish.
func (n *Node) forgetReportAsk(tx *keystore.Tx, name string) error {
	ps, ok, err := tx.PeerState(name)
	if err != nil || !ok || !ps.ReportAsk {
		return err
	}
	if _, pinned, err := tx.Peer(name); err != nil || pinned {
		return err
	}
	return dropReportWish(tx, ps) // an output cap set for the name stays (peer_output.go)
}

// dropLapsedReportAsks deletes, at most once per reportAskSweepEvery, the fleet rows that `peer
// add --report-every` wrote for pairings that are gone without completing (reportAskLapsed):
// otherwise a later pairing under the same name would inherit the wish.
func (n *Node) dropLapsedReportAsks(now time.Time) {
	if last := n.askSwept.Load(); last != nil && now.Sub(*last) < reportAskSweepEvery && !now.Before(*last) {
		return
	}
	n.askSwept.Store(&now)
	var lapsed []string
	err := n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachPeerState(func(ps keystore.PeerState) error {
			if !ps.ReportAsk {
				return nil
			}
			gone, err := reportAskLapsed(tx, ps.Name, now)
			if gone {
				lapsed = append(lapsed, ps.Name)
			}
			return err
		})
	})
	if err == nil && len(lapsed) > 0 {
		err = n.store.Update(func(tx *keystore.Tx) error {
			for _, name := range lapsed {
				if gone, err := reportAskLapsed(tx, name, now); err != nil {
					return err
				} else if gone {
					ps, _, err := tx.PeerState(name)
					if err != nil {
						return err
					}
					if err := dropReportWish(tx, ps); err != nil {
						return err
					}
					n.log.Info("the pairing asked to report is gone; its report interval is forgotten", "op", "report", "peer", name)
				}
			}
			return nil
		})
	}
	if err != nil {
		n.log.Warn("report wishes of lapsed pairings not looked at; will retry", "op", "report", "err", err)
	}
}

// ReportsUnsupported reports whether r, the result of a report-every, says the peer does not
// know status reports: it refused the command as unknown (an ERROR denied or bad-command; a
// peer that knows report-every always accepts it from a paired peer).
func ReportsUnsupported(r Result) bool {
	return r.Status == session.CodeDenied.String() || r.Status == session.CodeBadCommand.String()
}

// reportState is a report as the agent built it, whole: what it keeps of the report in flight
// and of the last one acknowledged (keystore.ReportTo's SentState, AckedState).
type reportState struct {
	SysInfo   map[string]json.RawMessage `json:"sysinfo"`
	Version   string                     `json:"version,omitempty"`
	Queue     int64                      `json:"queue,omitempty"`
	LastError string                     `json:"last_error,omitempty"`
	// Checks are the results of the agent's own checks (checks.go), by name.
	Checks map[string]commands.CheckResult `json:"checks,omitempty"`
	At     time.Time                       `json:"at"` // the agent's clock when it was taken
}

// reportStatus is the report's own part as the controller keeps it (keystore.PeerState.Report).
type reportStatus struct {
	Version   string `json:"version,omitempty"`
	Queue     int64  `json:"queue"`
	LastError string `json:"last_error,omitempty"`
	// Checks are the results of the peer's own checks, merged from its reports.
	Checks map[string]commands.CheckResult `json:"checks,omitempty"`
}

// reportSysInfo is where a report's facts come from; tests replace it to control what changes.
var reportSysInfo = func(n *Node) commands.SysInfo { return n.reg.SysInfo() }

// testHookReport, when set (tests), sees each report a controller accepts, as decoded.
var testHookReport func(to *Node, from string, rep commands.Report)

// answerReportCommand answers a report or report-every command in the transaction that accepts
// it: it records what the command means and seals the answer (a RESPONSE, or ERROR denied for a
// report nobody asked for). Nothing runs.
func (n *Node) answerReportCommand(tx *keystore.Tx, st TxStore, t *session.Ticket, req commands.Request) ([]Event, []byte, error) {
	peer, ok, err := tx.PeerByFingerprint(t.Peer)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		_, err := n.eng.Fail(st, t, session.CodeDenied, "the peer was removed")
		return nil, nil, err
	}
	now := n.now()
	ev := Event{Kind: EventReport, Peer: peer.Name, Command: t.Command}
	res := commands.Result{Outcome: commands.OutcomeExited, Started: now.UTC()}
	switch req.Name {
	case commands.CmdReportEvery:
		if err := n.takeReportWish(tx, st, peer.Name, req.Every, now, &ev, &res); err != nil {
			return nil, nil, err
		}
	case commands.CmdReport:
		// Only the store's own trouble is an error here; anything about the report itself is
		// an answer to it, in this transaction (THREATS row 30: an error would hold the mail,
		// and every one behind it, in the inbox).
		v, err := n.acceptReport(tx, peer.Name, *req.Report, now)
		if err != nil {
			return nil, nil, err
		}
		ev.Status, res.NeedWhole = v.status, v.needWhole
		if v.refuse != 0 {
			ev.Detail = v.detail
			pkg, err := n.eng.Fail(st, t, v.refuse, v.detail)
			return []Event{ev}, pkg, err
		}
	}
	frame, err := encodeResult(res)
	if err != nil {
		return nil, nil, err
	}
	if err := n.eng.Start(st, t); err != nil {
		return nil, nil, err
	}
	pkg, err := n.eng.Complete(st, t, frame)
	return []Event{ev}, pkg, err
}

// takeReportWish records a report-every from peer: the interval, at least this agent's floor
// (the answer and the log say when it was raised), with the next report due now; 0 deletes the
// wish. A report in flight is given up either way: a refusal of it cannot end the new wish, and
// its record does not linger.
func (n *Node) takeReportWish(tx *keystore.Tx, st TxStore, peer string, asked time.Duration, now time.Time, ev *Event, res *commands.Result) error {
	r, had, err := tx.ReportTo(peer)
	if err != nil {
		return err
	}
	if had && r.SentID != ([16]byte{}) {
		if err := n.abandonReport(tx, st, r.SentID); err != nil {
			return err
		}
	}
	if asked == 0 {
		ev.Status = "off"
		return tx.DeleteReportTo(peer)
	}
	every := max(asked, n.minReportEvery())
	ev.Status, ev.Detail = "every", every.String()
	res.ReportEvery = every // the controller counts STALE by the interval used
	if every != asked {
		res.Stdout = fmt.Appendf(nil, "reporting every %v, this agent's shortest interval (sealpost agent --min-report-every); %v was asked\n", every, asked)
		n.log.Info("status reports asked more often than this agent's shortest interval; reporting at that interval", "op", "report", "peer", peer, "asked", asked, "every", every)
	}
	if !had {
		// Reporting starts: a numbering of its own.
		if r.Run, err = newReportRun(); err != nil {
			return err
		}
	}
	// The numbering and the acknowledged state carry on (a changed interval does not cost a
	// whole report); the controller just spoke, so any back-off ends.
	r.Name, r.Every, r.NextDue, r.Missed = peer, every, now, 0
	r.SentID, r.SentState = [16]byte{}, nil
	return tx.PutReportTo(r)
}

// reportVerdict is what a controller answers a report: exit 0 (refuse 0), with needWhole when
// nothing of it was kept for want of its base; or the ERROR refuse with detail. status names it
// for the event.
type reportVerdict struct {
	status    string
	needWhole bool
	refuse    session.ErrorCode
	detail    string
}

// saturatingUptime is u advanced by d (≥ 0), at most commands.MaxUptime: an uptime held from a
// hostile peer must not wrap around to a negative one.
func saturatingUptime(u, d time.Duration) time.Duration {
	u = min(u, commands.MaxUptime)
	if d <= 0 {
		return u
	}
	if d >= commands.MaxUptime-u {
		return commands.MaxUptime
	}
	return u + d
}

// acceptReport merges a report into the peer's fleet state: a whole report replaces it, a delta
// against the report the state holds updates the members it carries. A report of the numbering
// held (run) that is not newer than the one held is not kept, nor a delta against any other base,
// nor one that does not merge (each: needWhole); a report from a peer not asked is denied. Its
// error is the store's own trouble only: whatever the report holds, the answer is a verdict.
func (n *Node) acceptReport(tx *keystore.Tx, name string, rep commands.Report, now time.Time) (reportVerdict, error) {
	ps, _, err := tx.PeerState(name)
	if err != nil {
		return reportVerdict{}, err
	}
	needWhole := reportVerdict{status: "need-whole", needWhole: true}
	if ps.ReportEvery <= 0 {
		return reportVerdict{status: "denied", refuse: session.CodeDenied, detail: "no status reports were asked of this peer (sealpost peer report)"}, nil
	}
	sameRun := rep.Run == ps.ReportRun && ps.ReportSeq != 0
	switch {
	case sameRun && rep.Seq <= ps.ReportSeq:
		// Older than what is held (mail overtaken), or the agent's numbering went back (its
		// state restored): nothing kept; need_whole makes the agent, if this is its report in
		// flight, start a new numbering with a whole report.
		needWhole.status = "old"
		return needWhole, nil
	case rep.Base != 0 && (!sameRun || rep.Base != ps.ReportSeq):
		return needWhole, nil
	}
	var (
		base commands.SysInfo
		own  reportStatus
	)
	status := "whole"
	if rep.Base != 0 {
		status = "delta"
		// What is held is the merge of earlier reports: when it does not read back, a whole
		// report replaces it.
		if len(ps.SysInfo) > 0 && json.Unmarshal(ps.SysInfo, &base) != nil ||
			len(ps.Report) > 0 && json.Unmarshal(ps.Report, &own) != nil {
			return needWhole, nil
		}
		// A delta without uptime means it grew with the clock (uptimeSlack).
		if _, ok := rep.SysInfo["uptime"]; !ok && base.Uptime > 0 && !ps.SysInfoAt.IsZero() {
			base.Uptime = saturatingUptime(base.Uptime, now.Sub(ps.SysInfoAt))
		}
	}
	si, err := commands.MergeSysInfo(base, rep.SysInfo)
	if err != nil {
		if rep.Base != 0 {
			return needWhole, nil // the base held is out of the limits: a whole report replaces it
		}
		return reportVerdict{status: "bad", refuse: session.CodeBadCommand, detail: err.Error()}, nil
	}
	if rep.Version != nil {
		own.Version = *rep.Version
	}
	if rep.Queue != nil {
		own.Queue = *rep.Queue
	}
	if rep.LastError != nil {
		own.LastError = *rep.LastError
	}
	var fits bool
	if own.Checks, fits = mergeChecks(own.Checks, rep); !fits {
		if rep.Base != 0 {
			return needWhole, nil
		}
		return reportVerdict{status: "bad", refuse: session.CodeBadCommand, detail: "too many checks"}, nil // unreachable: the decoder bounds them
	}
	sib, err1 := json.Marshal(si)
	ownb, err2 := json.Marshal(own)
	if err := errors.Join(err1, err2); err != nil {
		return reportVerdict{status: "bad", refuse: session.CodeBadCommand, detail: err.Error()}, nil // unreachable: both were checked
	}
	ps.SysInfo, ps.Report = sib, ownb
	ps.SysInfoAt, ps.LastReport, ps.ReportRun, ps.ReportSeq = now, now, rep.Run, rep.Seq
	if testHookReport != nil {
		testHookReport(n, name, rep)
	}
	return reportVerdict{status: status}, tx.PutPeerState(ps)
}

// reportAnswered notes, in the transaction that records it, the answer to a command of ours
// that was a status report or a report-every: on the reporting side an acknowledged report
// becomes the base of the next delta, need_whole makes the next report whole and due now, and a
// denial ends the reports to that peer; the report's result record is dropped, since reports
// would otherwise fill the results history. On the controller's side a report-every the peer
// refused clears the interval recorded for it. code is the ERROR's, or 0 for a RESPONSE.
func (n *Node) reportAnswered(tx *keystore.Tx, peer string, id session.CommandID, kind string, res commands.Result, code session.ErrorCode) error {
	// By the request's name, never the command line: a program may be called report.
	switch kind {
	case commands.CmdReportEvery:
		ps, ok, err := tx.PeerState(peer)
		if err != nil || !ok {
			return err
		}
		switch {
		case code == session.CodeDenied || code == session.CodeBadCommand:
			ps.ReportEvery = 0 // the peer does not report
		case code == 0 && res.ReportEvery > ps.ReportEvery:
			// The agent reports less often than asked (its floor): STALE counts by that.
			ps.ReportEvery = res.ReportEvery
		default:
			return nil
		}
		return tx.PutPeerState(ps)
	case commands.CmdReport:
	default:
		return nil
	}
	r, ok, err := tx.ReportTo(peer)
	if err != nil {
		return err
	}
	if ok && r.SentID == id {
		r.Missed = 0 // answered: no back-off
		switch {
		case code == session.CodeDenied:
			ok = false
			if err := tx.DeleteReportTo(peer); err != nil {
				return err
			}
		case code != 0:
			// Expired, say: nothing was kept; the next report is a delta against the same base.
		case res.NeedWhole:
			// Run 0: the next report starts a new numbering (sendReport), whole.
			r.AckedSeq, r.AckedState, r.AckedAt, r.NextDue, r.Run = 0, nil, time.Time{}, n.now(), 0
		case res.ExitCode == 0:
			var s reportState
			if err := json.Unmarshal(r.SentState, &s); err == nil {
				r.AckedSeq, r.AckedState, r.AckedAt = r.Seq, r.SentState, s.At
			}
		}
		if ok {
			r.SentID, r.SentState = [16]byte{}, nil
			if err := tx.PutReportTo(r); err != nil {
				return err
			}
		}
	}
	return tx.DeleteResult(id)
}

// sendReports mails the status reports that are due and returns how long until the next one is
// (math.MaxInt64 when none is asked). The serving loop calls it before each wait for mail and
// bounds the wait by it.
func (n *Node) sendReports(ctx context.Context) time.Duration {
	var due []string
	next := time.Duration(math.MaxInt64)
	now := n.now()
	n.dropLapsedReportAsks(now)
	if err := n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachReportTo(func(r keystore.ReportTo) error {
			if d := n.reportDue(r).Sub(now); d > 0 {
				next = min(next, d)
			} else {
				due = append(due, r.Name)
			}
			return nil
		})
	}); err != nil {
		n.log.Warn("status reports unreadable", "op", "report", "err", err)
		return next
	}
	if len(due) == 0 {
		return next
	}
	cur := n.reportState(ctx, now)
	sent := false
	for _, name := range due {
		every, err := n.sendReport(name, cur, now)
		if err != nil {
			n.log.Warn("status report not sent; will retry", "op", "report", "peer", name, "err", err)
			every = time.Minute
		}
		if every > 0 {
			sent = true
			next = min(next, every)
		}
	}
	if sent {
		if err := n.flushSoon(ctx); err != nil {
			n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
		}
	}
	return next
}

// sysinfoWait bounds how long a report waits for the host's facts: sysinfo asks every file system
// for its size, and statfs on a hung network or FUSE mount does not return; the serving loop must
// not hang with it.
const sysinfoWait = 10 * time.Second

// boundedSysInfo collects the host's facts within sysinfoWait. When they do not come in time, or
// an earlier collection is still stuck, it returns the last facts collected (fresh false), so
// that the report changes nothing it does not know.
func (n *Node) boundedSysInfo() (si commands.SysInfo, fresh bool) {
	last := func() commands.SysInfo {
		if p := n.lastSysInfo.Load(); p != nil {
			return *p
		}
		return commands.SysInfo{}
	}
	if !n.sysinfoBusy.CompareAndSwap(false, true) {
		return last(), false
	}
	ch := make(chan commands.SysInfo, 1)
	go func() {
		si := reportSysInfo(n)
		n.lastSysInfo.Store(&si)
		// Free before handing the facts over: the next report may ask at once.
		n.sysinfoBusy.Store(false)
		ch <- si
	}()
	t := time.NewTimer(sysinfoWait)
	defer t.Stop()
	select {
	case si := <-ch:
		return si, true
	case <-t.C:
		return last(), false
	}
}

// reportState takes the state a report tells.
func (n *Node) reportState(ctx context.Context, now time.Time) reportState {
	// The checks run while sysinfo is collected: each is bounded on its own.
	checks := make(chan map[string]commands.CheckResult, 1)
	go func() {
		c, _ := n.boundedChecks(ctx)
		checks <- c
	}()
	si, fresh := n.boundedSysInfo()
	s := reportState{SysInfo: commands.SysInfoMembers(si), Version: n.opts.Version,
		Queue: int64(n.exec.queued()), At: now.UTC()}
	s.Checks = <-checks
	for _, h := range n.health.snapshot() {
		if !h.FailingSince.IsZero() && h.LastError != "" {
			s.LastError = h.Role + ": " + h.LastError
		}
	}
	if !fresh {
		s.LastError = fmt.Sprintf("sysinfo: the host's facts did not come within %s (a hung mount?); the last ones are reported", sysinfoWait)
	}
	if len(s.LastError) > commands.MaxReportError {
		s.LastError = strings.ToValidUTF8(s.LastError[:commands.MaxReportError], "")
	}
	return s
}

// sendReport submits one report to name if it is still due, in one transaction with its
// bookkeeping, and returns the report's interval (0: none sent, the wish is gone).
func (n *Node) sendReport(name string, cur reportState, now time.Time) (time.Duration, error) {
	var id session.CommandID
	if _, err := rand.Read(id[:]); err != nil {
		return 0, err
	}
	var every time.Duration
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		r, ok, err := tx.ReportTo(name)
		if err != nil || !ok || n.reportDue(r).After(now) {
			return err
		}
		if _, pinned, err := tx.Peer(name); err != nil {
			return err
		} else if !pinned {
			return tx.DeleteReportTo(name) // the peer is gone: no one to report to
		}
		if r.SentID != ([16]byte{}) {
			// The report in flight had its lifetime without an answer (reportDue waited for it).
			if err := n.abandonReport(tx, st, r.SentID); err != nil {
				return err
			}
			r.SentID, r.SentState, r.Missed = [16]byte{}, nil, r.Missed+1
			if r.Missed >= reportMissedBackoff {
				n.log.Warn("status reports go unanswered; reporting less often until one is answered", "op", "report", "peer", name, "unanswered", r.Missed, "every", n.reportEvery(r))
			}
		}
		if r.Run == 0 {
			// A new numbering (reporting started, or the controller answered need_whole)
			// starts with a whole report.
			if r.Run, err = newReportRun(); err != nil {
				return err
			}
			r.AckedSeq, r.AckedState, r.AckedAt = 0, nil, time.Time{}
		}
		every = n.reportEvery(r)
		rep := buildReport(r, cur)
		frame, err := encodeRequest(commands.Request{Name: commands.CmdReport, Report: &rep, Sent: now})
		if err != nil {
			return err
		}
		spec := RunSpec{ID: id, Peer: name, Request: commands.Request{Name: commands.CmdReport}, TTL: reportTTL(every)}
		if _, err := n.submitIn(tx, st, id, spec, frame, now, nil); err != nil {
			return err
		}
		if r.SentState, err = json.Marshal(cur); err != nil {
			return err
		}
		r.Seq, r.SentID, r.SentAt = rep.Seq, id, now
		r.NextDue = r.NextDue.Add(every)
		if !r.NextDue.After(now) {
			r.NextDue = now.Add(every) // the agent was away: one report now, not one per missed slot
		}
		return tx.PutReportTo(r)
	})
	return every, err
}

// buildReport makes report r.Seq+1 of cur: whole when nothing was acknowledged, else the members
// that changed since the acknowledged report (none at all for a quiet host: the heartbeat).
func buildReport(r keystore.ReportTo, cur reportState) commands.Report {
	rep := commands.Report{Run: r.Run, Seq: r.Seq + 1}
	var acked reportState
	if r.AckedSeq == 0 || json.Unmarshal(r.AckedState, &acked) != nil || acked.SysInfo == nil {
		rep.SysInfo = maps.Clone(cur.SysInfo)
		rep.Version, rep.Queue, rep.LastError = &cur.Version, &cur.Queue, &cur.LastError
		rep.Checks = maps.Clone(cur.Checks)
		return rep
	}
	rep.Base = r.AckedSeq
	rep.SysInfo = commands.ChangedMembers(acked.SysInfo, cur.SysInfo)
	if _, ok := rep.SysInfo["uptime"]; ok && uptimeOnTrack(acked, cur) {
		delete(rep.SysInfo, "uptime")
		if len(rep.SysInfo) == 0 {
			rep.SysInfo = nil
		}
	}
	if cur.Version != acked.Version {
		rep.Version = &cur.Version
	}
	if cur.Queue != acked.Queue {
		rep.Queue = &cur.Queue
	}
	if cur.LastError != acked.LastError {
		rep.LastError = &cur.LastError
	}
	rep.Checks, rep.ChecksRemoved = changedChecks(acked.Checks, cur.Checks)
	return rep
}

// uptimeOnTrack reports whether cur's uptime is the acknowledged one grown by the time since,
// within uptimeSlack: then the controller's extrapolation is good enough and it stays out.
func uptimeOnTrack(acked, cur reportState) bool {
	var a, c time.Duration
	if json.Unmarshal(acked.SysInfo["uptime"], &a) != nil || json.Unmarshal(cur.SysInfo["uptime"], &c) != nil || a == 0 {
		return false
	}
	want := a + cur.At.Sub(acked.At)
	return c >= want-uptimeSlack && c <= want+uptimeSlack
}

// queued counts the commands the executor holds: accepted and waiting, or running.
func (x *executor) queued() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.held)
}
