package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInitStoresOnlyWorkingSettings: init without servers is a usage error; with servers it
// cannot reach it says so and stores nothing; --no-check stores the settings untried.
func TestInitStoresOnlyWorkingSettings(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String() // nothing listens here once closed
	closed.Close()
	t.Setenv("SEALPOST_TEST_PW", "pw")
	base := []string{"--address", "alice@example.test", "--password-env", "SEALPOST_TEST_PW", "--tls", "none"}
	run := func(args ...string) (string, error) {
		dir := filepath.Join(t.TempDir(), "state")
		var out, errOut bytes.Buffer
		err := runInit(context.Background(), &globals{state: dir, stdout: &out, stderr: &errOut}, append(slices.Clone(base), args...))
		return dir, err
	}
	stored := func(dir string) bool { _, err := os.Stat(filepath.Join(dir, "state.db")); return err == nil }

	dir, err := run()
	var usage usageError
	if !errors.As(err, &usage) || !strings.Contains(err.Error(), "--imap and --smtp are required") || stored(dir) {
		t.Fatalf("init without servers = %v (stored: %v); want a usage error and nothing stored", err, stored(dir))
	}
	dir, err = run("--imap", dead, "--smtp", dead)
	if err == nil || !strings.Contains(err.Error(), "nothing was stored") || !strings.Contains(err.Error(), "connect to IMAP server "+dead) || stored(dir) {
		t.Fatalf("init with servers that do not answer = %v (stored: %v); want the IMAP server named and nothing stored", err, stored(dir))
	}
	dir, err = run("--imap", dead, "--smtp", dead, "--no-check")
	if err != nil || !stored(dir) {
		t.Fatalf("init --no-check = %v (stored: %v); want the settings stored untried", err, stored(dir))
	}
}
