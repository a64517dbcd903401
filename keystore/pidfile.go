package keystore

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// writePID records this process as the lock holder. It is written only after
// bbolt's flock is held, so the file never names a process that does not
// own the lock — except briefly after a crash, until the next Open rewrites
// it; a stale PID in an error message is a hint, not a decision.
func writePID(dir string) error {
	if err := writeFileAtomic(dir, pidFile, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		return fmt.Errorf("keystore: write pid file: %w", err)
	}
	return nil
}

// readPID returns the PID in DIR/state.pid, or 0 if it is missing or garbled.
func readPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// writeFileAtomic writes DIR/name via a temporary file and rename, so a
// reader sees the old content or the new, never a torn mix. It does not
// fsync; each caller says why that is acceptable. The temporary name is
// fixed because only the lock holder ever writes these files.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}
