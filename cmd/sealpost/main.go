// Command sealpost runs commands on hosts that only email can reach. See README.md for a tour and
// `sealpost help` for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/sealpost/sealpost/node"
)

// version is the sealpost release; set with -ldflags "-X main.version=..." when building a release.
var version = "0.1.0-dev"

// Exit codes (README.md, "Exit codes"). `run --wait` passes the remote program's own status through.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitPending  = 75  // run: the command is recorded but has no final answer yet (--timeout ran out, not mailed yet)
	exitUnknown  = 76  // run: the request went to the agent, which stopped answering; the command may be recorded
	exitTimedOut = 124 // run --wait: the program timed out on the peer
	exitSealpost = 125 // run: sealpost itself failed (usage, peer, mailbox)
	exitRefused  = 126 // run: the peer refused the command (denied, expired, clock, ...)
	exitNotFound = 127 // run: the program could not be started on the peer
)

// usageError makes main print the command's usage and exit 2. printed: the flag package has
// already shown the problem and the usage.
type usageError struct {
	msg     string
	printed bool
}

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{msg: fmt.Sprintf(format, args...)} }

// exitError carries a specific exit code out of a command.
type exitCodeError struct {
	code int
	err  error
}

func (e exitCodeError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}
func (e exitCodeError) Unwrap() error { return e.err }

// globals are the options every command shares.
type globals struct {
	state     string
	witness   string
	verbose   bool
	logFormat logFormat
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer

	logOnce sync.Once
	logTo   slog.Handler // every logger of this run writes through it (logHandler)
}

func (g *globals) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&g.state, "state", g.state, "state `DIR` (also $SEALPOST_STATE)")
	fs.StringVar(&g.witness, "witness-dir", g.witness, "keep the restore witness in `DIR`, outside the state directory (also\n$SEALPOST_WITNESS_DIR; none turns it off)")
	fs.BoolVar(&g.verbose, "v", g.verbose, "log what happens to stderr (warnings and errors are logged without it)")
	fs.Var(&g.logFormat, "log-format", "write logs as `text` (key=value lines) or json (one object a line, for journald or Loki)")
}

// nodeOptions are the options every command opens its node with.
func (g *globals) nodeOptions() node.Options {
	w := g.witness
	if w == "none" {
		w = ""
	}
	return node.Options{Dir: g.state, Logger: g.logger(), Version: version, WitnessDir: w}
}

func defaultWitness() string {
	if s := os.Getenv("SEALPOST_WITNESS_DIR"); s != "" {
		return s
	}
	return node.DefaultWitnessDir()
}

// logger logs warnings and errors (a detected restore, mail the agent could not move, a mail
// server that keeps failing) to stderr, in --log-format; -v adds everything else.
func (g *globals) logger() *slog.Logger {
	if g.verbose {
		return g.loggerAt(slog.LevelDebug)
	}
	return g.loggerAt(slog.LevelWarn)
}

// loggerAt logs records of level and above (-v: all), through the one handler of this run, so
// that lines from several loggers never interleave.
func (g *globals) loggerAt(level slog.Level) *slog.Logger {
	if g.verbose {
		level = min(level, slog.LevelDebug)
	}
	return slog.New(minLevel{g.logHandler(), level})
}

// logHandler is made once, when the flags are parsed and the first logger is asked for.
func (g *globals) logHandler() slog.Handler {
	g.logOnce.Do(func() { g.logTo = newLogHandler(g.stderr, g.logFormat) })
	return g.logTo
}

func defaultState() string {
	if s := os.Getenv("SEALPOST_STATE"); s != "" {
		return s
	}
	if s := os.Getenv("XDG_STATE_HOME"); s != "" {
		return filepath.Join(s, "sealpost")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "sealpost")
	}
	return ".sealpost"
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, g *globals, args []string) error
}

