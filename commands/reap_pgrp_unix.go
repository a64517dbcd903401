//go:build unix && !linux

package commands

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

// groupAttr starts the program in a process group of its own.
func groupAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// cancelGroup kills the program's process group.
func cancelGroup(cmd *exec.Cmd) error {
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// endGroup kills what is left of the process group led by pid, once pid itself has ended.
func endGroup(pid int) bool {
	return syscall.Kill(-pid, syscall.SIGKILL) == nil
}
