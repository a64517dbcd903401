package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"sync/atomic"
	"time"
)

// WaitDelay is how long Run keeps reading a program's output after it and everything it
// started were ended, before it closes the pipes: a process that escaped (see the package
// documentation, "Descendants") and still holds them cannot hang the agent.
const WaitDelay = 2 * time.Second

// errTimeout is the cause of an exec context that ran out of time.
var errTimeout = errors.New("commands: timeout")

// runExec runs a checked exec request: req.Argv[0] is an allowlisted absolute path and
// req.Timeout is positive.
func runExec(ctx context.Context, r *Registry, req Request, p Policy) Result {
	path, dir := req.Argv[0], p.dir()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return Result{Outcome: OutcomeStartFailed, ExitCode: -1, Error: fmt.Sprintf("working directory %s: not a directory or not accessible", dir)}
	}
	if _, err := os.Stat(path); err != nil {
		return startFailure(path, err)
	}

	ctx, cancel := context.WithTimeoutCause(ctx, req.Timeout, errTimeout)
	defer cancel()
	// Our own pipes, not os/exec's: Wait then returns when the program ends, and the group is
	// ended before the output is read to its end.
	outR, outW, err := os.Pipe()
	if err != nil {
		return Result{Outcome: OutcomeStartFailed, ExitCode: -1, Error: fmt.Sprintf("cannot make a pipe: %v", err)}
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return Result{Outcome: OutcomeStartFailed, ExitCode: -1, Error: fmt.Sprintf("cannot make a pipe: %v", err)}
	}
	newCmd := func() *exec.Cmd {
		cmd := exec.CommandContext(ctx, path, req.Argv[1:]...) // absolute path: no PATH lookup, no shell
		cmd.Env = p.env()                                      // never nil: nothing of the agent's leaks
		cmd.Dir = dir
		cmd.Stdin = nil // reads from the null device
		cmd.Stdout = outW
		cmd.Stderr = errW
		cmd.WaitDelay = WaitDelay // SIGKILL again, by pid, if Cancel did not end it
		return cmd
	}
	var killed atomic.Bool
	cmd, group, err := r.startGroup(newCmd, &killed)
	outW.Close() // the program holds its own copies now
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			// The context ended before the program could start (exec.Cmd checks it first).
			if context.Cause(ctx) == errTimeout {
				return Result{Outcome: OutcomeTimedOut, TimedOut: true, ExitCode: -1, Error: fmt.Sprintf("timed out after %v before the program started", req.Timeout)}
			}
			return Result{Outcome: OutcomeCancelled, ExitCode: -1, Error: fmt.Sprintf("cancelled (%v) before the program started", context.Cause(ctx))}
		}
		return startFailure(path, err)
	}
	stdout := &lockedWriter{buf: &cappedBuffer{max: p.maxOutput()}}
	stderr := &lockedWriter{buf: &cappedBuffer{max: p.maxOutput()}}
	var outSink, errSink io.Writer = stdout, stderr
	if p.Stdout != nil && p.Stderr != nil {
		outSink, errSink = keepWriting{p.Stdout}, keepWriting{p.Stderr}
	}
	drains := []*drain{startDrain(outR, outSink), startDrain(errR, errSink)}

	err = cmd.Wait()
	if n := group.end(); n > 0 {
		r.log.Debug("ended processes the program left", "op", "reap", "cmd", CmdExec, "count", n)
	}
	abandoned := finishDrains(WaitDelay, drains...)
	out, errOut := stdout.seal(), stderr.seal()
	res := Result{
		Stdout:          out.bytes(),
		Stderr:          errOut.bytes(),
		StdoutTruncated: out.truncated(),
		StderrTruncated: errOut.truncated(),
	}
	if cmd.ProcessState == nil { // cannot happen after a successful Start
		f := startFailure(path, err)
		f.Stdout, f.Stderr, f.StdoutTruncated, f.StderrTruncated = res.Stdout, res.Stderr, res.StdoutTruncated, res.StderrTruncated
		return f
	}
	code, signal, sigName := exitStatus(cmd.ProcessState)
	res.ExitCode, res.Signal, res.Outcome = code, signal, OutcomeExited
	if signal != 0 {
		res.ExitCode, res.Outcome = -1, OutcomeSignaled
	}
	switch {
	case killed.Load() && context.Cause(ctx) == errTimeout:
		res.Outcome, res.TimedOut = OutcomeTimedOut, true
		res.Error = fmt.Sprintf("timed out after %v; it and every process it started were killed", req.Timeout)
	case killed.Load():
		res.Outcome = OutcomeCancelled
		res.Error = fmt.Sprintf("cancelled (%v); it and every process it started were killed", context.Cause(ctx))
	case signal != 0:
		res.Error = "killed by signal " + sigName
	case abandoned:
		res.Error = fmt.Sprintf("the program exited but a process it started kept its output open; stopped reading after %v", WaitDelay)
	}
	return res
}

// startFailure is the Result of a program that could not be started: its Outcome from the
// error's kind, and an Error for people.
func startFailure(path string, err error) Result {
	r := Result{ExitCode: -1}
	switch {
	case errors.Is(err, ErrNoCgroup): // the agent's cgroup, not the program, is at fault
		r.Outcome, r.Error = OutcomeStartFailed, fmt.Sprintf("cannot start %s: %v", path, err)
	case errors.Is(err, fs.ErrNotExist):
		r.Outcome, r.Error = OutcomeNotFound, "program not found: "+path
	case errors.Is(err, fs.ErrPermission):
		r.Outcome, r.Error = OutcomeNotExecutable, "permission denied: "+path
	case notExecutable(err):
		r.Outcome, r.Error = OutcomeNotExecutable, fmt.Sprintf("cannot execute %s: %v", path, err)
	default:
		r.Outcome, r.Error = OutcomeStartFailed, fmt.Sprintf("cannot start %s: %v", path, err)
	}
	return r
}

// keepWriting hands the program's output to a node's sink and never fails, so that a sink in
// trouble (a full disk) does not end the copy and leave the program blocked on a full pipe.
type keepWriting struct{ w io.Writer }

func (k keepWriting) Write(p []byte) (int, error) {
	k.w.Write(p) // the sink records its own trouble
	return len(p), nil
}

// cappedBuffer keeps the first max bytes written to it and counts the rest. It never fails a
// write, so a program writing more than the cap is not disturbed (no EPIPE); its output is
// only cut here. exec.Cmd writes to each buffer from one goroutine and Wait orders those writes
// before our reads.
type cappedBuffer struct {
	buf     []byte
	max     int
	dropped int64
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if room := c.max - len(c.buf); room > 0 {
		k := min(room, len(p))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
	}
	c.dropped += int64(len(p))
	return n, nil
}

func (c *cappedBuffer) bytes() []byte {
	if len(c.buf) == 0 {
		return nil
	}
	return c.buf
}

func (c *cappedBuffer) truncated() bool { return c.dropped > 0 }
