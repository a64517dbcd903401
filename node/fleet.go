package node

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
)

// FleetEntry is one peer's row of the fleet view (`sealpost fleet`): what this node knows of the
// peer's host, from its last sysinfo answer or status report, its last ping, its session and the
// commands waiting for it. The sysinfo members (docs/PROTOCOL.md section 19) appear under their
// own names, hostname, os, kernel and so on, when one was ever received.
type FleetEntry struct {
	Name    string   `json:"name"`
	Address string   `json:"address"`
	Tags    []string `json:"tags,omitempty"`
	Status  string   `json:"status"` // the session's, as `peer list` shows it
	Epoch   uint64   `json:"epoch"`
	// LastSeen is when the peer's last authenticated mail arrived.
	LastSeen time.Time `json:"last_seen,omitzero"`
	// RoundTrip is the last answered ping's, from sending to its answer; PingAt when it came.
	RoundTrip time.Duration `json:"round_trip,omitempty"`
	PingAt    time.Time     `json:"ping_at,omitzero"`
	// ReportEvery is the interval of status reports asked of the peer (0: none); Stale is set
	// when nothing came from it for twice that long.
	ReportEvery time.Duration `json:"report_every,omitempty"`
	LastReport  time.Time     `json:"last_report,omitzero"`
	Stale       bool          `json:"stale"`
	// Pending counts this node's commands to the peer not answered yet.
	Pending int `json:"pending"`
	// DiskFreePct is the free share of the peer's fullest disk, in percent (absent: unknown).
	DiskFreePct *float64 `json:"disk_free_pct,omitempty"`
	// MemFreePct is the share of memory available, in percent (absent: unknown).
	MemFreePct *float64 `json:"mem_free_pct,omitempty"`
	// SysInfoAt is when the sysinfo below was received.
	SysInfoAt time.Time `json:"sysinfo_at,omitzero"`
	*commands.SysInfo
	// Report is the status report's own part (agent version, queue, last error, checks), as the
	// peer last sent it; absent when it never reported.
	Report json.RawMessage `json:"report,omitempty"`
	// ChecksFailing counts the peer's own checks that were not ok in its last reports; Checks
	// are their results by name (docs/PROTOCOL.md section 19, "Checks").
	ChecksFailing int                             `json:"checks_failing"`
	Checks        map[string]commands.CheckResult `json:"checks,omitempty"`
}

// Fleet returns the fleet view of the peers a target names ("" or "@all": every pinned peer),
// sorted by name.
func (n *Node) Fleet(ctx context.Context, target string) ([]FleetEntry, error) {
	var out []FleetEntry
	err := n.view(func(tx *keystore.Tx, st TxStore) error {
		peers, err := n.peersIn(tx, st)
		if err != nil {
			return err
		}
		var names []string
		if target != "" {
			if names, err = n.resolveTarget(tx, target); err != nil {
				return err
			}
		}
		now := n.now()
		for _, p := range peers {
			if p.Status == "pairing" || (names != nil && !slices.Contains(names, p.Name)) {
				continue
			}
			e := FleetEntry{Name: p.Name, Address: p.Address, Tags: p.Tags, Status: p.Status, Epoch: p.Epoch, LastSeen: p.LastSeen}
			if e.Pending, err = n.pendingOf(tx, p.Name); err != nil {
				return err
			}
			ps, _, err := tx.PeerState(p.Name)
			if err != nil {
				return err
			}
			e.RoundTrip, e.PingAt = ps.RoundTrip, ps.PingAt
			e.ReportEvery, e.LastReport, e.Report = ps.ReportEvery, ps.LastReport, ps.Report
			e.Checks, e.ChecksFailing = fleetChecks(ps.Report)
			if len(ps.SysInfo) > 0 {
				var si commands.SysInfo
				if err := json.Unmarshal(ps.SysInfo, &si); err == nil {
					e.SysInfo, e.SysInfoAt = &si, ps.SysInfoAt
					e.DiskFreePct, e.MemFreePct = fullestDisk(si), memFree(si)
				}
			}
			if e.ReportEvery > 0 {
				heard := e.LastSeen
				for _, t := range []time.Time{e.LastReport, ps.SysInfoAt} {
					if t.After(heard) {
						heard = t
					}
				}
				e.Stale = now.Sub(heard) > 2*e.ReportEvery
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// pendingOf counts this node's commands to the peer not answered yet: mailed (pending) and
// waiting for a session (queued), read from their per-peer indexes.
func (n *Node) pendingOf(tx *keystore.Tx, name string) (int, error) {
	p, ok, err := tx.Peer(name)
	if err != nil || !ok {
		return 0, err
	}
	sent, err := tx.PendingOf(p.Fingerprint)
	if err != nil {
		return 0, err
	}
	count := len(sent)
	err = tx.QueuedFor(p.Fingerprint, func(keystore.QueuedCommand) error { count++; return nil })
	return count, err
}

func fullestDisk(si commands.SysInfo) *float64 {
	var best *float64
	for _, d := range si.Disks {
		if d.Total == 0 {
			continue
		}
		pct := 100 * float64(d.Free) / float64(d.Total)
		if best == nil || pct < *best {
			best = &pct
		}
	}
	return best
}

func memFree(si commands.SysInfo) *float64 {
	if si.MemTotal == 0 {
		return nil
	}
	pct := 100 * float64(si.MemAvailable) / float64(si.MemTotal)
	return &pct
}

// noteAnswer keeps what an answer tells of the peer's host for the fleet view: a sysinfo, or a
// ping's round trip (from r.Sent to now). Called in the transaction that records the answer.
func (n *Node) noteAnswer(tx *keystore.Tx, peer string, kind string, sent time.Time, res commands.Result) error {
	// By the request's name, never the command line: a program may be called ping.
	isPing := kind == commands.CmdPing
	if res.Info == nil && !isPing {
		return nil
	}
	ps, _, err := tx.PeerState(peer)
	if err != nil {
		return err
	}
	now := n.now()
	if res.Info != nil {
		b, err := json.Marshal(res.Info)
		if err != nil {
			return err
		}
		ps.SysInfo, ps.SysInfoAt = b, now
	}
	if isPing && !sent.IsZero() {
		ps.RoundTrip, ps.PingAt = max(now.Sub(sent), 0), now
	}
	return tx.PutPeerState(ps)
}
