//go:build unix

package keystore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// oNoFollow makes open fail on a symbolic link (ELOOP) instead of following it.
const oNoFollow = syscall.O_NOFOLLOW

// isSymlinkErr: an open with oNoFollow met a symbolic link.
func isSymlinkErr(err error) bool { return errors.Is(err, syscall.ELOOP) }

// fileOwner is fi's owning uid.
func fileOwner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// linkCount is fi's number of hard links.
func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

// DefaultWitnessDir is where a node keeps its rollback witness (see rollback.go) unless told
// otherwise: outside the state directory, and outside the user's home, because a backup of
// either comes back together with the state it is meant to contradict.
//
// For root it is /var/lib/sealpost/witness. For any other user it is
// /var/tmp/sealpost-UID/witness: /var/tmp is the one place such a user can surely write that
// survives a reboot (unlike /tmp or $XDG_RUNTIME_DIR, whose loss would look like a restore after
// every boot) and that home backups do not cover. /var/tmp is shared, so Open creates the
// directories 0700 and refuses them (CheckPrivateDir) if another user made either first.
//
// The limit: a snapshot of the whole machine or filesystem (a VM snapshot, a restored disk
// image) brings the witness back too, and then nothing here can tell; and a cleaner of /var/tmp
// (systemd-tmpfiles removes files unused for 30 days) deleting the witness of a node that has
// not opened its store for that long makes the next Open report a restore.
func DefaultWitnessDir() string {
	uid := os.Geteuid()
	if uid == 0 {
		return "/var/lib/sealpost/witness"
	}
	return filepath.Join("/var/tmp", "sealpost-"+strconv.Itoa(uid), "witness")
}
