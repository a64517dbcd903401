package web

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sealpost/sealpost/node"
)

// FleetRow is one peer's line of the fleet view as text, the same on the dashboard and in
// `sealpost fleet`: "-" where nothing is known. The strings a peer sent (Host, OS, Disk's mount
// point) are as it sent them; each output escapes them its own way.
type FleetRow struct {
	Name, Href, Tags, Heard, RoundTrip, Host, OS, Uptime, Load, Mem, Disk string
	Epoch                                                                 uint64
	Pending                                                               int
	Stale                                                                 bool
}

// FleetRowOf makes e's row, counting "3m ago" from now.
func FleetRowOf(e node.FleetEntry, now time.Time) FleetRow {
	row := FleetRow{Name: e.Name, Href: peerHref(e.Name), Tags: orDash(strings.Join(e.Tags, ",")), Heard: "never",
		RoundTrip: "-", Host: "-", OS: "-", Uptime: "-", Load: "-", Mem: "-", Disk: "-",
		Epoch: e.Epoch, Pending: e.Pending, Stale: e.Stale}
	if t := LastHeard(e); !t.IsZero() {
		row.Heard = shortDuration(now.Sub(t)) + " ago"
	}
	if !e.PingAt.IsZero() {
		row.RoundTrip = e.RoundTrip.Round(time.Millisecond).String()
	}
	if si := e.SysInfo; si != nil {
		row.Host = orDash(si.Hostname)
		row.OS = orDash(strings.TrimSpace(si.OS + " " + si.Kernel))
		row.Uptime = shortDuration(si.Uptime)
		row.Load = loads(si.Load1, si.Load5, si.Load15)
		if e.MemFreePct != nil {
			row.Mem = percent(*e.MemFreePct) + " of " + bytesIEC(si.MemTotal)
		}
		if mount, pct, ok := fullestDisk(e); ok {
			row.Disk = mount + " " + percent(pct) + " free"
		}
	}
	return row
}

// LastHeard is the latest time anything came from the peer: a mail, a status report or a
// sysinfo answer (as node's STALE mark counts it); zero when nothing ever came.
func LastHeard(e node.FleetEntry) time.Time {
	t := e.LastSeen
	for _, u := range []time.Time{e.LastReport, e.SysInfoAt} {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// fullestDisk is the mount point and free share of the disk with the least free space (the
// one node counts in disk_free_pct).
func fullestDisk(e node.FleetEntry) (mount string, pct float64, ok bool) {
	if e.SysInfo == nil {
		return "", 0, false
	}
	for _, d := range e.SysInfo.Disks {
		if d.Total == 0 {
			continue
		}
		p := 100 * float64(d.Free) / float64(d.Total)
		if !ok || p < pct {
			mount, pct, ok = d.Mount, p, true
		}
	}
	return mount, pct, ok
}

// maxLoad is the largest load average shown as a number; a peer's report is not checked, and
// 1e308 would print 300 digits.
const maxLoad = 999

// loads shows load averages as "0.52 0.40 0.31", each capped: ">999" above maxLoad, "?" for
// one that cannot be (negative, not a number).
func loads(l ...float64) string {
	s := make([]string, len(l))
	for i, v := range l {
		switch {
		case v > maxLoad:
			s[i] = fmt.Sprintf(">%d", maxLoad)
		case v >= 0:
			s[i] = fmt.Sprintf("%.2f", v)
		default: // negative or NaN
			s[i] = "?"
		}
	}
	return strings.Join(s, " ")
}

// percent shows a free share as "7%": ">100%" above 100 (more free than there is, as a
// peer may claim), "?" for one that cannot be (negative, not a number).
func percent(p float64) string {
	switch {
	case p > 100:
		return ">100%"
	case p >= 0:
		return fmt.Sprintf("%.0f%%", p)
	}
	return "?"
}

// shortDuration shows a duration to its largest two units: 45s, 3m10s, 5h2m, 12d3h.
func shortDuration(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	day := 24 * time.Hour
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm%ds", d/time.Minute, d%time.Minute/time.Second)
	case d < day:
		return fmt.Sprintf("%dh%dm", d/time.Hour, d%time.Hour/time.Minute)
	}
	return fmt.Sprintf("%dd%dh", d/day, d%day/time.Hour)
}

// bytesIEC shows a byte count as 512M, 15.6G.
func bytesIEC(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"K", "M", "G", "T", "P", "E"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	if v < 10 {
		return fmt.Sprintf("%.1f%s", v, suffix)
	}
	return fmt.Sprintf("%.0f%s", v, suffix)
}
