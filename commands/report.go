package commands

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Status reports (docs/PROTOCOL.md section 19, "Status reports"). A controller asks a peer to
// report with a report-every request; the peer then sends it a report request at that interval,
// as an ordinary command of its own session toward the controller. Neither runs anything: the
// node that receives them answers them itself (they are not in the Registry, whose Check denies
// them), so they are defined here only as payloads.
const (
	CmdReportEvery = "report-every" // Request.Every: report to me at this interval; 0 stops
	CmdReport      = "report"       // Request.Report: the reporting peer's state, whole or a delta
)

// Report limits.
const (
	// MinReportEvery and MaxReportEvery bound a non-zero Request.Every.
	MinReportEvery = time.Second
	MaxReportEvery = 24 * time.Hour
	// MaxReportError bounds Report.LastError, in bytes.
	MaxReportError = 1024
	// MaxUptime and MaxLoad bound a report's uptime and loads (load1, load5, load15). No host
	// comes near them; they keep what a controller holds, and the arithmetic it does on it
	// (the uptime it advances with the clock), far from overflow.
	MaxUptime = 100 * 365 * 24 * time.Hour
	MaxLoad   = 1e6
)

// Report is a status report: the sysinfo members and the report's own members (Version, Queue,
// LastError) that changed since the report numbered Base, or all of them when Base is 0. A
// member left out did not change; one that changed to its zero value is sent with it (0, "",
// []), which is why the sysinfo part is a set of members and the own part pointers.
type Report struct {
	// Run names the reporting peer's numbering: a random number it picks when it starts
	// reporting to a controller, and again when told its numbering is not the controller's
	// (need_whole). 0 (absent) is a numbering too.
	Run uint64 `json:"run,omitempty"`
	// Seq numbers the reports one peer sends one controller in one Run, growing: 1, 2, 3, ...
	Seq uint64 `json:"seq"`
	// Base is the report this one is a delta against (< Seq), or 0: whole.
	Base uint64 `json:"base,omitempty"`
	// SysInfo holds sysinfo members (section 19's names) by name, each the canonical JSON of
	// its value as SysInfoMembers gives it. Empty: none changed.
	SysInfo map[string]json.RawMessage `json:"sysinfo,omitempty"`
	// Version is the reporting peer's sealpost version.
	Version *string `json:"version,omitempty"`
	// Queue counts the commands waiting on the reporting peer (accepted, not yet answered).
	Queue *int64 `json:"queue,omitempty"`
	// LastError is the reporting peer's last trouble with its mail servers ("" when none).
	LastError *string `json:"last_error,omitempty"`
	// Checks holds the results of the reporting peer's own checks by check name: all of them
	// in a whole report, in a delta those whose ok, exit or output changed since Base.
	Checks map[string]CheckResult `json:"checks,omitempty"`
	// ChecksRemoved names the checks gone since Base (a delta only).
	ChecksRemoved []string `json:"checks_removed,omitempty"`
}

// CheckResult is the result of one of an agent's own checks: a program it runs when it builds a
// status report.
type CheckResult struct {
	// OK: the program exited with 0.
	OK bool `json:"ok"`
	// Exit is its exit status, -1 when it did not run, timed out or was ended by a signal.
	Exit int64 `json:"exit"`
	// Output is the first line of its output (stdout, else stderr, else why it did not run),
	// at most MaxCheckOutput bytes, without control characters.
	Output string `json:"output,omitempty"`
	// At is the agent's clock when it ran.
	At time.Time `json:"at"`
}

// Check limits: how many checks a report carries (and a controller keeps per peer), and how long
// a check's name and output are.
const (
	MaxChecks      = 64
	MaxCheckName   = 128
	MaxCheckOutput = 256
)

// CheckChanged reports whether a check's result differs from old in what a delta carries: ok,
// exit or output (not when it ran alone).
func CheckChanged(old, cur CheckResult) bool {
	return old.OK != cur.OK || old.Exit != cur.Exit || old.Output != cur.Output
}

// CheckOutputLine makes a check's output member of what a program wrote: its first non-empty
// line, tabs as spaces, other control characters dropped, at most MaxCheckOutput bytes of valid
// UTF-8.
func CheckOutputLine(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	for line := range strings.Lines(s) {
		line = strings.Map(func(r rune) rune {
			switch {
			case r == '\t':
				return ' '
			case unicode.IsControl(r):
				return -1
			}
			return r
		}, line)
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if len(line) > MaxCheckOutput {
			cut := MaxCheckOutput
			for cut > 0 && !utf8.RuneStart(line[cut]) {
				cut--
			}
			line = line[:cut]
		}
		return line
	}
	return ""
}

