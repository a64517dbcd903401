//go:build !unix

package node

import (
	"io/fs"
	"os"
)

// fileOwner: no Unix owner here; access to the socket is the operating system's ACLs' job.
func fileOwner(fs.FileInfo) (uid int, ok bool) { return 0, false }

const ownerChecks = false

func euid() int { return os.Geteuid() }
