package keystore

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// A private directory (threat row 36). The state directory holds the node's private key and
// every session secret, and sealpost writes files in it, possibly as root; a directory someone
// else owns or can write to lets them read the state, or plant a symbolic link that turns one
// of those writes into an overwrite of any file the process may write. So keystore refuses such
// a directory instead of "fixing" it, and names the path, its owner and the remedy.
//
// The rule CheckPrivateDir applies, to the directory itself and (for the one swap that would
// defeat the check) to its parent:
//
//   - the directory is not a symbolic link (Lstat): a link's target can be changed after the
//     check by whoever owns the link or the directory holding it;
//   - it is a directory, owned by the effective uid of this process;
//   - its mode grants no write permission to group or others (mode & 0o022 == 0);
//   - its parent (reached through any links, as the kernel would) is owned by this uid or by
//     root, and is not writable by group or others unless its sticky bit is set: whoever may
//     write the parent could rename the checked directory away and put another in its place
//     (with the sticky bit, as on /tmp, only the owner of an entry may rename it).
//
// Directories further up are not checked: a path whose grandparent another user controls is
// not caught. Inside a directory that passes, only this uid (and root) can create entries, so
// the checks keystore makes on its own files (no link, owned by us, regular) cannot be raced.

// ErrUnsafeStateDir is wrapped by every *UnsafeDirError, for callers that only branch.
var ErrUnsafeStateDir = errors.New("keystore: unsafe state directory")

// UnsafeReason says which rule a path broke.
type UnsafeReason uint8

const (
	// UnsafeSymlink: the path is a symbolic link.
	UnsafeSymlink UnsafeReason = iota + 1
	// UnsafeNotDir: the state (or witness) path is not a directory.
	UnsafeNotDir
	// UnsafeNotRegular: a state file is not a regular file (or has other hard links).
	UnsafeNotRegular
	// UnsafeOwner: the path is owned by another user.
	UnsafeOwner
	// UnsafeWritable: the directory is writable by group or others.
	UnsafeWritable
	// UnsafeParent: the directory's parent lets another user rename or replace it.
	UnsafeParent
)

var unsafeReasonNames = [...]string{
	UnsafeSymlink:    "symlink",
	UnsafeNotDir:     "not-directory",
	UnsafeNotRegular: "not-regular-file",
	UnsafeOwner:      "foreign-owner",
	UnsafeWritable:   "writable-by-others",
	UnsafeParent:     "unsafe-parent",
}

func (r UnsafeReason) String() string {
	if int(r) < len(unsafeReasonNames) && unsafeReasonNames[r] != "" {
		return unsafeReasonNames[r]
	}
	return "UnsafeReason(" + strconv.Itoa(int(r)) + ")"
}

// UnsafeDirError is returned by Open, CheckPrivateDir and CheckOwnedFile when a path breaks the
// private-directory rule (see CheckPrivateDir). Path is what broke it: the directory, its
// parent (Reason UnsafeParent) or a file in it. errors.Is(err, ErrUnsafeStateDir) holds.
type UnsafeDirError struct {
	Path   string       // the offending path
	Dir    string       // the directory being checked (Path's directory for a file)
	UID    int          // Path's owner; -1 where the platform has no owners
	Mode   fs.FileMode  // Path's mode, from Lstat
	Reason UnsafeReason // which rule
}

func (e *UnsafeDirError) Is(target error) bool { return target == ErrUnsafeStateDir }

func (e *UnsafeDirError) Error() string {
	owner := userName(e.UID)
	switch e.Reason {
	case UnsafeSymlink:
		if e.Path == e.Dir {
			return fmt.Sprintf("directory %s is a symbolic link (owned by %s); sealpost does not follow links to its state: pass the directory it points to, if it is yours", e.Path, owner)
		}
		return fmt.Sprintf("%s is a symbolic link (owned by %s); sealpost never follows links in its state directory: remove it", e.Path, owner)
	case UnsafeNotDir:
		return fmt.Sprintf("%s is not a directory (mode %v, owned by %s)", e.Path, e.Mode, owner)
	case UnsafeNotRegular:
		return fmt.Sprintf("%s is not a plain file of its own (mode %v, owned by %s); sealpost wrote no such thing: remove it", e.Path, e.Mode, owner)
	case UnsafeOwner:
		if e.Path == e.Dir {
			return fmt.Sprintf("directory %s is owned by %s, not by you (%s): whoever owns it can read and replace the state in it; use a directory you own, e.g. ~/.local/state/sealpost", e.Path, owner, userName(os.Geteuid()))
		}
		return fmt.Sprintf("%s is owned by %s, not by you (%s): sealpost did not write it; remove it", e.Path, owner, userName(os.Geteuid()))
	case UnsafeWritable:
		return fmt.Sprintf("directory %s (owned by %s) has mode %v: others can plant files in it; run: chmod 700 %s", e.Path, owner, e.Mode.Perm(), e.Path)
	case UnsafeParent:
		return fmt.Sprintf("directory %s is inside %s (owned by %s, mode %v), where others can rename it and put theirs in its place; use a directory whose parent only you or root can write (or that has the sticky bit, chmod +t)", e.Dir, e.Path, owner, e.Mode)
	}
	return fmt.Sprintf("%s is unsafe for state (%v, owner %s, mode %v)", e.Path, e.Reason, owner, e.Mode)
}

