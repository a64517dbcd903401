//go:build !unix

package commands

import (
	"os"
	"os/exec"
)

func exitStatus(ps *os.ProcessState) (int, string) {
	return ps.ExitCode(), ""
}

// Without Unix process groups only the program itself is known: cancelling kills it, and
// nothing is left to find once it has ended.
func groupAttr(*exec.Cmd) {}

func cancelGroup(cmd *exec.Cmd) error { return cmd.Process.Kill() }

func endGroup(int) bool { return false }
