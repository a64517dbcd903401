package mailbox_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/mailbox"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestRunSecretCommand: the first line of the command's output, run by the shell.
func TestRunSecretCommand(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ cmd, want string }{
		{"echo tok", "tok"},
		{"printf 'ya29.a-b\\r\\nsecond\\n'", "ya29.a-b"},
		{"printf 'no newline'", "no newline"},
		{"echo one | tr o 0; echo two", "0ne"},
		{"echo err >&2; echo 'pass word'", "pass word"},
	} {
		got, err := mailbox.RunSecretCommand(ctx, tc.cmd, 0)
		if err != nil || got != tc.want {
			t.Errorf("RunSecretCommand(%q) = %q, %v; want %q", tc.cmd, got, err, tc.want)
		}
	}
}

// TestRunSecretCommandFails: a failing command is a *SecretError (ErrNoSecret) that carries the
// exit status and the start of its stderr, escaped, and never its stdout.
func TestRunSecretCommandFails(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		cmd, stderr string
		exit        int
	}{
		{"printf '%s%s\\n' leak ed; printf 'gpg: decryption failed\\n\\033[31m' >&2; exit 3", `gpg: decryption failed\x0a\x1b[31m`, 3},
		{"exit 1", "", 1},
		{"true", "", -1},                 // printed nothing
		{"cat", "", -1},                  // no stdin to read: nothing
		{"no-such-command-xyz", "", 127}, // the shell says so on stderr
	} {
		got, err := mailbox.RunSecretCommand(ctx, tc.cmd, 0)
		var se *mailbox.SecretError
		if !errors.As(err, &se) || !errors.Is(err, mailbox.ErrNoSecret) || got != "" {
			t.Errorf("RunSecretCommand(%q) = %q, %v; want a *SecretError", tc.cmd, got, err)
			continue
		}
		var ee *exec.ExitError
		switch {
		case tc.exit < 0 && errors.As(err, &ee):
			t.Errorf("RunSecretCommand(%q) = %v; want no exit error", tc.cmd, err)
		case tc.exit >= 0 && (!errors.As(err, &ee) || ee.ExitCode() != tc.exit):
			t.Errorf("RunSecretCommand(%q) = %v; want exit status %d", tc.cmd, err, tc.exit)
		}
		if tc.stderr != "" && se.Stderr != tc.stderr {
			t.Errorf("RunSecretCommand(%q).Stderr = %q; want %q", tc.cmd, se.Stderr, tc.stderr)
		}
		if tc.exit == 127 && se.Stderr == "" {
			t.Errorf("RunSecretCommand(%q): no stderr kept; want the shell's complaint", tc.cmd)
		}
		if strings.Contains(err.Error(), "leaked") {
			t.Errorf("RunSecretCommand(%q) = %v: its standard output leaked into the error", tc.cmd, err)
		}
		if se.Source == "" {
			t.Errorf("RunSecretCommand(%q): SecretError names no source", tc.cmd)
		}
	}
}

// TestRunSecretCommandTimeout: a command that hangs (with a child of the shell holding its
// output open) ends at the timeout as a *SecretError wrapping context.DeadlineExceeded, and at
// the caller's deadline as the caller's error, which is not the source's fault.
func TestRunSecretCommandTimeout(t *testing.T) {
	const hang = "sleep 60; echo late"
	_, err := mailbox.RunSecretCommand(context.Background(), hang, 100*time.Millisecond)
	if !errors.Is(err, mailbox.ErrNoSecret) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("RunSecretCommand(%q) past its timeout = %v; want a *SecretError wrapping DeadlineExceeded", hang, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = mailbox.RunSecretCommand(ctx, hang, time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, mailbox.ErrNoSecret) {
		t.Errorf("RunSecretCommand(%q) past the caller's deadline = %v; want DeadlineExceeded and no SecretError", hang, err)
	}
}

// TestFileSecret: the first line of the file, read at every call; a missing or empty file is
// a *SecretError.
func TestFileSecret(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/pw"
	src := mailbox.FileSecret(path)
	if _, err := src(context.Background()); !errors.Is(err, mailbox.ErrNoSecret) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FileSecret of a missing file = %v; want a *SecretError wrapping ErrNotExist", err)
	}
	for _, tc := range []struct{ content, want string }{{"pw1\n", "pw1"}, {"pw2\r\nx\n", "pw2"}, {"\nlater\n", ""}} {
		writeFile(t, path, tc.content)
		got, err := src(context.Background())
		if got != tc.want || (tc.want == "") != errors.Is(err, mailbox.ErrNoSecret) {
			t.Errorf("FileSecret of %q = %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
}
