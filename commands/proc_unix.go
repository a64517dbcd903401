//go:build unix

package commands

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
)

// setProcessGroup starts the program in a process group of its own and makes cancellation
// kill that whole group with SIGKILL, so children it started die with it.
func setProcessGroup(cmd *exec.Cmd, killed *atomic.Bool) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		killed.Store(true)
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
}

// exitStatus returns the exit code, or -1 and a description of the signal that ended the
// process.
func exitStatus(ps *os.ProcessState) (int, string) {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		return -1, fmt.Sprintf("%d (%v)", int(sig), sig)
	}
	return ps.ExitCode(), ""
}
