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
// it; a stale PID in an error message is a hint, not a decision. No fsync:
// after a crash a stale or missing PID costs only that hint.
func writePID(dir string) error {
	if err := writeFileAtomic(dir, pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), false); err != nil {
		return fmt.Errorf("keystore: write pid file: %w", err)
	}
	return nil
}

// readPID returns the PID in DIR/state.pid, or 0 if it is missing, garbled,
// a link or not ours.
func readPID(dir string) int {
	b, err := readPrivate(filepath.Join(dir, pidFile), 32)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