// validateChecks checks a report's checks and checks_removed members and makes their times UTC.
func validateChecks(rep *Report) error {
	if len(rep.Checks) > MaxChecks {
		return decodeErr("report.checks", fmt.Sprintf("%d checks, above the limit of %d", len(rep.Checks), MaxChecks))
	}
	if len(rep.ChecksRemoved) > MaxChecks {
		return decodeErr("report.checks_removed", fmt.Sprintf("%d names, above the limit of %d", len(rep.ChecksRemoved), MaxChecks))
	}
	if len(rep.ChecksRemoved) > 0 && rep.Base == 0 {
		return decodeErr("report.checks_removed", "only a delta removes checks")
	}
	if len(rep.Checks) == 0 {
		rep.Checks = nil
	} else {
		canon := make(map[string]CheckResult, len(rep.Checks))
		for name, c := range rep.Checks {
			field := "report.checks." + clip(name, MaxCheckName)
			if err := checkCheckName(field, name); err != nil {
				return err
			}
			switch {
			case c.Exit < -1 || c.Exit > 4294967295:
				return decodeErr(field+".exit", fmt.Sprintf("%d outside -1..4294967295", c.Exit))
			case c.OK && c.Exit != 0:
				return decodeErr(field+".ok", fmt.Sprintf("a check that exited with %d is not ok", c.Exit))
			}
			if err := checkString(field+".output", c.Output, MaxCheckOutput); err != nil {
				return err
			}
			if strings.IndexFunc(c.Output, unicode.IsControl) >= 0 {
				return decodeErr(field+".output", "contains a control character")
			}
			if err := validTime(field+".at", c.At); err != nil {
				return err
			}
			c.At = c.At.UTC()
			canon[name] = c
		}
		rep.Checks = canon
	}
	if len(rep.ChecksRemoved) == 0 {
		rep.ChecksRemoved = nil
	}
	seen := make(map[string]bool, len(rep.ChecksRemoved))
	for i, name := range rep.ChecksRemoved {
		field := fmt.Sprintf("report.checks_removed[%d]", i)
		if err := checkCheckName(field, name); err != nil {
			return err
		}
		if _, ok := rep.Checks[name]; ok || seen[name] {
			return decodeErr(field, "named twice")
		}
		seen[name] = true
	}
	return nil
}

// checkCheckName: a check's name is 1 to MaxCheckName bytes without spaces or control characters
// (the rules of a peer name).
func checkCheckName(field, name string) error {
	if name == "" {
		return decodeErr(field, "empty check name")
	}
	if err := checkString(field, name, MaxCheckName); err != nil {
		return err
	}
	if strings.IndexFunc(name, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) >= 0 {
		return decodeErr(field, "a check name holds no space or control character")
	}
	return nil
}

var reportShape = &shape{members: map[string]*shape{
	"run":        uinteger,
	"seq":        uinteger,
	"base":       uinteger,
	"sysinfo":    sysinfoShape,
	"version":    str,
	"queue":      integer,
	"last_error": str,
	"checks": {values: &shape{members: map[string]*shape{
		"ok": boolean, "exit": integer, "output": str, "at": timeStr,
	}}},
	"checks_removed": {elem: str},
}}

// sysinfoZero is the JSON of each sysinfo member's zero value, and the list of members.
var sysinfoZero = map[string]string{
	"hostname": `""`, "os": `""`, "kernel": `""`, "arch": `""`, "version": `""`, "go_version": `""`,
	"uptime": "0", "load1": "0", "load5": "0", "load15": "0", "mem_total": "0", "mem_available": "0",
	"num_cpu": "0", "disks": "[]",
}

// SysInfoMembers returns every member of si by name, zero values included, each as its
// canonical JSON: the form a whole report carries, and the one deltas are taken between.
func SysInfoMembers(si SysInfo) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(sysinfoZero))
	for k, z := range sysinfoZero {
		out[k] = json.RawMessage(z)
	}
	b, err := marshal(si)
	if err != nil {
		return out // unreachable: SysInfo always encodes
	}
	var set map[string]json.RawMessage
	if json.Unmarshal(b, &set) == nil {
		for k, v := range set {
			out[k] = v
		}
	}
	return out
}

// ChangedMembers returns the members of cur whose JSON differs from old's (all of cur when old
// is nil); nil when none did.
func ChangedMembers(old, cur map[string]json.RawMessage) map[string]json.RawMessage {
	var out map[string]json.RawMessage
	for _, k := range slices.Sorted(maps.Keys(cur)) {
		if o, ok := old[k]; ok && bytes.Equal(o, cur[k]) {
			continue
		}
		if out == nil {
			out = map[string]json.RawMessage{}
		}
		out[k] = cur[k]
	}
	return out
}

