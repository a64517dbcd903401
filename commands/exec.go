package commands

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sync/atomic"
	"time"
)

// WaitDelay is how long Run keeps reading a program's output after it exited or was killed,
// before it closes the pipes: a background process still holding them cannot hang the agent.
const WaitDelay = 2 * time.Second

// errTimeout is the cause of an exec context that ran out of time.
var errTimeout = errors.New("commands: timeout")

// runExec runs a checked exec request: req.Argv[0] is an allowlisted absolute path and
// req.Timeout is positive.
func runExec(ctx context.Context, r *Registry, req Request, p Policy) Result {
	path, dir := req.Argv[0], p.dir()
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return Result{ExitCode: -1, Error: fmt.Sprintf("working directory %s: not a directory or not accessible", dir)}
	}
	if _, err := os.Stat(path); err != nil {
		return Result{ExitCode: -1, Error: startError(path, err)}
	}

	ctx, cancel := context.WithTimeoutCause(ctx, req.Timeout, errTimeout)
	defer cancel()
	stdout := &cappedBuffer{max: p.maxOutput()}
	stderr := &cappedBuffer{max: p.maxOutput()}
	cmd := exec.CommandContext(ctx, path, req.Argv[1:]...) // absolute path: no PATH lookup, no shell
	cmd.Env = p.env()                                      // never nil: nothing of the agent's leaks
	cmd.Dir = dir
	cmd.Stdin = nil // reads from the null device
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.WaitDelay = WaitDelay
	var killed atomic.Bool
	setProcessGroup(cmd, &killed)

	err := cmd.Run()
	res := Result{
		Stdout:          stdout.bytes(),
		Stderr:          stderr.bytes(),
		StdoutTruncated: stdout.truncated(),
		StderrTruncated: stderr.truncated(),
	}
	if cmd.ProcessState == nil { // never started
		res.ExitCode = -1
		res.Error = startError(path, err)
		return res
	}
	code, signal := exitStatus(cmd.ProcessState)
	res.ExitCode = code
	switch {
	case killed.Load() && context.Cause(ctx) == errTimeout:
		res.TimedOut = true
		res.Error = fmt.Sprintf("timed out after %v; the process group was killed", req.Timeout)
	case killed.Load():
		res.Error = fmt.Sprintf("cancelled (%v); the process group was killed", context.Cause(ctx))
	case signal != "":
		res.Error = "killed by signal " + signal
	case errors.Is(err, exec.ErrWaitDelay):
		res.Error = fmt.Sprintf("the program exited but a background process kept its output open; stopped reading after %v", WaitDelay)
	}
	if signal != "" {
		res.ExitCode = -1
	}
	return res
}

func startError(path string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "program not found: " + path
	case errors.Is(err, fs.ErrPermission):
		return "permission denied: " + path
	}
	return fmt.Sprintf("cannot start %s: %v", path, err)
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
