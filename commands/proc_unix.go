//go:build unix

package commands

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// exitStatus returns the exit code, or -1 with the number and a description of the signal
// that ended the process.
func exitStatus(ps *os.ProcessState) (code, signal int, name string) {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		return -1, int(sig), fmt.Sprintf("%d (%v)", int(sig), sig)
	}
	return ps.ExitCode(), 0, ""
}

// notExecutable reports whether a start error says the kernel will not run the file (a
// format it does not know, a text file without "#!"), as shells answer with 126.
func notExecutable(err error) bool { return errors.Is(err, syscall.ENOEXEC) }
