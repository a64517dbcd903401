package commands

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Result limits (docs/PROTOCOL.md, "Commands payload"). Every Result that passes them encodes
// to at most MaxResultSize bytes (a test checks the worst case), and Run only produces such
// Results.
const (
	// MaxResultSize bounds a result payload as received. It is below the compression frame's
	// 16 MiB plain-length cap.
	MaxResultSize = 12 << 20
	// MaxOutputLimit bounds Stdout and Stderr (each, in bytes); Policy.MaxOutput is clamped to it.
	MaxOutputLimit = 4 << 20
	// MaxErrorBytes bounds Result.Error.
	MaxErrorBytes = 4096
	// MaxInfoString bounds each string of SysInfo but the disks' mount points.
	MaxInfoString = 256
	// MaxDisks bounds SysInfo.Disks.
	MaxDisks = 32
	// MaxMountBytes bounds Disk.Mount.
	MaxMountBytes = 1024
	// MaxSignal bounds Result.Signal: 128 plus the signal's number, as a shell reports it, stays
	// an 8-bit exit status.
	MaxSignal = 127
)

// Result is what comes back for a request.
type Result struct {
	// Outcome says how the command ended; callers branch on it (or on [Result.EffectiveOutcome],
	// which also reads results of older agents), never on Error.
	Outcome Outcome `json:"outcome,omitempty"`
	// ExitCode is the program's exit status when Outcome is OutcomeExited; -1 when it did not
	// run or was killed by a signal. 0 for ping and sysinfo.
	ExitCode int `json:"exit_code"`
	// Signal is the number of the signal that ended the program (9 for SIGKILL), whoever sent
	// it: set with OutcomeSignaled, and with OutcomeTimedOut and OutcomeCancelled when the kill
	// ended it. 0 when it exited by itself or never ran.
	Signal int `json:"signal,omitempty"`
	// Stdout and Stderr hold the first Policy.MaxOutput bytes of each stream.
	Stdout []byte `json:"stdout,omitempty"`
	Stderr []byte `json:"stderr,omitempty"`
	// StdoutTruncated and StderrTruncated report that the stream went on past what was kept.
	StdoutTruncated bool `json:"stdout_truncated,omitempty"`
	StderrTruncated bool `json:"stderr_truncated,omitempty"`
	// Duration is how long the command took on the agent (monotonic clock).
	Duration time.Duration `json:"duration"`
	// TimedOut reports that the timeout expired and the program's process group was killed.
	// Set together with OutcomeTimedOut, for controllers of older builds that know no Outcome.
	TimedOut bool `json:"timed_out,omitempty"`
	// Error explains, for people only, why the command did not run or did not finish normally:
	// "program not found: /usr/bin/x", "killed by signal 11 (segmentation fault)", a denial.
	// Empty when the program ran and exited by itself. Its wording may change with any build:
	// branch on Outcome.
	Error string `json:"error,omitempty"`
	// Undelivered is set, in place of the output, when the full result could not be mailed back
	// (the mail server refused it for good, typically for its size): it says why. The command
	// ran; ExitCode, Duration and Error are the real ones, Stdout and Stderr are dropped.
	Undelivered string `json:"undelivered,omitempty"`
	// Info is set by sysinfo.
	Info *SysInfo `json:"sysinfo,omitempty"`
	// NeedWhole answers a status report that was a delta against a report the controller
	// does not hold (docs/PROTOCOL.md section 19, "Status reports"): nothing of it was kept,
	// and the next report is to be whole.
	NeedWhole bool `json:"need_whole,omitempty"`
	// ReportEvery answers a report-every: the interval the agent will report at, which may be
	// longer than the one asked (its floor, `agent --min-report-every`); 0 when reports stop.
	ReportEvery time.Duration `json:"report_every,omitempty"`
	// Started is the agent's clock when it began the command (UTC).
	Started time.Time `json:"started"`
	// Chunks is how many CHUNK packages carry the output (docs/PROTOCOL.md section 20); 0 when
	// Stdout and Stderr are here. With chunks, StdoutSize, StderrSize and the SHA-256 digests
	// (lower-case hex) describe every byte the chunks carry, which the requester checks.
	Chunks       int64  `json:"chunks,omitempty"`
	StdoutSize   int64  `json:"stdout_size,omitempty"`
	StderrSize   int64  `json:"stderr_size,omitempty"`
	StdoutSHA256 string `json:"stdout_sha256,omitempty"`
	StderrSHA256 string `json:"stderr_sha256,omitempty"`
}

