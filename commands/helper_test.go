package commands

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The test binary doubles as a tiny program the tests exec: when helperEnv is set in its
// environment it does what the value says and exits instead of running tests. Exec'd through
// Run it gets only the policy's environment, so the tests put helperEnv there.
const helperEnv = "SEALPOST_COMMANDS_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func helperMain(mode string, args []string) int {
	switch mode {
	case "argv": // prints its arguments as a JSON array
		json.NewEncoder(os.Stdout).Encode(args)
	case "env": // prints its environment as a JSON array
		json.NewEncoder(os.Stdout).Encode(os.Environ())
	case "pwd":
		wd, err := os.Getwd()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Print(wd)
	case "stdin": // prints how many bytes stdin held
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Print(len(b))
	case "spew": // writes args[0] bytes to stdout and args[1] bytes to stderr
		out, _ := strconv.Atoi(args[0])
		errn, _ := strconv.Atoi(args[1])
		os.Stdout.Write([]byte(strings.Repeat("o", out)))
		os.Stderr.Write([]byte(strings.Repeat("e", errn)))
	case "exit":
		code, _ := strconv.Atoi(args[0])
		return code
	case "kill-self": // ends itself with SIGKILL (Kill's signal on Unix)
		p, err := os.FindProcess(os.Getpid())
		if err == nil {
			err = p.Kill()
		}
		fmt.Fprintln(os.Stderr, "still alive:", err)
		return 1
	case "hang": // runs until it is killed; with an argument, first writes a byte to that file (a FIFO the test reads)
		if len(args) > 0 {
			if err := os.WriteFile(args[0], []byte{1}, 0); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		// Block until killed, on nothing to wait for: a signal subscription keeps the runtime
		// from taking the bare select for a deadlock.
		signal.Notify(make(chan os.Signal, 1), syscall.SIGUSR2)
		select {}
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		return 2
	}
	return 0
}

// helper returns the test binary's path and a policy allowing it in the given mode.
func helper(t *testing.T, mode string) (string, Policy) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// GORACE: a race-enabled binary otherwise sleeps a second before it exits.
	return exe, Policy{Allow: []string{exe}, Env: []string{helperEnv + "=" + mode, "GORACE=atexit_sleep_ms=0"}}
}

// lookPath resolves a program from the test process's PATH, skipping the test without it.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found in PATH: %v", name, err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// writeScript writes an executable file.
func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
