package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHookEndsItsChildren (THREATS.md row 39): a failure hook's shell starts a background
// child; whether the hook times out, the agent stops (its context ends) or the shell simply
// exits, the child is gone afterwards. Killing the shell alone left the child running.
func TestHookEndsItsChildren(t *testing.T) {
	for _, c := range []struct {
		what    string
		wait    bool          // the shell waits for its child (and so is cut off)
		timeout time.Duration // the hook's own timeout
		agent   time.Duration // the agent's context ends after this (0: never)
	}{
		{"the hook timed out", true, 200 * time.Millisecond, 0},
		{"the agent stopped", true, time.Hour, 200 * time.Millisecond},
		{"the shell exited", false, time.Hour, 0},
	} {
		t.Run(strings.ReplaceAll(c.what, " ", "_"), func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			script := "sleep 300 </dev/null >/dev/null 2>&1 & echo $! > " + pidFile
			if c.wait {
				script += "; wait"
			}
			ctx := t.Context()
			if c.agent > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, c.agent)
				defer cancel()
			}
			_, err := runHook(ctx, script, []byte("{}\n"), c.timeout)
			if c.wait && err == nil {
				t.Fatalf("runHook = nil error, want the hook cut off")
			}
			raw, rerr := os.ReadFile(pidFile)
			pid, perr := strconv.Atoi(strings.TrimSpace(string(raw)))
			if rerr != nil || perr != nil || pid <= 1 {
				t.Fatalf("the hook's child wrote no pid: %q, %v, %v", raw, rerr, perr)
			}
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) }) // the child this test started, if it survived
			// A killed process takes a moment to go: wait for its end (a pidfd becomes
			// readable then), with a bound.
			if !waitGone(t, pid, 10*time.Second) {
				t.Fatalf("%s: the hook's child %d still runs", c.what, pid)
			}
		})
	}
}

// waitGone waits until pid has ended, at most d, and reports whether it did.
func waitGone(t *testing.T, pid int, d time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return true // reaped already
	}
	if err != nil {
		t.Skipf("pidfd_open: %v (this test needs Linux 5.3 or later)", err)
	}
	defer unix.Close(fd)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(d.Milliseconds()))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			t.Fatalf("poll on a pidfd: %v", err)
		}
		return n > 0
	}
}
