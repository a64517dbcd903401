//go:build !linux

package commands

import (
	"fmt"
	"os/exec"
	"runtime"
	"sync/atomic"
)

// pgroup: outside Linux only the program's process group is known. It is killed when the
// command times out or is cancelled, and again when the program has ended, so that what it
// left in the background in its group ends too; a process that left the group (setsid,
// setpgid) is not found.
type pgroup struct{ root int }

func (g pgroup) end() int {
	if endGroup(g.root) {
		return 1
	}
	return 0
}

func (r *Registry) startGroup(newCmd func() *exec.Cmd, killed *atomic.Bool) (*exec.Cmd, procGroup, error) {
	if r.reap == ReapCgroup {
		return nil, nil, fmt.Errorf("%w: cgroups need Linux, this is %s", ErrNoCgroup, runtime.GOOS)
	}
	cmd := newCmd()
	groupAttr(cmd)
	cmd.Cancel = func() error {
		killed.Store(true)
		return cancelGroup(cmd)
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	return cmd, pgroup{root: cmd.Process.Pid}, nil
}

// Reaping describes, for the agent's log, how exec ends what a program leaves behind.
func (r *Registry) Reaping() string {
	return "process group only (" + runtime.GOOS + " has no cgroups or subreaper here)"
}

// KillLeftovers does nothing outside Linux: nothing there marks what an earlier agent's
// commands left running.
func KillLeftovers() (int, error) { return 0, nil }
