// Package commands decides what a remote command may be on a sealpost agent, and runs it: the
// registry of built-in commands, the per-peer policy, the JSON payloads of requests and
// results, and execution with output caps and timeouts.
//
// A controller encodes a [Request] with [EncodeRequest]; the protocol compresses and seals it
// (packages compress and session, joined by node). The agent opens the package, decodes the
// payload with [DecodeRequest], asks [Registry.Check] whether the peer's [Policy] allows it,
// runs it with [Registry.Run] (which ends every process the program started when the command
// ends; the agent calls [KillLeftovers] once when it starts), and sends back the [Result] encoded with [EncodeResult]; the
// controller reads it with [DecodeResult], branches on its [Outcome] (see "Outcomes") and shows
// it with [Result.Text].
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
//     default, never above the policy's maximum); on expiry the program and every process it
//     started are killed with SIGKILL, and output still held open by a process that escaped
//     (see "Descendants") is abandoned after [WaitDelay]. Each of stdout and stderr keeps at
//     most Policy.MaxOutput bytes (never more than [MaxOutputLimit]) and reports truncation.
//     Stdin is empty. The environment is the policy's (by default a minimal PATH, LANG and
//     HOME), never the agent's; the working directory is the policy's ("/" by default).
//   - Nothing a program started outlives its command (THREATS.md row 39): when the program
//     exits, times out or is cancelled, every process it started is killed, background
//     children and those that left its process group or session included, before Run
//     returns. The limits of each mechanism are under "Descendants".
//   - Run never fails: it returns a Result whose Outcome says how the command ended (never
//     OutcomeUnknown) and whose Error explains it to people, and every Result it returns passes
//     EncodeResult (given an Options.Now within the years 0-9999).
//
// # Outcomes
//
// How a command ended travels as data, the [Outcome] in Result.Outcome, with a stable text
// token on the wire: exited (ExitCode is the status; ping and sysinfo exit 0), signaled (a
// signal sealpost did not send ended it; Signal is its number), timed-out, cancelled (the agent
// stopped it, e.g. at shutdown), not-found, not-executable, start-failed (nothing ran), denied.
// Result.Error is only the explanation for people and may be worded differently by each build:
// no code branches on it. Truncated output and an undelivered result are flags beside the
// outcome, not outcomes, since each combines with any of them. A result from an agent of an
// older build has no outcome and decodes with OutcomeUnknown; [Result.EffectiveOutcome] infers
// what the typed fields tell (TimedOut, or an exit code with no Error), never from the text.
// [Result.ShellExitCode] gives the status a shell would report: the exit code, or 128 plus the
// signal's number (137 for kill -9).
//
// # Descendants
//
// Every exec program runs as the leader of a new session (so its process group is its own)
// with Pdeathsig SIGKILL: the kernel kills it if the agent dies (strictly, when the thread
// that started it ends; the Go runtime ends a thread only with a goroutine locked to it). To find the rest of what it
// starts, [Options].Reap chooses one of two Linux mechanisms; the zero value, [ReapAuto],
// takes the first where it works and the second otherwise, and [Registry.Reaping] says which
// one a registry uses, and why (for the agent's log at start).
//
// A cgroup per command ([ReapCgroup]): the preferred one. It needs cgroup v2 (found through
// /proc/self/cgroup and /proc/self/mountinfo, so a hybrid layout with cgroup2 under
// /sys/fs/cgroup/unified works too), the right to create a child cgroup in the agent's own
// cgroup (root, or a systemd unit with Delegate=yes; no controller is enabled, so the "no
// internal processes" rule is no obstacle) and Linux 5.7. The agent creates sealpost-cmd-<its
// pid>-<its start time>-<random> there and starts the program directly in it (clone3 with
// CLONE_INTO_CGROUP), so that no fork happens outside. When the command ends it writes
// cgroup.kill (Linux 5.14; before, it freezes the cgroup and SIGKILLs each process in
// cgroup.procs), waits until cgroup.events says it is empty, reaps the processes that were
// re-parented to the agent (when it is a subreaper or pid 1; a zombie still names its cgroup),
// and removes the cgroup with any a program made below it. A process leaves the cgroup only by
// writing its pid into another cgroup's cgroup.procs, which the kernel allows to whoever may
// write both that file and the cgroup.procs of the lowest cgroup above the two (cgroup v2
// "delegation containment"). Programs run as the agent's user, so: as root, a program can move
// anywhere; under a systemd unit with Delegate=yes (or a systemd --user unit), the agent's
// cgroup and everything below it belong to the agent's user, and a program can move into the
// agent's own cgroup, into a cgroup it makes there, or into another command's, but not out of
// that subtree. Such a process is neither killed when its command ends nor found by
// [KillLeftovers] (in another command's cgroup, it ends with that command). There is no
// defence in code: what else is in the agent's cgroup cannot be told from such a process (a
// unit's ExecReload= helper, or, for an agent started by root from a login, that login's own
// processes). A program that moves itself out on purpose is one not to allowlist. If the agent
// dies, the program gets SIGKILL from Pdeathsig but the rest keeps running until the next
// agent calls [KillLeftovers] at its start: it kills and removes every per-command cgroup
// under its own cgroup whose maker (pid and start time) is gone, and leaves those of running
// agents alone. When a program cannot be started in a cgroup although one was made, and
// starting it without one works, [ReapAuto] stops using cgroups in that process.
//
// The process tree ([ReapProcTree]): the fallback. The agent makes itself a child subreaper
// (prctl PR_SET_CHILD_SUBREAPER), so that a process whose parent ended is re-parented to the
// agent instead of init; while commands run, it reads /proc every 50 ms and assigns each
// process to a command: the program, a child of one of the command's processes, a process in
// a session the command's processes made (while one of them is still in it, or when the
// process is an orphan re-parented to the agent: once a session is empty its number is free
// for any new session on the machine, and a session found empty is forgotten), an orphan
// that holds the command's output pipe,
// and, when the command ends, an orphan (re-parented to the agent, outside the agent's
// session) forked after the program while no other still-running command had started. When
// the command ends it SIGKILLs everything assigned to it (checking each pid's start time
// first) and repeats until nothing is left, and reaps those zombies that are its children
// with wait4 on their pids (never wait(-1): os/exec's own children are not touched). Its
// limits: a process whose ancestors all ended between two reads of /proc, that left the
// command's session and let go of its output, while other commands overlapped it in time,
// cannot be told apart: it is left to the one of them that ends last. A process that the
// agent's own code (not a command) starts with a new session while a command runs could be
// mistaken for that command's; sealpost's agent starts no such process. If the agent dies,
// only the program gets SIGKILL (Pdeathsig): what it started survives, and there is no
// record for the next agent to find. Outside Linux only the program's process group is
// known: it is killed on timeout or cancel and again when the program has ended; processes
// that left it are not found.
//
// Run reads the output until every process holding the pipes is gone; with either Linux
// mechanism that is at once. Should something still hold them, it stops reading [WaitDelay]
// after the descendants were killed and says so in Result.Error.
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
// one of the three commands, or one of the two status report names ([CmdReportEvery],
// [CmdReport], report.go), which the node answers itself and the Registry denies. exec needs 1
// to [MaxArgs] (256) argv elements; the others take none. Each element is at most [MaxArgBytes]
// (32 KiB) of UTF-8 without NUL; argv[0] is not empty. Timeout is not negative. Every belongs
// to report-every only (0, or [MinReportEvery] to [MaxReportEvery]); Report to report only,
// where it is required: seq from 1, base below seq, its sysinfo members by section 19's names
// and limits, each made canonical; its checks ([CheckResult], at most [MaxChecks], names and
// output bounded, output without control characters) and checks_removed (a delta only).
//
// A result is at most [MaxResultSize] (12 MiB, below the compression frame's 16 MiB). Its
// outcome is a string: a token this build does not know decodes to OutcomeUnknown instead of
// failing the result (a newer agent may report outcomes added later; the output is still worth
// having), and OutcomeUnknown is sent by leaving the member out. Its signal lies in
// 0..[MaxSignal] (127, so that 128 plus it is an 8-bit status), its exit
// code in -1..4294967295, stdout and stderr hold at most [MaxOutputLimit] (4 MiB) each,
// error at most [MaxErrorBytes] (4096) bytes, durations are not negative, the sysinfo strings
// at most [MaxInfoString] (256) bytes, at most [MaxDisks] (32) disks with a non-empty mount
// point of at most [MaxMountBytes] (1024) bytes, loads non-negative, times within years 0-9999.
//
// Decoding then encoding gives an equal value, not necessarily the same bytes (JSON allows
// several spellings; the decoded value is canonical: times in UTC, empty lists nil; an unknown
// outcome token is dropped).
package commands
