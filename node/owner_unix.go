//go:build unix

package node

import (
	"io/fs"
	"os"
	"syscall"
)

// fileOwner is the uid that owns the file fi describes.
func fileOwner(fi fs.FileInfo) (uid int, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// ownerChecks: on Unix a file's owner and mode say who may replace it or connect to it.
const ownerChecks = true

func euid() int { return os.Geteuid() }