func commandList() []command {
	return []command{
		{"init", "create this node's identity and store its mailbox settings", runInit},
		{"id", "print this node's fingerprint", runID},
		{"peer", "add, list and remove peers (peer add, peer list, peer remove)", runPeer},
		{"agent", "serve the mailbox: run peers' commands, deliver answers", runAgent},
		{"run", "run a program on a peer", runRun},
		{"ping", "measure the round trip to a peer", runPing},
		{"sysinfo", "show a peer's system information", runSysinfo},
		{"results", "list the commands this node sent and their outcomes", runResults},
		{"status", "show the agent, the mail servers, waiting commands and the outbox", runStatus},
		{"relay", "start a local mail server for demos and labs", runRelay},
		{"demo", "show everything in-process, on the embedded relay, in seconds", runDemo},
		{"version", "print the version", func(_ context.Context, g *globals, _ []string) error {
			fmt.Fprintln(g.stdout, "sealpost", version)
			return nil
		}},
	}
}

func mainUsage(w io.Writer) {
	fmt.Fprint(w, `sealpost runs commands on hosts that only email can reach.

Usage: sealpost [--state DIR] [-v] [--log-format text|json] COMMAND [options] [arguments]

Commands:
`)
	for _, c := range commandList() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run "sealpost COMMAND --help" for a command's options and an example.
Try it all in seconds:  sealpost demo
`)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it parses, dispatches and maps errors to exit codes in one place.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{state: defaultState(), witness: defaultWitness(), logFormat: logText, stdin: stdin, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("sealpost", flag.ContinueOnError)
	fs.SetOutput(stderr)
	g.addFlags(fs)
	fs.Usage = func() { mainUsage(stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" || rest[0] == "-h" {
		if len(rest) > 1 {
			return run(ctx, []string{rest[1], "--help"}, stdin, stdout, stderr)
		}
		mainUsage(stdout)
		if len(rest) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commandList() {
		if c.name != rest[0] {
			continue
		}
		err := c.run(ctx, g, rest[1:])
		return exitCode(stderr, c.name, err)
	}
	fmt.Fprintf(stderr, "sealpost: unknown command %q\n\n", rest[0])
	mainUsage(stderr)
	return exitUsage
}

// exitCode is the one place that maps a command's error to its exit code (README.md, "Exit
// codes") and prints the error.
func exitCode(stderr io.Writer, name string, err error) int {
	var ue usageError
	var ce exitCodeError
	var unknown *node.FateUnknownError
	switch {
	case err == nil || errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		if !ue.printed {
			fmt.Fprintf(stderr, "sealpost %s: %s\nRun \"sealpost %s --help\" for usage.\n", name, ue.msg, name)
		}
		return exitUsage
	case errors.As(err, &ce):
		if ce.err != nil {
			fmt.Fprintf(stderr, "sealpost %s: %v\n", name, ce.err)
		}
		return ce.code
	case errors.As(err, &unknown):
		// Not exitSealpost: a script that retries on that would run the command twice.
		fmt.Fprintf(stderr, "sealpost %s: %v\nOnce the agent runs again, `sealpost results --id %s` shows whether it was recorded; `sealpost %s --id %s ...` with the same command sends it only if it was not.\n",
			name, err, unknown.ID, name, unknown.ID)
		return exitUnknown
	case name == "run" || name == "ping" || name == "sysinfo":
		fmt.Fprintf(stderr, "sealpost %s: %v\n", name, err)
		return exitSealpost
	default:
		fmt.Fprintf(stderr, "sealpost %s: %v\n", name, err)
		return exitError
	}
}

// newFlags makes a command's flag set with the shared options and a usage text with an example.
func newFlags(g *globals, name, args, about, example string) *flag.FlagSet {
	fs := flag.NewFlagSet("sealpost "+name, flag.ContinueOnError)
	fs.SetOutput(g.stderr)
	g.addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(g.stderr, "Usage: sealpost %s %s\n\n%s\n\nOptions:\n", name, args, about)
		fs.PrintDefaults()
		fmt.Fprintf(g.stderr, "\nExample:\n  %s\n", example)
	}
	return fs
}

// parse parses fs, letting options follow positional arguments (`peer add bob --address ...`).
// Everything after the first "--" is positional and never parsed, so `run bob -- ls -l` works.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			if len(pos) > 0 {
				// Most likely a remote program's option: `run bob ls -l` needs `run bob -- ls -l`.
				fmt.Fprintf(fs.Output(), "(put a remote program and its options after \"--\", as in: sealpost %s bob -- ls -l)\n", strings.TrimPrefix(fs.Name(), "sealpost "))
			}
			return nil, usageError{msg: err.Error(), printed: true}
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
