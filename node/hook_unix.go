//go:build unix

package node

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// hookProcGroup starts a failure hook's shell as the leader of a process group of its own, and
// makes cancelling it (the hook's timeout, the agent stopping) kill that whole group rather than
// the shell alone, whose children would otherwise run on.
func hookProcGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
}

// endHookGroup kills what is left of the group led by the hook's shell pid once the shell has
// ended: children it started in the background. (The group id stays in use, and so cannot be
// given to another group, while any of them lives.)
func endHookGroup(pid int) {
	syscall.Kill(-pid, syscall.SIGKILL)
}