// MergeSysInfo returns base with the members of delta set (a zero value clears one). The result
// must meet a report's limits (MaxUptime, MaxLoad, ...): a base out of them (held from an
// earlier sysinfo answer, or advanced with the clock) or an unknown or invalid member is a
// *DecodeError, which the controller answers as about the report, never as its own trouble.
func MergeSysInfo(base SysInfo, delta map[string]json.RawMessage) (SysInfo, error) {
	all := SysInfoMembers(base)
	for k, v := range delta {
		if _, ok := sysinfoZero[k]; !ok {
			return SysInfo{}, decodeErr("sysinfo."+k, "unknown member")
		}
		all[k] = v
	}
	return membersToSysInfo(all)
}

// membersToSysInfo decodes a set of sysinfo members and checks them against the limits of a
// sysinfo answer and those of a report (MaxUptime, MaxLoad).
func membersToSysInfo(m map[string]json.RawMessage) (SysInfo, error) {
	b, err := marshal(m)
	if err != nil {
		return SysInfo{}, decodeErr("sysinfo", err.Error())
	}
	var si SysInfo
	if err := json.Unmarshal(b, &si); err != nil {
		return SysInfo{}, decodeErr("sysinfo", err.Error())
	}
	if len(si.Disks) == 0 {
		si.Disks = nil
	}
	if err := validateSysInfo(&si); err != nil {
		return SysInfo{}, err
	}
	if si.Uptime > MaxUptime {
		return SysInfo{}, decodeErr("sysinfo.uptime", fmt.Sprintf("%v, above the limit of %v", si.Uptime, time.Duration(MaxUptime)))
	}
	for _, l := range []struct {
		field string
		v     float64
	}{{"sysinfo.load1", si.Load1}, {"sysinfo.load5", si.Load5}, {"sysinfo.load15", si.Load15}} {
		// validateSysInfo refused NaN, infinities and negatives (and JSON carries none of the
		// first two: the strict decoder wants a finite number).
		if l.v > MaxLoad {
			return SysInfo{}, decodeErr(l.field, fmt.Sprintf("%g, above the limit of %g", l.v, float64(MaxLoad)))
		}
	}
	return si, nil
}

// canonicalReport checks rep's sysinfo members and gives each its canonical JSON (a decoder
// accepts "1.50" for 1.5, spaces inside arrays and the like); an empty set becomes nil.
func canonicalReport(rep *Report) error {
	if len(rep.SysInfo) == 0 {
		rep.SysInfo = nil
		return nil
	}
	for k := range rep.SysInfo {
		if _, ok := sysinfoZero[k]; !ok {
			return decodeErr("report.sysinfo."+k, "unknown member")
		}
	}
	si, err := membersToSysInfo(rep.SysInfo)
	if err != nil {
		if de, ok := err.(*DecodeError); ok {
			return decodeErr("report."+de.Field, de.Msg)
		}
		return err
	}
	all := SysInfoMembers(si)
	canon := make(map[string]json.RawMessage, len(rep.SysInfo))
	for k := range rep.SysInfo {
		canon[k] = all[k]
	}
	rep.SysInfo = canon
	return nil
}

// validateReportRequest checks the members of the two report requests.
func validateReportRequest(r Request) error {
	if r.Name != CmdReportEvery && r.Every != 0 {
		return decodeErr("every", "only "+CmdReportEvery+" takes an interval")
	}
	if r.Name != CmdReport && r.Report != nil {
		return decodeErr("report", "only "+CmdReport+" carries a report")
	}
	switch r.Name {
	case CmdReportEvery:
		if r.Every != 0 && (r.Every < MinReportEvery || r.Every > MaxReportEvery) {
			return decodeErr("every", fmt.Sprintf("%v outside %v..%v (0 stops the reports)", r.Every, MinReportEvery, MaxReportEvery))
		}
	case CmdReport:
		rep := r.Report
		switch {
		case rep == nil:
			return decodeErr("report", "missing")
		case rep.Seq == 0:
			return decodeErr("report.seq", "reports are numbered from 1")
		case rep.Base >= rep.Seq:
			return decodeErr("report.base", fmt.Sprintf("%d is not below seq %d", rep.Base, rep.Seq))
		case rep.Queue != nil && *rep.Queue < 0:
			return decodeErr("report.queue", "negative")
		}
		if rep.Version != nil {
			if err := checkString("report.version", *rep.Version, MaxInfoString); err != nil {
				return err
			}
		}
		if rep.LastError != nil {
			if err := checkString("report.last_error", *rep.LastError, MaxReportError); err != nil {
				return err
			}
		}
		if err := validateChecks(rep); err != nil {
			return err
		}
		return canonicalReport(rep)
	}
	return nil
}

// SysInfo collects the host's facts as the sysinfo command reports them, for a status report.
func (r *Registry) SysInfo() SysInfo { return r.sysinfo(r.version) }
