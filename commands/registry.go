package commands

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Options configure a Registry. The zero value works.
type Options struct {
	// Version is sealpost's version, reported by sysinfo.
	Version string
	// Now is the clock for Result.Started; nil = time.Now. Durations are always measured on
	// the monotonic clock.
	Now func() time.Time
	// Logger receives debug records of what ran; nil = silent.
	Logger *slog.Logger
	// Reap chooses how exec ends every process a program started when the command ends; the
	// zero value, ReapAuto, takes a cgroup per command where the system allows it and the
	// process tree otherwise. [Registry.Reaping] says which one it got.
	Reap ReapMode
}

// builtin is one command the registry knows.
type builtin struct {
	run func(ctx context.Context, r *Registry, req Request, p Policy) Result
	// pure: it changes nothing and answers at once (see Registry.Pure).
	pure bool
}

// Registry holds the built-in commands. It is built in code, never from configuration or by
// registration: the registry is the allowlist of command names. It is safe for concurrent use.
type Registry struct {
	cmds    map[string]builtin
	version string
	now     func() time.Time
	log     *slog.Logger
	sysinfo func(version string) SysInfo
	reap    ReapMode
}

// NewRegistry returns the registry of built-in commands: ping, sysinfo and exec.
func NewRegistry(opts Options) *Registry {
	r := &Registry{
		cmds: map[string]builtin{
			CmdPing:    {run: runPing, pure: true},
			CmdSysinfo: {run: runSysinfo},
			CmdExec:    {run: runExec},
		},
		version: opts.Version,
		now:     opts.Now,
		log:     opts.Logger,
		sysinfo: collectSysInfo,
		reap:    opts.Reap,
	}
	if r.now == nil {
		r.now = time.Now
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

// Names returns the command names the registry knows, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.cmds))
	for n := range r.cmds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// deniedError is what Check returns: it matches ErrDenied, and ErrUnknownCommand too when the
// name is unknown.
type deniedError struct {
	msg     string
	unknown bool
}

func (e *deniedError) Error() string { return e.msg }

func (e *deniedError) Is(target error) bool {
	return target == ErrDenied || e.unknown && target == ErrUnknownCommand
}

// maxDeniedMsg keeps denial messages within the protocol's 1024-byte error detail.
const maxDeniedMsg = 1000

func denied(format string, args ...any) error {
	return &deniedError{msg: clip(ErrDenied.Error()+": "+fmt.Sprintf(format, args...), maxDeniedMsg)}
}

// Check decides whether req may run under p, without running anything, and returns the request
// as it will run: for exec, a fresh Argv whose Argv[0] is the allowlisted absolute path; for
// every command, Timeout set to the effective timeout (p's default when req asks for none,
// capped by p.MaxTimeout).
//
// The error, if any, wraps ErrDenied; for a name the registry does not know it wraps
// ErrUnknownCommand as well. Its message is meant for the controller's operator (it names the
// program and how to allow it) and fits the protocol's 1024-byte error detail.
func (r *Registry) Check(req Request, p Policy) (Request, error) {
	if _, ok := r.cmds[req.Name]; !ok {
		return Request{}, &deniedError{unknown: true, msg: fmt.Sprintf("%v %q; this agent runs %s",
			ErrUnknownCommand, clip(req.Name, 64), strings.Join(r.Names(), ", "))}
	}
	if err := validateRequest(canonicalRequest(req)); err != nil {
		de := err.(*DecodeError)
		return Request{}, denied("malformed request: %s: %s", de.Field, de.Msg)
	}
	out := Request{Name: req.Name, Timeout: p.timeout(req.Timeout), Sent: req.Sent}
	if req.Name == CmdExec {
		path, err := resolveProgram(req.Argv[0], p)
		if err != nil {
			return Request{}, err
		}
		out.Argv = append([]string{path}, req.Argv[1:]...)
	}
	return out, nil
}

// Pure reports whether the named command changes nothing and answers at once, whatever the host
// (ping): running it a second time after a crash does no harm, so an agent may run and answer it
// in the transaction that accepts it, without the Executing record that a command with effects
// needs before it starts (docs/PROTOCOL.md section 12). sysinfo changes nothing either, but it
// asks the file systems (statfs), which a hung network or FUSE mount can block for good: it
// must not run while the agent holds its state's one writer.
func (r *Registry) Pure(name string) bool { return r.cmds[name].pure }

// Run checks req under p and executes it, and always returns a Result: a denied request comes
// back with ExitCode -1 and Error saying why, and nothing ran. exec never goes through a shell;
// its timeout and output caps always apply. ctx ending early kills the program too.
func (r *Registry) Run(ctx context.Context, req Request, p Policy) Result {
	started := r.now().UTC()
	checked, err := r.Check(req, p)
	if err != nil {
		r.log.Debug("command denied", "op", "check", "cmd", clip(req.Name, 64), "err", err)
		return Result{Outcome: OutcomeDenied, ExitCode: -1, Error: clip(err.Error(), MaxErrorBytes), Started: started}
	}
	t0 := time.Now()
	res := r.cmds[checked.Name].run(ctx, r, checked, p)
	res.Duration = time.Since(t0)
	res.Started = started
	res.Error = clip(res.Error, MaxErrorBytes)
	r.log.Debug("command finished", "op", "run", "cmd", checked.Name, "outcome", res.Outcome, "exit_code", res.ExitCode,
		"duration", res.Duration, "timed_out", res.TimedOut, "err", res.Error)
	return res
}

func runPing(context.Context, *Registry, Request, Policy) Result {
	return Result{Outcome: OutcomeExited}
}

func runSysinfo(_ context.Context, r *Registry, _ Request, _ Policy) Result {
	info := r.sysinfo(r.version)
	return Result{Outcome: OutcomeExited, Info: &info}
}