// MaxStreamSize bounds the bytes of one streamed part (1 PiB, the chunks' offset limit).
const MaxStreamSize = 1 << 50

// SysInfo describes the agent's host. Fields the platform cannot provide stay zero.
type SysInfo struct {
	Hostname string        `json:"hostname,omitempty"`
	OS       string        `json:"os,omitempty"`     // runtime.GOOS
	Kernel   string        `json:"kernel,omitempty"` // kernel release (uname -r)
	Arch     string        `json:"arch,omitempty"`   // runtime.GOARCH
	Uptime   time.Duration `json:"uptime,omitempty"`
	Load1    float64       `json:"load1,omitempty"`
	Load5    float64       `json:"load5,omitempty"`
	Load15   float64       `json:"load15,omitempty"`
	// MemTotal and MemAvailable are in bytes (MemAvailable: what new work can use without
	// swapping, as /proc/meminfo estimates it).
	MemTotal     uint64 `json:"mem_total,omitempty"`
	MemAvailable uint64 `json:"mem_available,omitempty"`
	// Disks: "/" first, then other local, non-pseudo file systems, one entry per device.
	Disks     []Disk `json:"disks,omitempty"`
	NumCPU    int    `json:"num_cpu,omitempty"`
	Version   string `json:"version,omitempty"`    // sealpost's version
	GoVersion string `json:"go_version,omitempty"` // runtime.Version()
}

// Disk is one mounted file system. Total and Free are in bytes; Free is what unprivileged users
// may still use (df's "Avail").
type Disk struct {
	Mount string `json:"mount"`
	Total uint64 `json:"total"`
	Free  uint64 `json:"free"`
}

var resultShape = &shape{members: map[string]*shape{
	"outcome":          str,
	"exit_code":        integer,
	"signal":           integer,
	"stdout":           bytes64,
	"stderr":           bytes64,
	"stdout_truncated": boolean,
	"stderr_truncated": boolean,
	"duration":         integer,
	"timed_out":        boolean,
	"error":            str,
	"undelivered":      str,
	"started":          str,
	"sysinfo":          sysinfoShape,
	"need_whole":       boolean,
	"report_every":     integer,
	"chunks":           integer,
	"stdout_size":      integer,
	"stderr_size":      integer,
	"stdout_sha256":    str,
	"stderr_sha256":    str,
}}

// sysinfoShape is the sysinfo object's, in a sysinfo result and in a status report.
var sysinfoShape = &shape{members: map[string]*shape{
	"hostname":      str,
	"os":            str,
	"kernel":        str,
	"arch":          str,
	"uptime":        integer,
	"load1":         number,
	"load5":         number,
	"load15":        number,
	"mem_total":     uinteger,
	"mem_available": uinteger,
	"num_cpu":       integer,
	"version":       str,
	"go_version":    str,
	"disks": {elem: &shape{members: map[string]*shape{
		"mount": str,
		"total": uinteger,
		"free":  uinteger,
	}}},
}}

// EncodeResult returns the JSON payload for r. It refuses (with an error wrapping a
// *DecodeError) any result DecodeResult would refuse. Times are sent in UTC.
func EncodeResult(r Result) ([]byte, error) {
	r = canonicalResult(r)
	if err := validateResult(r); err != nil {
		return nil, fmt.Errorf("commands: encode result: %w", err)
	}
	b, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("commands: encode result: %w", err)
	}
	if len(b) > MaxResultSize { // unreachable within the limits; kept as a guard
		return nil, fmt.Errorf("commands: encode result: %w", decodeErr("",
			fmt.Sprintf("result encodes to %d bytes, above the limit of %d", len(b), MaxResultSize)))
	}
	return b, nil
}

