//go:build !unix

package commands

import (
	"os"
	"os/exec"
	"sync/atomic"
)

// setProcessGroup: without Unix process groups, cancellation kills the program only.
func setProcessGroup(cmd *exec.Cmd, killed *atomic.Bool) {
	cmd.Cancel = func() error {
		killed.Store(true)
		return cmd.Process.Kill()
	}
}

func exitStatus(ps *os.ProcessState) (int, string) {
	return ps.ExitCode(), ""
}
