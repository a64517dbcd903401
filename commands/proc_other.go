//go:build !unix

package commands

import (
	"os"
	"os/exec"
)

func exitStatus(ps *os.ProcessState) (code, signal int, name string) {
	return ps.ExitCode(), 0, ""
}

// notExecutable: outside Unix only fs.ErrPermission (checked by the caller) says so.
func notExecutable(error) bool { return false }

// Without Unix process groups only the program itself is known: cancelling kills it, and
// nothing is left to find once it has ended.
func groupAttr(*exec.Cmd) {}

func cancelGroup(cmd *exec.Cmd) error { return cmd.Process.Kill() }

func endGroup(int) bool { return false }
