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

// TestInitMaxMailSize: --max-mail-size takes a size with a unit and refuses what is not one, or
// too small to carry a handshake, as a usage error that stores nothing.
func TestInitMaxMailSize(t *testing.T) {
	t.Setenv("SEALPOST_TEST_PW", "pw")
	run := func(size string) (string, error) {
		dir := filepath.Join(t.TempDir(), "state")
		var out, errOut bytes.Buffer
		err := runInit(context.Background(), &globals{state: dir, stdout: &out, stderr: &errOut},
			[]string{"--address", "alice@example.test", "--password-env", "SEALPOST_TEST_PW", "--tls", "none",
				"--imap", "127.0.0.1:1", "--smtp", "127.0.0.1:1", "--no-check", "--max-mail-size", size})
		return dir, err
	}
	for _, bad := range []string{"1K", "16383", "1.5M", "lots", "-5M"} {
		dir, err := run(bad)
		var usage usageError
		if !errors.As(err, &usage) {
			t.Errorf("init --max-mail-size %s = %v; want a usage error", bad, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "state.db")); err == nil {
			t.Errorf("init --max-mail-size %s stored the settings", bad)
		}
	}
	if _, err := run("5M"); err != nil {
		t.Fatalf("init --max-mail-size 5M = %v", err)
	}
}
