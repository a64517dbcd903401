//go:build !unix

package keystore

import "io/fs"

// No O_NOFOLLOW and no file owners here: the checks that need them pass, and only the
// symbolic-link and file-type rules apply.
const oNoFollow = 0

func isSymlinkErr(error) bool { return false }

func fileOwner(fs.FileInfo) int { return -1 }

func linkCount(fs.FileInfo) uint64 { return 1 }

// DefaultWitnessDir is "" (no witness) where there is no agreed place for one.
func DefaultWitnessDir() string { return "" }