// DecodeResult parses a result payload as strictly as DecodeRequest parses requests, with the
// limits of validateResult. On failure it returns the zero Result and a *DecodeError.
//
// One leniency: an "outcome" string this build does not know decodes to OutcomeUnknown instead
// of failing the result, because an agent of a newer build may report outcomes added after this
// one; the rest of the result (exit code, output) is still worth showing, and
// [Result.EffectiveOutcome] reads what it can from the older fields.
func DecodeResult(b []byte) (Result, error) {
	r, err := decodeResult(b)
	if err != nil {
		return Result{}, err
	}
	return r, nil
}

func decodeResult(b []byte) (Result, error) {
	var r Result
	if len(b) > MaxResultSize {
		return r, decodeErr("", fmt.Sprintf("result is %d bytes, above the limit of %d", len(b), MaxResultSize))
	}
	if err := checkShape(b, resultShape); err != nil {
		return r, err
	}
	// The outcome is decoded as a plain string beside the other members (a shallower field
	// shadows Result's own "outcome"), so that an unknown token is not an error.
	wire := resultWire{resultFields: (*resultFields)(&r)}
	if err := unmarshal(b, &wire, "started"); err != nil {
		return Result{}, err
	}
	r.Outcome, _ = ParseOutcome(wire.Outcome) // unknown tokens: OutcomeUnknown (see DecodeResult)
	r = canonicalResult(r)
	return r, validateResult(r)
}

// resultFields is Result without its methods (Outcome's UnmarshalText is not called through it
// since resultWire shadows the member).
type resultFields Result

// resultWire is the shape decodeResult unmarshals into.
type resultWire struct {
	*resultFields
	Outcome string `json:"outcome"`
}

// canonicalResult gives a result its one in-memory form: times in UTC without a monotonic
// reading, empty slices as nil. It does not modify what r points to.
func canonicalResult(r Result) Result {
	r.Started = r.Started.UTC()
	if len(r.Stdout) == 0 {
		r.Stdout = nil
	}
	if len(r.Stderr) == 0 {
		r.Stderr = nil
	}
	if r.Info != nil {
		info := *r.Info
		if len(info.Disks) == 0 {
			info.Disks = nil
		}
		r.Info = &info
	}
	return r
}

// validateResult checks r against the limits; it returns a *DecodeError.
func validateResult(r Result) error {
	if r.Outcome >= numOutcomes {
		return decodeErr("outcome", fmt.Sprintf("value %d is no outcome", r.Outcome))
	}
	if r.Signal < 0 || r.Signal > MaxSignal {
		return decodeErr("signal", fmt.Sprintf("%d outside 0..%d", r.Signal, MaxSignal))
	}
	if c := int64(r.ExitCode); c < -1 || c > math.MaxUint32 {
		return decodeErr("exit_code", fmt.Sprintf("%d outside -1..%d", c, uint64(math.MaxUint32)))
	}
	if len(r.Stdout) > MaxOutputLimit {
		return decodeErr("stdout", fmt.Sprintf("%d bytes, above the limit of %d", len(r.Stdout), MaxOutputLimit))
	}
	if len(r.Stderr) > MaxOutputLimit {
		return decodeErr("stderr", fmt.Sprintf("%d bytes, above the limit of %d", len(r.Stderr), MaxOutputLimit))
	}
	if r.Duration < 0 {
		return decodeErr("duration", "negative")
	}
	if r.ReportEvery < 0 || r.ReportEvery > MaxReportEvery {
		return decodeErr("report_every", fmt.Sprintf("%v outside 0..%v", r.ReportEvery, MaxReportEvery))
	}
	if err := validateStreamResult(r); err != nil {
		return err
	}
	if err := checkString("error", r.Error, MaxErrorBytes); err != nil {
		return err
	}
	if err := checkString("undelivered", r.Undelivered, MaxErrorBytes); err != nil {
		return err
	}
	if err := validTime("started", r.Started); err != nil {
		return err
	}
	if r.Info != nil {
		return validateSysInfo(r.Info)
	}
	return nil
}

