package keystore

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// bbolt's flock is per open file description on Linux, so a second Open in
// the same process blocks like another process would.
func TestLockSameProcess(t *testing.T) {
	s := openTestStore(t)
	before := snapshot(t, s)
	start := time.Now()
	s2, err := Open(s.Dir(), Options{LockTimeout: 100 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded while the lock was held")
	}
	var inUse *InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("error %v (%T), want *InUseError", err, err)
	}
	if inUse.PID != os.Getpid() || inUse.Path != statePath(s) {
		t.Errorf("InUseError = %+v, want PID %d path %s", inUse, os.Getpid(), statePath(s))
	}
	if elapsed > 2*time.Second {
		t.Errorf("Open took %v with a 100ms timeout", elapsed)
	}
	// The failed Open must not have touched the holder's files.
	if pid := readPID(s.Dir()); pid != os.Getpid() {
		t.Errorf("state.pid now %d", pid)
	}
	assertSameSnapshot(t, before, snapshot(t, s))
}

const lockHolderEnv = "SEALPOST_KEYSTORE_TEST_LOCK_HOLDER"

// TestLockHeldByChildProcess re-executes the test binary as a child that
// opens the store and waits; the parent must get *InUseError naming the
// child's PID within its timeout.
func TestLockHeldByChildProcess(t *testing.T) {
	if dir := os.Getenv(lockHolderEnv); dir != "" {
		holdLock(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLockHeldByChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), lockHolderEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	// waitChild collects the child's exit status once, whoever asks first.
	waitChild := sync.OnceValue(func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return errors.New("child did not exit")
		}
	})
	t.Cleanup(func() {
		stdin.Close()
		if err := waitChild(); err != nil {
			t.Errorf("child: %v", err)
		}
	})

	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "holding" {
				ready <- true
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout) // drain until exit so Wait returns
		done <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-done:
		done <- err
		t.Fatalf("child exited before holding the lock: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("child never reported holding the lock")
	}

	start := time.Now()
	s, err := Open(dir, Options{LockTimeout: 200 * time.Millisecond})
	elapsed := time.Since(start)
	if err == nil {
		s.Close()
		t.Fatal("Open succeeded while the child held the lock")
	}
	var inUse *InUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("error %v, want *InUseError", err)
	}
	if inUse.PID != cmd.Process.Pid {
		t.Errorf("InUseError names PID %d, child is %d", inUse.PID, cmd.Process.Pid)
	}
	if !strings.Contains(err.Error(), `is "sealpost agent" running?`) {
		t.Errorf("message lacks the hint: %q", err)
	}
	if elapsed > 3*time.Second {
		t.Errorf("Open took %v with a 200ms timeout", elapsed)
	}

	// Once the child lets go, the parent can open the same state.
	stdin.Close()
	if err := waitChild(); err != nil {
		t.Fatalf("child: %v", err)
	}
	s = openTestStoreIn(t, dir, Options{})
	if pid := readPID(dir); pid != os.Getpid() {
		t.Errorf("state.pid = %d after takeover", pid)
	}
}

// holdLock is the child's side: open, say so, and hold until stdin closes
// (bounded, so an orphaned child cannot hang around).
func holdLock(t *testing.T, dir string) {
	s := openTestStoreIn(t, dir, Options{})
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutCursor("holder", Cursor{LastUID: 1}) })
	os.Stdout.WriteString("holding\n")
	released := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(released)
	}()
	select {
	case <-released:
	case <-time.After(60 * time.Second):
		t.Error("parent never released the child")
	}
}

func TestInUseErrorMessage(t *testing.T) {
	s := openTestStore(t) // the message names a real state path
	cases := []struct {
		pid  int
		want string
	}{
		{4242, "state " + statePath(s) + ` is in use by PID 4242 (is "sealpost agent" running? stop it or let it do the work)`},
		{0, "state " + statePath(s) + ` is in use by another process (is "sealpost agent" running? stop it or let it do the work)`},
	}
	for _, tc := range cases {
		if got := (&InUseError{Path: statePath(s), PID: tc.pid}).Error(); got != tc.want {
			t.Errorf("PID %d:\n got  %s\n want %s", tc.pid, got, tc.want)
		}
	}
}
