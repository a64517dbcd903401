//go:build !unix

package mailbox

import "os/exec"

// ownGroup: without process groups, only the shell is killed; WaitDelay bounds the wait for
// its children.
func ownGroup(*exec.Cmd) {}
