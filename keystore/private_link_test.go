//go:build unix

package keystore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestThreat36LinkAboveTheDirectory: a symbolic link of another user's above the directory (a
// /var/tmp/sealpost-UID planted by someone else, pointing into our state directory) is refused;
// one of our own is trusted.
func TestThreat36LinkAboveTheDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a link to another user (uid 65534)")
	}
	base := t.TempDir()
	target := filepath.Join(base, "ours")
	if err := os.MkdirAll(filepath.Join(target, "witness"), 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "planted")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivateDir(filepath.Join(link, "witness")); err != nil {
		t.Fatalf("through a link of our own: %v; want it trusted", err)
	}
	if err := os.Lchown(link, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := CheckPrivateDir(filepath.Join(link, "witness"))
	var ue *UnsafeDirError
	if !errors.As(err, &ue) || ue.Reason != UnsafeSymlink || ue.Path != link {
		t.Fatalf("through another user's link: %v; want UnsafeSymlink naming %s", err, link)
	}
}
