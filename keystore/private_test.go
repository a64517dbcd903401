package keystore

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// nobody is the uid the tests give files "of another user"; changing owners needs root.
const nobody = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: gives a file to another uid (65534) with chown; CI runs the suite as root")
	}
}

func chown(t *testing.T, path string) {
	t.Helper()
	if err := os.Lchown(path, nobody, nobody); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// precious is a file of ours outside the state directory that a followed link would overwrite.
func precious(t *testing.T, content []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// closedStore makes a store in a fresh directory, closes it and returns the directory.
func closedStore(t *testing.T) string {
	t.Helper()
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutCursor("k", Cursor{LastUID: 1}) })
	closeChecked(t, s)
	return s.Dir()
}

// TestThreat36UnsafeStateDir: threat row 36, "a state directory created beforehand by another
// user, symlinks inside it -> refused with a clear error naming the path and its owner; never
// followed, never trusted". (The control socket is the node's; CheckOwnedFile is its tool.)
// Each case builds a directory, opens it, and wants either an *UnsafeDirError with the reason
// and path given, or a successful Open; either way a file a link points at is unchanged, byte
// for byte.
func TestThreat36UnsafeStateDir(t *testing.T) {
	type setup struct {
		dir     string // what Open is given
		witness string // Options.WitnessDir
		target  string // a file that must stay unchanged ("" = none)
		bad     string // the path the error must name; "" = dir
	}
	cases := []struct {
		name   string
		root   bool
		build  func(t *testing.T) setup
		reason UnsafeReason // 0: Open succeeds
	}{
		{"directory made beforehand by another user", true, func(t *testing.T) setup {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			chown(t, dir)
			return setup{dir: dir}
		}, UnsafeOwner},
		{"directory writable by its group", false, func(t *testing.T) setup {
			dir := t.TempDir()
			chmod(t, dir, 0o770)
			return setup{dir: dir}
		}, UnsafeWritable},
		{"directory writable by others", false, func(t *testing.T) setup {
			dir := t.TempDir()
			chmod(t, dir, 0o703)
			return setup{dir: dir}
		}, UnsafeWritable},
		{"directory is a symbolic link to one of ours", false, func(t *testing.T) setup {
			link := filepath.Join(t.TempDir(), "state")
			symlink(t, t.TempDir(), link)
			return setup{dir: link}
		}, UnsafeSymlink},
		{"directory is a dangling symbolic link", false, func(t *testing.T) setup {
			link := filepath.Join(t.TempDir(), "state")
			symlink(t, filepath.Join(t.TempDir(), "nowhere"), link)
			return setup{dir: link}
		}, UnsafeSymlink},
		{"directory is a file", false, func(t *testing.T) setup {
			return setup{dir: precious(t, []byte("not a directory"))}
		}, UnsafeNotDir},
		{"parent writable by everyone, no sticky bit", false, func(t *testing.T) setup {
			parent := t.TempDir()
			chmod(t, parent, 0o777)
			return setup{dir: filepath.Join(parent, "state"), bad: parent}
		}, UnsafeParent},
		{"parent owned by another user", true, func(t *testing.T) setup {
			parent := t.TempDir()
			chown(t, parent)
			return setup{dir: filepath.Join(parent, "state"), bad: parent}
		}, UnsafeParent},
		{"missing parent inside another user's directory (like /var/tmp/sealpost-UID)", true, func(t *testing.T) setup {
			theirs := filepath.Join(t.TempDir(), "sealpost-1000")
			if err := os.Mkdir(theirs, 0o755); err != nil {
				t.Fatal(err)
			}
			chown(t, theirs)
			return setup{dir: t.TempDir(), witness: filepath.Join(theirs, "witness"), bad: theirs}
		}, UnsafeParent},
		{"parent writable by everyone with the sticky bit (like /tmp)", false, func(t *testing.T) setup {
			parent := t.TempDir()
			chmod(t, parent, 0o777|os.ModeSticky)
			return setup{dir: filepath.Join(parent, "state")}
		}, 0},

		{"state.db is a link to a store of ours elsewhere", false, func(t *testing.T) setup {
			other := closedStore(t)
			dir := t.TempDir()
			symlink(t, filepath.Join(other, dbFile), filepath.Join(dir, dbFile))
			return setup{dir: dir, target: filepath.Join(other, dbFile), bad: filepath.Join(dir, dbFile)}
		}, UnsafeSymlink},
		{"state.db is a link to an empty file of ours", false, func(t *testing.T) setup {
			target, dir := precious(t, nil), t.TempDir()
			symlink(t, target, filepath.Join(dir, dbFile))
			return setup{dir: dir, target: target, bad: filepath.Join(dir, dbFile)}
		}, UnsafeSymlink},
		{"state.db is a hard link to a file of ours elsewhere", false, func(t *testing.T) setup {
			other := closedStore(t)
			dir := t.TempDir()
			if err := os.Link(filepath.Join(other, dbFile), filepath.Join(dir, dbFile)); err != nil {
				t.Fatal(err)
			}
			return setup{dir: dir, target: filepath.Join(other, dbFile), bad: filepath.Join(dir, dbFile)}
		}, UnsafeNotRegular},
		{"state.db owned by another user", true, func(t *testing.T) setup {
			dir := closedStore(t)
			chown(t, filepath.Join(dir, dbFile))
			return setup{dir: dir, bad: filepath.Join(dir, dbFile)}
		}, UnsafeOwner},
		{"state.gen is a link to a file of ours", false, func(t *testing.T) setup {
			dir, target := closedStore(t), precious(t, []byte("precious\n"))
			if err := os.Remove(filepath.Join(dir, genFile)); err != nil {
				t.Fatal(err)
			}
			symlink(t, target, filepath.Join(dir, genFile))
			return setup{dir: dir, target: target, bad: filepath.Join(dir, genFile)}
		}, UnsafeSymlink},
		{"state.gen is a link, in a new directory", false, func(t *testing.T) setup {
			dir, target := t.TempDir(), precious(t, []byte("precious\n"))
			symlink(t, target, filepath.Join(dir, genFile))
			return setup{dir: dir, target: target, bad: filepath.Join(dir, genFile)}
		}, UnsafeSymlink},
		{"state.gen owned by another user", true, func(t *testing.T) setup {
			dir := closedStore(t)
			chown(t, filepath.Join(dir, genFile))
			return setup{dir: dir, bad: filepath.Join(dir, genFile)}
		}, UnsafeOwner},
		{"state.gen.tmp is a link to a file of ours", false, func(t *testing.T) setup {
			dir, target := t.TempDir(), precious(t, []byte("precious\n"))
			symlink(t, target, filepath.Join(dir, genFile+".tmp"))
			return setup{dir: dir, target: target}
		}, 0},
		{"state.pid.tmp is a link to a file of ours", false, func(t *testing.T) setup {
			dir, target := closedStore(t), precious(t, []byte("precious\n"))
			symlink(t, target, filepath.Join(dir, pidFile+".tmp"))
			return setup{dir: dir, target: target}
		}, 0},
		{"state.pid is a link to a file of ours", false, func(t *testing.T) setup {
			dir, target := closedStore(t), precious(t, []byte("precious\n"))
			symlink(t, target, filepath.Join(dir, pidFile))
			return setup{dir: dir, target: target}
		}, 0},

		{"witness directory writable by its group", false, func(t *testing.T) setup {
			w := t.TempDir()
			chmod(t, w, 0o770)
			return setup{dir: t.TempDir(), witness: w, bad: w}
		}, UnsafeWritable},
		{"witness directory made beforehand by another user", true, func(t *testing.T) setup {
			w := filepath.Join(t.TempDir(), "witness")
			if err := os.Mkdir(w, 0o700); err != nil {
				t.Fatal(err)
			}
			chown(t, w)
			return setup{dir: t.TempDir(), witness: w, bad: w}
		}, UnsafeOwner},
		{"witness file is a link to a file of ours", false, func(t *testing.T) setup {
			w := filepath.Join(t.TempDir(), "witness")
			s := openTestStore(t, Options{WitnessDir: w})
			closeChecked(t, s)
			path, target := witnessPath(s, w), precious(t, []byte("precious\n"))
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			symlink(t, target, path)
			return setup{dir: s.Dir(), witness: w, target: target, bad: path}
		}, UnsafeSymlink},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root {
				needRoot(t)
			}
			st := tc.build(t)
			var before []byte
			if st.target != "" {
				var err error
				if before, err = os.ReadFile(st.target); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(st.dir, Options{WitnessDir: st.witness})
			if s != nil {
				// Commit and close as a node would, so a followed link would be written.
				if err := s.Update(func(tx *Tx) error { return tx.PutCursor("k", Cursor{LastUID: 2}) }); err != nil {
					t.Error(err)
				}
				closeChecked(t, s)
			}
			if st.target != "" {
				after, err := os.ReadFile(st.target)
				if err != nil || !bytes.Equal(after, before) {
					t.Errorf("%s changed through a link (%d bytes -> %d, %v)", st.target, len(before), len(after), err)
				}
			}
			if tc.reason == 0 {
				if err != nil {
					t.Fatalf("Open(%s) = %v, want success", st.dir, err)
				}
			} else {
				var ue *UnsafeDirError
				if !errors.As(err, &ue) || !errors.Is(err, ErrUnsafeStateDir) {
					t.Fatalf("Open(%s) = %v, want *UnsafeDirError (%v)", st.dir, err, tc.reason)
				}
				bad := st.bad
				if bad == "" {
					bad = st.dir
				}
				if ue.Reason != tc.reason || ue.Path != bad {
					t.Fatalf("Open(%s): %+v, want reason %v at %s", st.dir, ue, tc.reason, bad)
				}
			}
		})
	}
}