// userName names uid for an error message: "alice (uid 1000)", or "uid 1000" if it has no name.
func userName(uid int) string {
	if uid < 0 {
		return "unknown"
	}
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil && u.Username != "" {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// CheckPrivateDir reports whether path is a directory no one but this user (and root) can
// change: the rule in this file's comment. It returns nil, an *UnsafeDirError, or the error of
// Lstat (wrapping fs.ErrNotExist if the directory is missing). Open applies it to the state
// directory and the witness directory; the node applies it to the directory of its control
// socket.
func CheckPrivateDir(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("keystore: check %s: %w", path, err)
	}
	fi, err := os.Lstat(abs)
	if err != nil {
		return fmt.Errorf("keystore: check %s: %w", path, err)
	}
	bad := func(p string, fi fs.FileInfo, r UnsafeReason) error {
		return &UnsafeDirError{Path: p, Dir: path, UID: fileOwner(fi), Mode: fi.Mode(), Reason: r}
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return bad(path, fi, UnsafeSymlink)
	case !fi.IsDir():
		return bad(path, fi, UnsafeNotDir)
	case !ownedByUs(fi):
		return bad(path, fi, UnsafeOwner)
	case fi.Mode().Perm()&0o022 != 0:
		return bad(path, fi, UnsafeWritable)
	}
	// A symbolic link anywhere above it decides where the path leads: one that another user
	// owns (planted in /var/tmp, say) could lead it into a directory of theirs choosing, or
	// into ours where it does harm (the witness into the state directory). Links of ours and
	// root's are trusted.
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		lfi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("keystore: check %s: %w", p, err)
		}
		if lfi.Mode()&fs.ModeSymlink != 0 {
			if uid := fileOwner(lfi); uid >= 0 && uid != os.Geteuid() && uid != 0 {
				return bad(p, lfi, UnsafeSymlink)
			}
		}
		if filepath.Dir(p) == p {
			break
		}
	}
	parent := filepath.Dir(abs)
	if parent == abs {
		return nil // the root directory has no parent
	}
	pfi, err := os.Stat(parent)
	if err != nil {
		return fmt.Errorf("keystore: check %s: %w", parent, err)
	}
	if uid := fileOwner(pfi); (uid >= 0 && uid != os.Geteuid() && uid != 0) ||
		(pfi.Mode().Perm()&0o022 != 0 && pfi.Mode()&fs.ModeSticky == 0) {
		return bad(parent, pfi, UnsafeParent)
	}
	return nil
}

// CheckOwnedFile reports whether path (of any type: a socket, say) is not a symbolic link and
// is owned by this user. It does not look at the mode: in a directory that passes
// CheckPrivateDir no one else can reach the file anyway. It returns nil, an *UnsafeDirError,
// or Lstat's error (wrapping fs.ErrNotExist if the file is missing).
func CheckOwnedFile(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("keystore: check %s: %w", path, err)
	}
	return checkOwned(path, fi, false)
}

// checkOwned applies CheckOwnedFile's rule to fi (from Lstat or Fstat of path) and, if regular
// is set, requires a regular file with a single link: a hard link to a file elsewhere would
// make a write here a write there.
func checkOwned(path string, fi fs.FileInfo, regular bool) error {
	bad := func(r UnsafeReason) error {
		return &UnsafeDirError{Path: path, Dir: filepath.Dir(path), UID: fileOwner(fi), Mode: fi.Mode(), Reason: r}
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return bad(UnsafeSymlink)
	case !ownedByUs(fi):
		return bad(UnsafeOwner)
	case regular && (!fi.Mode().IsRegular() || linkCount(fi) > 1):
		return bad(UnsafeNotRegular)
	}
	return nil
}

// checkStateFile checks a file keystore is about to open or replace in a private directory: a
// missing file is fine (it will be created exclusively); an existing one must be a regular file
// of ours with one link, never a symbolic link.
func checkStateFile(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("keystore: check %s: %w", path, err)
	}
	return checkOwned(path, fi, true)
}

// ownedByUs: fi's owner is this process's effective uid (always true where there are no
// owners).
func ownedByUs(fi fs.FileInfo) bool {
	uid := fileOwner(fi)
	return uid < 0 || uid == os.Geteuid()
}

// openPrivate opens an existing state file for flag (os.O_RDONLY or os.O_WRONLY, optionally
// os.O_CREATE|os.O_EXCL) without following a symbolic link, then checks through the descriptor
// (so no rename in between matters) that it is a regular file of ours with one link.
func openPrivate(path string, flag int, perm fs.FileMode) (*os.File, error) {
	f, err := os.OpenFile(path, flag|oNoFollow, perm)
	if err != nil {
		if isSymlinkErr(err) {
			if fi, lerr := os.Lstat(path); lerr == nil {
				return nil, checkOwned(path, fi, true)
			}
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = checkOwned(path, fi, true)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// readPrivate reads at most limit bytes of a state file opened with openPrivate; a longer file
// gives the first limit+1 bytes, for the caller to reject.
func readPrivate(path string, limit int64) ([]byte, error) {
	f, err := openPrivate(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// writeFileAtomic replaces DIR/name with data via DIR/name.tmp and a rename, so a reader sees
// the old content or the new, never a torn mix, and no link planted at either name is followed:
// a leftover name.tmp (whatever it is) is removed first — os.Remove deletes a link, not its
// target — and the new one is created exclusively; rename replaces a link at name rather than
// writing through it. With durable set, the file and then the directory are fsynced, so after a
// crash name holds either the old content or data, and exists if it existed before. The
// temporary name is fixed because only the lock holder writes these files.
func writeFileAtomic(dir, name string, data []byte, durable bool) error {
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := openPrivate(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if durable {
		return syncDir(dir)
	}
	return nil
}

// syncDir fsyncs a directory, making the names created or renamed in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