func validateSysInfo(si *SysInfo) error {
	for _, s := range []struct{ field, v string }{
		{"sysinfo.hostname", si.Hostname}, {"sysinfo.os", si.OS}, {"sysinfo.kernel", si.Kernel},
		{"sysinfo.arch", si.Arch}, {"sysinfo.version", si.Version}, {"sysinfo.go_version", si.GoVersion},
	} {
		if err := checkString(s.field, s.v, MaxInfoString); err != nil {
			return err
		}
	}
	if si.Uptime < 0 {
		return decodeErr("sysinfo.uptime", "negative")
	}
	for _, l := range []struct {
		field string
		v     float64
	}{{"sysinfo.load1", si.Load1}, {"sysinfo.load5", si.Load5}, {"sysinfo.load15", si.Load15}} {
		if !(l.v >= 0) || math.IsInf(l.v, 1) {
			return decodeErr(l.field, "not a finite, non-negative number")
		}
	}
	if si.NumCPU < 0 {
		return decodeErr("sysinfo.num_cpu", "negative")
	}
	if len(si.Disks) > MaxDisks {
		return decodeErr("sysinfo.disks", fmt.Sprintf("%d entries, above the limit of %d", len(si.Disks), MaxDisks))
	}
	for i, d := range si.Disks {
		field := "sysinfo.disks[" + strconv.Itoa(i) + "].mount"
		if d.Mount == "" {
			return decodeErr(field, "empty")
		}
		if err := checkString(field, d.Mount, MaxMountBytes); err != nil {
			return err
		}
	}
	return nil
}

func checkString(field, s string, max int) error {
	if len(s) > max {
		return decodeErr(field, fmt.Sprintf("%d bytes, above the limit of %d", len(s), max))
	}
	if !utf8.ValidString(s) {
		return decodeErr(field, "not valid UTF-8")
	}
	return nil
}

// validateStreamResult checks the members that describe a streamed output: a count of chunks,
// sizes within the chunks' reach, digests of 64 lower-case hex digits, and no inline output
// beside chunks.
func validateStreamResult(r Result) error {
	if r.Chunks < 0 || r.Chunks > MaxStreamChunks {
		return decodeErr("chunks", fmt.Sprintf("%d outside 0..%d", r.Chunks, MaxStreamChunks))
	}
	for _, m := range []struct {
		name string
		size int64
		sum  string
	}{{"stdout", r.StdoutSize, r.StdoutSHA256}, {"stderr", r.StderrSize, r.StderrSHA256}} {
		if m.size < 0 || m.size > MaxStreamSize {
			return decodeErr(m.name+"_size", fmt.Sprintf("%d outside 0..%d", m.size, int64(MaxStreamSize)))
		}
		if m.sum != "" && !isLowerHex(m.sum, 64) {
			return decodeErr(m.name+"_sha256", "not 64 lower-case hex digits")
		}
		if r.Chunks == 0 && (m.size != 0 || m.sum != "") {
			return decodeErr(m.name+"_size", "a size or digest without chunks")
		}
		if r.Chunks > 0 && m.sum == "" {
			return decodeErr(m.name+"_sha256", "chunks without the digest")
		}
	}
	if r.Chunks > 0 && (r.Stdout != nil || r.Stderr != nil) {
		return decodeErr("chunks", "output both inline and in chunks")
	}
	return nil
}

// MaxStreamChunks bounds a result's chunks member (2^24, the chunk index's reach).
const MaxStreamChunks = 1 << 24

// isLowerHex reports whether s is exactly n lower-case hex digits (a command id is 32, a SHA-256
// digest 64).
func isLowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
