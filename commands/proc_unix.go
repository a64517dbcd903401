//go:build unix

package commands

import (
	"fmt"
	"os"
	"syscall"
)

// exitStatus returns the exit code, or -1 and a description of the signal that ended the
// process.
func exitStatus(ps *os.ProcessState) (int, string) {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		return -1, fmt.Sprintf("%d (%v)", int(sig), sig)
	}
	return ps.ExitCode(), ""
}