// TestUnsafeDirErrorNamesPathAndOwner: the threat row asks for an error that names the path and
// its owner (and says what to do); this checks the message says the first two, by value.
func TestUnsafeDirErrorNamesPathAndOwner(t *testing.T) {
	for r := UnsafeSymlink; r <= UnsafeParent; r++ {
		e := &UnsafeDirError{Path: "/srv/x/state", Dir: "/srv/x/state", UID: 4242, Mode: 0o777, Reason: r}
		msg := e.Error()
		if !strings.Contains(msg, e.Path) || !strings.Contains(msg, "uid "+strconv.Itoa(e.UID)) {
			t.Errorf("%v: %q does not name the path and owner uid", r, msg)
		}
		if strings.Contains(r.String(), "UnsafeReason(") {
			t.Errorf("reason %d has no name", r)
		}
	}
}

// CheckPrivateDir and CheckOwnedFile are what the node uses for its control socket and its
// directory.
func TestCheckOwnedFile(t *testing.T) {
	dir := t.TempDir()
	if err := CheckPrivateDir(dir); err != nil {
		t.Fatalf("CheckPrivateDir(%s) = %v", dir, err)
	}
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := CheckOwnedFile(sock); err != nil {
		t.Errorf("CheckOwnedFile(socket) = %v", err)
	}
	link := filepath.Join(dir, "link.sock")
	symlink(t, sock, link)
	var ue *UnsafeDirError
	if err := CheckOwnedFile(link); !errors.As(err, &ue) || ue.Reason != UnsafeSymlink {
		t.Errorf("CheckOwnedFile(link) = %v, want UnsafeSymlink", err)
	}
	if err := CheckOwnedFile(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckOwnedFile(missing) = %v, want fs.ErrNotExist", err)
	}
	if err := CheckPrivateDir(filepath.Join(dir, "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckPrivateDir(missing) = %v, want fs.ErrNotExist", err)
	}
	if os.Geteuid() == 0 {
		chown(t, sock)
		if err := CheckOwnedFile(sock); !errors.As(err, &ue) || ue.Reason != UnsafeOwner || ue.UID != nobody {
			t.Errorf("CheckOwnedFile(socket of uid %d) = %v, want UnsafeOwner", nobody, err)
		}
	}
}

// TestDefaultWitnessDir: the witness lives neither under the user's home (a home backup would
// bring it back with the state) nor in a place cleared at boot, and differs per uid.
func TestDefaultWitnessDir(t *testing.T) {
	d := DefaultWitnessDir()
	if !filepath.IsAbs(d) {
		t.Fatalf("DefaultWitnessDir() = %q, want an absolute path", d)
	}
	if home, err := os.UserHomeDir(); err == nil && home != "/" && strings.HasPrefix(d, home+string(filepath.Separator)) {
		t.Errorf("DefaultWitnessDir() = %q is under the home directory %s", d, home)
	}
	want := "/var/lib/sealpost/witness"
	if uid := os.Geteuid(); uid != 0 {
		want = "/var/tmp/sealpost-" + strconv.Itoa(uid) + "/witness"
	}
	if d != want {
		t.Errorf("DefaultWitnessDir() = %q, want %q", d, want)
	}
}
