package commands

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The built-in command names. The registry is built from exactly these; no other name is ever
// accepted, on the wire or by Check.
const (
	CmdPing    = "ping"    // answers at once; measures the round trip
	CmdSysinfo = "sysinfo" // host facts (SysInfo)
	CmdExec    = "exec"    // runs one allowlisted program with Argv, never through a shell
)

// CmdReportEvery and CmdReport (report.go) are the other two names a request may carry; the
// node answers them itself, and the registry does not run them.

// Request limits (docs/PROTOCOL.md, "Commands payload").
const (
	// MaxRequestSize bounds a request payload: the bytes received, and the canonical encoding
	// EncodeRequest produces for the decoded value.
	MaxRequestSize = 64 << 10
	// MaxArgs bounds len(Argv) for exec (the program counts).
	MaxArgs = 256
	// MaxArgBytes bounds each element of Argv, in bytes of UTF-8.
	MaxArgBytes = 32 << 10
)

// Request is what a controller asks for. Name is "ping", "sysinfo" or "exec"; Argv is used by
// exec only (Argv[0] is the program: an absolute path, or a bare name matched against the
// policy's allowlist) and must be empty for the others.
type Request struct {
	Name string   `json:"name"`
	Argv []string `json:"argv,omitempty"`
	// Timeout is what the controller asks for; Policy.MaxTimeout caps it and zero means the
	// policy's default. On the wire: integer nanoseconds.
	Timeout time.Duration `json:"timeout,omitempty"`
	// Sent is the controller's clock when it issued the request, for round-trip display only:
	// nothing on the agent trusts it. The protocol envelope carries the authoritative times.
	Sent time.Time `json:"sent,omitzero"`
	// Every is report-every's interval: MinReportEvery..MaxReportEvery, or 0 to stop the
	// reports. On the wire: integer nanoseconds.
	Every time.Duration `json:"every,omitempty"`
	// Report is report's payload.
	Report *Report `json:"report,omitempty"`
	// Stream is the secret of the command's stream (docs/PROTOCOL.md section 20), exactly
	// StreamSecretSize bytes: exec only. With it the agent may send output larger than fits
	// in one answer as CHUNK packages sealed under it; without it (a controller of an older
	// build) the output is cut to what fits in the answer.
	Stream []byte `json:"stream,omitempty"`
	// Of, Resend and Done are a stream request's (CmdStream): the command whose stream it is
	// about (32 hex digits), the chunk indices to send again (at most MaxResend), and that the
	// stream arrived whole, so its spool may go.
	Of     string  `json:"of,omitempty"`
	Resend []int64 `json:"resend,omitempty"`
	Done   bool    `json:"done,omitempty"`
	// Path, Size, SHA256 and Chunks are a file transfer's (CmdPull, CmdPush): the file on the
	// agent (absolute); for a push, the size and SHA-256 (lower-case hex) of what is pushed and
	// how many chunks carry it.
	Path   string `json:"path,omitempty"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Chunks int64  `json:"chunks,omitempty"`
}

// File transfers (docs/PROTOCOL.md section 20, "Files"): pull streams a file of the agent's
// back like a command's stdout; push streams one to the agent, which writes it under a
// temporary name and renames it into place when it is whole and matches its SHA-256.
const (
	CmdPull = "pull"
	CmdPush = "push"
	// MaxPathBytes bounds a transfer's path.
	MaxPathBytes = 4096
)

// CmdStream asks the agent about a command's stream (docs/PROTOCOL.md section 20): to send
// some of its chunks again, or to let its spool go.
const CmdStream = "stream"

// MaxResend bounds the chunks one stream request asks for again.
const MaxResend = 64

// StreamSecretSize is the size of a request's stream secret.
const StreamSecretSize = 32

var requestShape = &shape{members: map[string]*shape{
	"name":    str,
	"argv":    {elem: str},
	"timeout": integer,
	"sent":    str,
	"every":   integer,
	"report":  reportShape,
	"stream":  bytes64,
	"of":      str,
	"resend":  {elem: integer},
	"done":    boolean,
	"path":    str,
	"size":    integer,
	"sha256":  str,
	"chunks":  integer,
}}

// EncodeRequest returns the JSON payload for r. It refuses (with an error wrapping a
// *DecodeError) any request DecodeRequest would refuse, so a controller learns of a bad request
// before it is sealed and sent. Times are sent in UTC.
func EncodeRequest(r Request) ([]byte, error) {
	r = canonicalRequest(r)
	if err := validateRequest(r); err != nil {
		return nil, fmt.Errorf("commands: encode request: %w", err)
	}
	b, err := marshal(r)
	if err != nil {
		return nil, fmt.Errorf("commands: encode request: %w", err)
	}
	if len(b) > MaxRequestSize {
		return nil, fmt.Errorf("commands: encode request: %w", decodeErr("",
			fmt.Sprintf("request encodes to %d bytes, above the limit of %d", len(b), MaxRequestSize)))
	}
	return b, nil
}

// DecodeRequest parses a request payload strictly (see the package documentation, "Payload"):
// exactly one JSON object of at most MaxRequestSize bytes, valid UTF-8, only the members of
// Request spelled exactly, none twice, no nulls, and every limit of validateRequest. On failure
// it returns the zero Request and a *DecodeError.
func DecodeRequest(b []byte) (Request, error) {
	r, err := decodeRequest(b)
	if err != nil {
		return Request{}, err
	}
	return r, nil
}

func decodeRequest(b []byte) (Request, error) {
	var r Request
	if len(b) > MaxRequestSize {
		return r, decodeErr("", fmt.Sprintf("request is %d bytes, above the limit of %d", len(b), MaxRequestSize))
	}
	if err := checkShape(b, requestShape); err != nil {
		return r, err
	}
	if err := unmarshal(b, &r, "sent"); err != nil {
		return r, err
	}
	r = canonicalRequest(r)
	if err := validateRequest(r); err != nil {
		return r, err
	}
	// The canonical encoding may be longer than what was received (JSON escapes U+2028 and
	// U+2029); a request that could not be re-sent is refused, so Encode(Decode(b)) never fails.
	enc, err := marshal(r)
	if err != nil {
		return r, decodeErr("", err.Error())
	}
	if len(enc) > MaxRequestSize {
		return r, decodeErr("", fmt.Sprintf("request re-encodes to %d bytes, above the limit of %d", len(enc), MaxRequestSize))
	}
	return r, nil
}

// canonicalRequest gives a request its one in-memory form: times in UTC without a monotonic
// reading, an empty Argv as nil, and a Report of its own (validateRequest makes its members
// canonical, which must not change the caller's).
func canonicalRequest(r Request) Request {
	r.Sent = r.Sent.UTC()
	if r.Report != nil {
		rep := *r.Report
		r.Report = &rep
	}
	if len(r.Argv) == 0 {
		r.Argv = nil
	}
	if len(r.Stream) == 0 {
		r.Stream = nil
	}
	if len(r.Resend) == 0 {
		r.Resend = nil
	}
	return r
}

// validateRequest checks everything about r but its encoded size; it returns a *DecodeError.
func validateRequest(r Request) error {
	switch r.Name {
	case CmdExec:
		if len(r.Argv) == 0 {
			return decodeErr("argv", "exec needs at least the program")
		}
		if len(r.Argv) > MaxArgs {
			return decodeErr("argv", fmt.Sprintf("%d elements, above the limit of %d", len(r.Argv), MaxArgs))
		}
	case CmdStream:
		if !isLowerHex(r.Of, 32) || len(r.Argv) != 0 {
			return decodeErr("of", "stream needs of: the command id as 32 lower-case hex digits, and no argv")
		}
		if (len(r.Resend) == 0) == !r.Done || len(r.Resend) > MaxResend {
			return decodeErr("resend", fmt.Sprintf("stream needs 1 to %d chunk indices to resend, or done, and not both", MaxResend))
		}
		seen := map[int64]bool{}
		for _, i := range r.Resend {
			if i < 0 || i >= MaxStreamChunks || seen[i] {
				return decodeErr("resend", fmt.Sprintf("index %d outside 0..%d or given twice", i, MaxStreamChunks-1))
			}
			seen[i] = true
		}
	case CmdPull, CmdPush:
		if len(r.Argv) != 0 || len(r.Stream) != StreamSecretSize {
			return decodeErr("stream", r.Name+" needs a stream secret and no argv")
		}
		if len(r.Path) > MaxPathBytes || !utf8.ValidString(r.Path) || strings.IndexByte(r.Path, 0) >= 0 || !strings.HasPrefix(r.Path, "/") {
			return decodeErr("path", fmt.Sprintf("an absolute path of at most %d bytes, valid UTF-8 without NUL", MaxPathBytes))
		}
		if r.Name == CmdPull && (r.Size != 0 || r.SHA256 != "" || r.Chunks != 0) {
			return decodeErr("size", "pull takes no size, sha256 or chunks")
		}
		if r.Name == CmdPush && (r.Size < 0 || r.Size > MaxStreamSize || !isLowerHex(r.SHA256, 64) || r.Chunks < 0 || r.Chunks > MaxStreamChunks || (r.Size > 0) != (r.Chunks > 0)) {
			return decodeErr("size", "push needs its size, sha256 and chunks (none for an empty file)")
		}
	case CmdPing, CmdSysinfo, CmdReportEvery, CmdReport:
		if len(r.Argv) != 0 {
			return decodeErr("argv", r.Name+" takes no arguments")
		}
	default:
		return decodeErr("name", fmt.Sprintf("unknown command %q (known: %s)", clip(r.Name, 64), strings.Join(requestNames, ", ")))
	}
	for i, a := range r.Argv {
		field := "argv[" + strconv.Itoa(i) + "]"
		switch {
		case len(a) > MaxArgBytes:
			return decodeErr(field, fmt.Sprintf("%d bytes, above the limit of %d", len(a), MaxArgBytes))
		case !utf8.ValidString(a):
			return decodeErr(field, "not valid UTF-8")
		case strings.IndexByte(a, 0) >= 0:
			return decodeErr(field, "contains a NUL byte")
		case i == 0 && a == "":
			return decodeErr(field, "empty program name")
		}
	}
	if r.Timeout < 0 {
		return decodeErr("timeout", "negative")
	}
	if r.Name != CmdStream && (r.Of != "" || r.Resend != nil || r.Done) {
		return decodeErr("of", "only "+CmdStream+" takes of, resend and done")
	}
	if r.Stream != nil && (r.Name != CmdExec && r.Name != CmdPull && r.Name != CmdPush || len(r.Stream) != StreamSecretSize) {
		return decodeErr("stream", fmt.Sprintf("exec, pull and push only, exactly %d bytes", StreamSecretSize))
	}
	if r.Name != CmdPull && r.Name != CmdPush && (r.Path != "" || r.Size != 0 || r.SHA256 != "" || r.Chunks != 0) {
		return decodeErr("path", "only pull and push take path, size, sha256 and chunks")
	}
	if err := validateReportRequest(r); err != nil {
		return err
	}
	return validTime("sent", r.Sent)
}

// builtinNames lists the command names the registry runs, sorted; requestNames every name a
// request may carry (the registry's and the two the node answers itself), for messages.
var (
	builtinNames = []string{CmdExec, CmdPing, CmdSysinfo}
	requestNames = []string{CmdExec, CmdPing, CmdPull, CmdPush, CmdReport, CmdReportEvery, CmdStream, CmdSysinfo}
)
