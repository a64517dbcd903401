package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
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
	At        time.Time                  `json:"at"` // the agent's clock when it was taken
}

// reportStatus is the report's own part as the controller keeps it (keystore.PeerState.Report).
type reportStatus struct {
	Version   string `json:"version,omitempty"`
	Queue     int64  `json:"queue"`
	LastError string `json:"last_error,omitempty"`
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
		ev.Status = "off"
		if req.Every == 0 {
			err = tx.DeleteReportTo(peer.Name)
		} else {
			ev.Status, ev.Detail = "every", req.Every.String()
			var r keystore.ReportTo
			if r, _, err = tx.ReportTo(peer.Name); err == nil {
				// The numbering and the acknowledged state carry on (a changed interval does not
				// cost a whole report); the report in flight, if any, is no longer tracked, so a
				// refusal of it cannot end the new wish.
				r.Name, r.Every, r.NextDue = peer.Name, req.Every, now
				r.SentID, r.SentState = [16]byte{}, nil
				err = tx.PutReportTo(r)
			}
		}
	case commands.CmdReport:
		var deny string
		ev.Status, deny, res.NeedWhole, err = n.acceptReport(tx, peer.Name, *req.Report, now)
		if err == nil && deny != "" {
			pkg, err := n.eng.Fail(st, t, session.CodeDenied, deny)
			return []Event{ev}, pkg, err
		}
	}
	if err != nil {
		return nil, nil, err
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

// acceptReport merges a report into the peer's fleet state: a whole report replaces it, a delta
// against the report the state holds updates the members it carries. A delta against any other
// base is not kept (needWhole); a report from a peer not asked to report is denied.
func (n *Node) acceptReport(tx *keystore.Tx, name string, rep commands.Report, now time.Time) (status, deny string, needWhole bool, err error) {
	ps, _, err := tx.PeerState(name)
	if err != nil {
		return "", "", false, err
	}
	if ps.ReportEvery <= 0 {
		return "denied", "no status reports were asked of this peer (sealpost peer report)", false, nil
	}
	if rep.Base != 0 && rep.Base != ps.ReportSeq {
		return "need-whole", "", true, nil
	}
	var (
		base commands.SysInfo
		own  reportStatus
	)
	status = "whole"
	if rep.Base != 0 {
		status = "delta"
		if len(ps.SysInfo) > 0 {
			if err := json.Unmarshal(ps.SysInfo, &base); err != nil {
				return "", "", false, fmt.Errorf("peer state of %s: %w", name, err)
			}
		}
		if len(ps.Report) > 0 {
			if err := json.Unmarshal(ps.Report, &own); err != nil {
				return "", "", false, fmt.Errorf("peer state of %s: %w", name, err)
			}
		}
		// A delta without uptime means it grew with the clock (uptimeSlack).
		if _, ok := rep.SysInfo["uptime"]; !ok && base.Uptime > 0 && !ps.SysInfoAt.IsZero() {
			base.Uptime += max(now.Sub(ps.SysInfoAt), 0)
		}
	}
	si, err := commands.MergeSysInfo(base, rep.SysInfo)
	if err != nil {
		return "", "", false, err // unreachable: the request decoded
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
	if ps.SysInfo, err = json.Marshal(si); err != nil {
		return "", "", false, err
	}
	if ps.Report, err = json.Marshal(own); err != nil {
		return "", "", false, err
	}
	ps.SysInfoAt, ps.LastReport, ps.ReportSeq = now, now, rep.Seq
	if testHookReport != nil {
		testHookReport(n, name, rep)
	}
	return status, "", false, tx.PutPeerState(ps)
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
		if code != session.CodeDenied && code != session.CodeBadCommand {
			return nil
		}
		ps, ok, err := tx.PeerState(peer)
		if err != nil || !ok {
			return err
		}
		ps.ReportEvery = 0
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
		switch {
		case code == session.CodeDenied:
			ok = false
			if err := tx.DeleteReportTo(peer); err != nil {
				return err
			}
		case code != 0:
			// Expired, say: nothing was kept; the next report is a delta against the same base.
		case res.NeedWhole:
			r.AckedSeq, r.AckedState, r.AckedAt, r.NextDue = 0, nil, time.Time{}, n.now()
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
	if err := n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachReportTo(func(r keystore.ReportTo) error {
			if d := r.NextDue.Sub(now); d > 0 {
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
	cur := n.reportState(now)
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
		defer n.sysinfoBusy.Store(false)
		si := reportSysInfo(n)
		n.lastSysInfo.Store(&si)
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
func (n *Node) reportState(now time.Time) reportState {
	si, fresh := n.boundedSysInfo()
	s := reportState{SysInfo: commands.SysInfoMembers(si), Version: n.opts.Version,
		Queue: int64(n.exec.queued()), At: now.UTC()}
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
		if err != nil || !ok || r.NextDue.After(now) {
			return err
		}
		if _, pinned, err := tx.Peer(name); err != nil {
			return err
		} else if !pinned {
			return tx.DeleteReportTo(name) // the peer is gone: no one to report to
		}
		rep := buildReport(r, cur)
		frame, err := encodeRequest(commands.Request{Name: commands.CmdReport, Report: &rep, Sent: now})
		if err != nil {
			return err
		}
		spec := RunSpec{ID: id, Peer: name, Request: commands.Request{Name: commands.CmdReport}, TTL: reportTTL(r.Every)}
		if _, err := n.submitIn(tx, st, id, spec, frame, now, nil); err != nil {
			return err
		}
		if r.SentState, err = json.Marshal(cur); err != nil {
			return err
		}
		r.Seq, r.SentID = rep.Seq, id
		r.NextDue = r.NextDue.Add(r.Every)
		if !r.NextDue.After(now) {
			r.NextDue = now.Add(r.Every) // the agent was away: one report now, not one per missed slot
		}
		every = r.Every
		return tx.PutReportTo(r)
	})
	return every, err
}

// buildReport makes report r.Seq+1 of cur: whole when nothing was acknowledged, else the members
// that changed since the acknowledged report (none at all for a quiet host: the heartbeat).
func buildReport(r keystore.ReportTo, cur reportState) commands.Report {
	rep := commands.Report{Seq: r.Seq + 1}
	var acked reportState
	if r.AckedSeq == 0 || json.Unmarshal(r.AckedState, &acked) != nil || acked.SysInfo == nil {
		rep.SysInfo = maps.Clone(cur.SysInfo)
		rep.Version, rep.Queue, rep.LastError = &cur.Version, &cur.Queue, &cur.LastError
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
