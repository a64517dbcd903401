//go:build unix

package mailbox

import (
	"os/exec"
	"syscall"
)

// ownGroup runs cmd in a process group of its own and makes the context's end kill the whole
// group: a shell's children (sh -c 'pass show x') would otherwise outlive it.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
