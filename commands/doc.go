// Package commands decides what a remote command may be on a sealpost agent, and runs it: the
// registry of built-in commands, the per-peer policy, the JSON payloads of requests and
// results, and execution with output caps and timeouts.
//
// A controller encodes a [Request] with [EncodeRequest]; the protocol compresses and seals it
// (packages compress and session, joined by node). The agent opens the package, decodes the
// payload with [DecodeRequest], asks [Registry.Check] whether the peer's [Policy] allows it,
// runs it with [Registry.Run], and sends back the [Result] encoded with [EncodeResult]; the
// controller reads it with [DecodeResult] and shows it with [Result.Text].
//
// # Commands
//
//   - ping: answers at once with exit code 0 and no output; the controller measures the round
//     trip from Request.Sent.
//   - sysinfo: host facts ([SysInfo]): hostname, OS, kernel release, architecture, uptime, load
//     averages, memory, disk space of "/" and other local file systems, CPU count, sealpost
//     and Go versions. Outside Linux only what the Go runtime knows is filled in.
//   - exec: runs one program from the peer's allowlist with the given argv.
//
// ping and sysinfo are open to every paired peer. exec runs only what Policy.Allow lists:
// Argv[0] is either an absolute path, which must equal an entry after filepath.Clean, or a
// bare name without a slash, which must be the base name of exactly one entry (and then runs
// that entry; the agent's PATH is never searched at run time). Relative paths, ambiguous names
// and anything else are denied. [ResolveAllow] turns what an operator types after --allow into
// such entries when the policy is written. Allowing a shell or an interpreter (sh, python,
// env, find, ...) allows everything; the allowlist cannot see what such a program will do.
//
// # Imports
//
// The standard library only. It imports no other sealpost package (a test in the module root
// enforces it); node joins it to the rest.
//
// # Invariants
//
//   - Never a shell: exec calls the allowlisted program directly (exec.CommandContext with the
//     absolute path) and passes Argv as is, so shell metacharacters are plain bytes to the
//     program (THREATS.md row 28).
//   - The registry is the allowlist of names: it is built in code by [NewRegistry], and a name
//     it does not hold is refused with an error wrapping both [ErrUnknownCommand] and
//     [ErrDenied].
//   - Denied means nothing ran: Check and Run decide before any process is started, and Run
//     checks again itself, so a caller that skips Check cannot run a denied request (THREATS.md
//     row 27). The error wraps ErrDenied and says which program and how to allow it.
//   - Caps and timeouts always apply: every exec has a timeout (the request's, or the policy's
//     default, never above the policy's maximum); on expiry its whole process group is killed
//     with SIGKILL, and output still held open by an escaped background process is abandoned
//     after [WaitDelay]. Each of stdout and stderr keeps at most Policy.MaxOutput bytes (never
//     more than [MaxOutputLimit]) and reports truncation. Stdin is empty. The environment is
//     the policy's (by default a minimal PATH, LANG and HOME), never the agent's; the working
//     directory is the policy's ("/" by default).
//   - Processes a program leaves behind in the background after it exited normally are not
//     killed; they lose their output pipes after WaitDelay.
//   - Run never fails: it returns a Result whose Error says what went wrong, and every Result
//     it returns passes EncodeResult (given an Options.Now within the years 0-9999).
//
// # Payload
//
// Requests and results travel as JSON (RFC 8259) payloads inside the protocol's compression
// frame; docs/PROTOCOL.md, section "Commands payload", is their specification and is written
// from this one. Both decoders are strict: the payload must be valid UTF-8 and exactly one JSON
// object (white space around it allowed, nothing else); member names are case-sensitive and
// must be known; no member may appear twice or be null; every value must have its member's
// type; and the limits below hold. Any violation gives a [*DecodeError] naming the member
// (Field, e.g. "argv[2]" or "sysinfo.disks[0].mount"; empty for the document as a whole) and
// the zero value. The encoders refuse what the decoders would refuse. Durations are integer
// nanoseconds, times RFC 3339 strings (sent in UTC), byte strings padded standard base64
// (RFC 4648 section 4, canonical: no line breaks, unused bits zero).
//
// A request is at most [MaxRequestSize] (64 KiB), both as received and as re-encoded. Name is
// one of the three commands. exec needs 1 to [MaxArgs] (256) argv elements; the others take
// none. Each element is at most [MaxArgBytes] (32 KiB) of UTF-8 without NUL; argv[0] is not
// empty. Timeout is not negative.
//
// A result is at most [MaxResultSize] (12 MiB, below the compression frame's 16 MiB). Its exit
// code lies in -1..4294967295, stdout and stderr hold at most [MaxOutputLimit] (4 MiB) each,
// error at most [MaxErrorBytes] (4096) bytes, durations are not negative, the sysinfo strings
// at most [MaxInfoString] (256) bytes, at most [MaxDisks] (32) disks with a non-empty mount
// point of at most [MaxMountBytes] (1024) bytes, loads non-negative, times within years 0-9999.
//
// Decoding then encoding gives an equal value, not necessarily the same bytes (JSON allows
// several spellings; the decoded value is canonical: times in UTC, empty lists nil).
package commands
