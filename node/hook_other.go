//go:build !unix

package node

import "os/exec"

// hookProcGroup: no process groups here; cancelling a hook kills its shell only.
func hookProcGroup(*exec.Cmd) {}

func endHookGroup(int) {}
