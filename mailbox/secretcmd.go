package mailbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// DefaultSecretTimeout bounds a password or token command when no timeout is given: long
// enough for a secret store that has to unlock a key, short enough that an agent whose helper
// hangs says so.
const DefaultSecretTimeout = 30 * time.Second

const (
	maxSecretStdout = 64 << 10 // what is read of a command's standard output (its first line is used)
	maxSecretStderr = 4 << 10  // what is kept of its standard error, of which the start is reported
	shownStderr     = 512
)

// CommandSecret is a SecretSource that runs cmdline at every login with RunSecretCommand:
// --password-command and --oauth2-token-command. timeout <= 0 means DefaultSecretTimeout.
func CommandSecret(cmdline string, timeout time.Duration) SecretSource {
	return func(ctx context.Context) (string, error) {
		return RunSecretCommand(ctx, cmdline, timeout)
	}
}

// RunSecretCommand runs cmdline with /bin/sh -c and returns the first line of its standard
// output, without the line end. It is a shell command line, as mbsync's PassCmd, msmtp's
// passwordeval, aerc's source-cred-cmd and git's "!" helpers are, so what works there works
// here ("pass show mail/work", "oama access me@gmail.com", "secret-tool lookup ... | head -1");
// the line comes from the operator's own configuration, never from mail. The command gets no
// standard input (it must not read the caller's, which may carry a pairing code), inherits the
// environment, and runs in a process group of its own that is killed when it times out or ctx
// ends.
//
// Errors: the command exited non-zero, was killed, timed out (after timeout, default
// DefaultSecretTimeout: wraps context.DeadlineExceeded) or printed an empty first line: a
// *SecretError naming the command, with the start of its standard error. When ctx ends first,
// ctx's error is returned (wrapped, naming the command), not a SecretError: the command was not
// at fault. Nothing the command printed on its standard output ever appears in an error.
func RunSecretCommand(ctx context.Context, cmdline string, timeout time.Duration) (string, error) {
	source := fmt.Sprintf("command %q", cmdline)
	if strings.TrimSpace(cmdline) == "" {
		return "", &SecretError{Source: source, Err: errors.New("the command is empty")}
	}
	if timeout <= 0 {
		timeout = DefaultSecretTimeout
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, "/bin/sh", "-c", cmdline)
	cmd.Stdin = nil // /dev/null
	var stdout, stderr capWriter
	stdout.max, stderr.max = maxSecretStdout, maxSecretStderr
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	ownGroup(cmd)
	// A grandchild that keeps the pipes open must not keep Wait waiting after the kill.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return "", fmt.Errorf("%s: %w", source, ctx.Err())
	}
	fail := func(err error) (string, error) {
		return "", &SecretError{Source: source, Stderr: escapeControl(strings.TrimSpace(stderr.String()), shownStderr), Err: err}
	}
	if cctx.Err() != nil {
		return fail(fmt.Errorf("no answer within %s: %w", timeout, cctx.Err()))
	}
	if err != nil {
		return fail(err)
	}
	line, _, _ := strings.Cut(stdout.String(), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return fail(errors.New("it printed nothing on the first line of its standard output"))
	}
	return line, nil
}

// FileSecret is a SecretSource that reads the first line of the file at path at every login
// (--password-file): a password changed in the file is used from the next connection on. The
// caller makes path absolute (a relative one would follow the working directory of each run).
func FileSecret(path string) SecretSource {
	return func(context.Context) (string, error) {
		source := "file " + path
		f, err := os.Open(path)
		if err != nil {
			return "", &SecretError{Source: source, Err: err}
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, maxSecretStdout))
		if err != nil {
			return "", &SecretError{Source: source, Err: err}
		}
		line, _, _ := strings.Cut(string(data), "\n")
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			return "", &SecretError{Source: source, Err: errors.New("its first line is empty")}
		}
		return line, nil
	}
}

// capWriter keeps the first max bytes written to it and discards the rest, so that a command
// that prints without end neither blocks nor fills memory.
type capWriter struct {
	buf bytes.Buffer
	max int
}

func (w *capWriter) Write(p []byte) (int, error) {
	if room := w.max - w.buf.Len(); room > 0 {
		w.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (w *capWriter) String() string { return w.buf.String() }
