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
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"

	"github.com/sealpost/sealpost/node"
)

// version is the sealpost release when set with -ldflags "-X main.version=..."; otherwise the
// module version the go command stamped into the binary (buildVersion).
var version = buildVersion()

// Exit codes (README.md, "Exit codes"). `run --wait` passes the remote program's own status through.
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitPending   = 75  // run: the command is recorded but has no final answer yet (--timeout ran out, not mailed yet)
	exitUnknown   = 76  // run: the request went to the agent, which stopped answering; the command may be recorded
	exitTruncated = 77  // run --wait: the output was cut at the peer's cap; what was printed is not all of it
	exitTimedOut  = 124 // run --wait: the program timed out on the peer
	exitSealpost  = 125 // run: sealpost itself failed (usage, peer, mailbox)
	exitRefused   = 126 // run: the peer refused the command (denied, expired, clock, ...)
	exitNotFound  = 127 // run: the program could not be started on the peer
	// 128+N: a signal N (SIGINT: 130) stopped sealpost; for `run --wait` the command goes on.
	exitSignal = 128
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

// globals are the options commands share, given before or after the command's name.
type globals struct {
	state     string
	witness   string
	verbose   bool
	logFormat logFormat
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	// console is set when stderr is a terminal: it draws progress there and clears it before
	// anything else is written (stdout and stderr above then write through it).
	console *console

	logOnce sync.Once
	logTo   slog.Handler // every logger of this run writes through it (logHandler)
}

// uses says which global options matter to a command; the others are neither accepted after
// its name nor listed in its help.
type uses uint8

const (
	usesState   uses = 1 << iota // --state, --witness-dir: the command opens the node
	usesVerbose                  // -v, --log-format: the command logs
	usesAll     = usesState | usesVerbose
)

func (g *globals) addFlags(fs *flag.FlagSet, u uses) {
	if u&usesState != 0 {
		fs.StringVar(&g.state, "state", g.state, "state `DIR` (also $SEALPOST_STATE)")
		fs.StringVar(&g.witness, "witness-dir", g.witness, "keep the restore witness in `DIR`, outside the state directory (also\n$SEALPOST_WITNESS_DIR; none turns it off)")
	}
	if u&usesVerbose != 0 {
		fs.BoolVar(&g.verbose, "v", g.verbose, "log what happens to stderr (warnings and errors are logged without it)")
		fs.Var(&g.logFormat, "log-format", "write logs as `text` (key=value lines) or json (one object a line, for journald or Loki)")
	}
}

// isGlobal tells the global options apart in a command's help.
func isGlobal(name string) bool {
	return name == "state" || name == "witness-dir" || name == "v" || name == "log-format"
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
	uses    uses
	run     func(ctx context.Context, g *globals, args []string) error
}

func commandList() []command {
	return []command{
		{"init", "create this node's identity and store its mailbox settings", usesAll, runInit},
		{"id", "print this node's fingerprint", usesAll, runID},
		{"peer", "pair with peers, list them, change what they may run (add, list, allow, deny, remove)", usesAll, runPeer},
		{"agent", "serve the mailbox: run peers' commands, deliver answers", usesAll, runAgent},
		{"run", "run a program on a peer", usesAll, runRun},
		{"ping", "measure the round trip to a peer", usesAll, runPing},
		{"sysinfo", "show a peer's system information", usesAll, runSysinfo},
		{"pull", "copy a file from a peer (from a directory its operator lets this node read)", usesAll, runPull},
		{"push", "copy a file to a peer (into a directory its operator lets this node write)", usesAll, runPush},
		{"results", "list the commands this node sent, or show one with its output", usesAll, runResults},
		{"fleet", "show every peer's host at a glance: last heard, OS, load, memory, disks, STALE", usesAll, runFleet},
		{"dashboard", "serve the fleet view, results and outbox as web pages (read-only)", usesAll, runDashboard},
		{"schedule", "send commands by themselves, every interval or by cron (add, list, remove, run)", usesAll, runSchedule},
		{"check", "this node's own checks, run for its status reports (add, list, remove, run)", usesAll, runCheck},
		{"export", "write the packages waiting for a peer into a directory, to carry to it", usesAll, runExport},
		{"import", "handle the package files in a directory as mail: for nodes without a mailbox", usesAll, runImport},
		{"gateway", "forward sealed packages between this mailbox and a directory for an air-gapped node", usesAll, runGateway},
		{"status", "show the agent, the mail servers, waiting commands and the outbox", usesAll, runStatus},
		{"relay", "start a local mail server for demos and labs", usesVerbose, runRelay},
		{"demo", "show everything in-process, on the embedded relay, in seconds", 0, runDemo},
		{"version", "print the version, the commit it was built from and the Go version", 0, runVersion},
	}
}

// usesOf is what global options the command called name (its first word) takes.
func usesOf(name string) uses {
	name, _, _ = strings.Cut(name, " ")
	for _, c := range commandList() {
		if c.name == name {
			return c.uses
		}
	}
	return usesAll
}

func mainUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString(`sealpost runs commands on hosts that only email can reach.

Usage: sealpost [global options] COMMAND [options] [arguments]

Commands:
`)
	for _, c := range commandList() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString("\nGlobal options (before COMMAND, or after it where its help lists them):\n")
	fs := flag.NewFlagSet("sealpost", flag.ContinueOnError)
	(&globals{}).addFlags(fs, usesAll)
	printOptions(&b, fs, func(string) bool { return true })
	b.WriteString(`  --version
        print the version and exit
  -h, --help
        show this help

Run "sealpost help COMMAND" (or "sealpost COMMAND --help") for a command's options and an example.
Try it all in seconds:  sealpost demo
`)
	io.WriteString(w, b.String()) // one write: a reader that stops early (| head) sees whole lines
}

// printOptions lists the options of fs for which keep is true, sorted, the way the help shows
// them: --name VALUE (Go's flag package would print -name), one-letter ones as -v, and the
// default when it is not the zero value.
func printOptions(w io.Writer, fs *flag.FlagSet, keep func(name string) bool) {
	fs.VisitAll(func(f *flag.Flag) {
		if !keep(f.Name) || f.Name == "help" || f.Name == "h" {
			return
		}
		dashes := "--"
		if len(f.Name) == 1 {
			dashes = "-"
		}
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + strings.ToUpper(arg) // flag names a value by its type ("duration")
		}
		fmt.Fprintf(w, "  %s%s%s\n", dashes, f.Name, arg)
		usage = strings.ReplaceAll(usage, "\n", "\n        ")
		switch f.DefValue {
		case "", "0", "false", "0s":
		default:
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "        %s\n", usage)
	})
}

// buildVersion is the version the go command stamped into the binary: the module's version
// (a tag, or "(devel)" for a build in a checkout), else "devel".
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

// versionLine is what `sealpost version` prints: the version, the commit and its time when
// the binary was built in a git checkout (with "+dirty" for uncommitted changes), and the Go
// release and platform, so that a bug report says exactly what ran.
func versionLine() string {
	s := "sealpost " + version
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, when, dirty string
		for _, kv := range bi.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.time":
				when = kv.Value
			case "vcs.modified":
				if kv.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			s += " (commit " + rev + dirty
			if when != "" {
				s += ", " + when
			}
			s += ")"
		}
	}
	return s + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}

func runVersion(_ context.Context, g *globals, args []string) error {
	fs := newFlags(g, "version", "", "Print the version, the git commit and time it was built from (when known), and the Go\nrelease and platform.", "sealpost version")
	if _, err := parseNoArgs(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout, versionLine())
	return nil
}

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal ends the command's context; later ones are caught too (and do
		// nothing), as before, so that a command always gets to say what it left behind.
		s := <-sigs
		cancel(signalError{s})
	}()
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	signal.Stop(sigs)
	os.Exit(code)
}

// signalError is the cause of the command context's end when a signal ended it.
type signalError struct{ sig os.Signal }

func (e signalError) Error() string { return "interrupted by " + e.sig.String() }

// signalExit is the exit status for a command that a signal stopped: 128+N as shells report
// it; 130 (SIGINT) when ctx ended some other way.
func signalExit(ctx context.Context) int {
	var se signalError
	if errors.As(context.Cause(ctx), &se) {
		if s, ok := se.sig.(syscall.Signal); ok {
			return exitSignal + int(s)
		}
	}
	return exitSignal + int(syscall.SIGINT)
}

// run is main without the process: it parses, dispatches and maps errors to exit codes in one place.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{state: defaultState(), witness: defaultWitness(), logFormat: logText, stdin: stdin, stdout: stdout, stderr: stderr}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		g.console = &console{term: stderr}
		g.stdout, g.stderr = g.console.writer(stdout), g.console.writer(stderr)
	}
	fs := flag.NewFlagSet("sealpost", flag.ContinueOnError)
	fs.SetOutput(g.stderr)
	g.addFlags(fs, usesAll)
	var help, showVersion bool
	fs.BoolVar(&help, "help", false, "")
	fs.BoolVar(&help, "h", false, "")
	fs.BoolVar(&showVersion, "version", false, "")
	fs.Usage = func() { mainUsage(g.stderr) } // a usage error; asked-for help goes to stdout below
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	rest := fs.Args()
	switch {
	case showVersion:
		fmt.Fprintln(g.stdout, versionLine())
		return exitOK
	case help || len(rest) > 0 && rest[0] == "help" && len(rest) == 1:
		mainUsage(g.stdout)
		return exitOK
	case len(rest) == 0:
		mainUsage(g.stderr)
		return exitUsage
	case rest[0] == "help":
		// help COMMAND [SUBCOMMAND]: the same as COMMAND [SUBCOMMAND] --help.
		return run(ctx, append(append(args[:len(args)-len(rest):len(args)-len(rest)], rest[1:]...), "--help"), stdin, stdout, stderr)
	}
	for _, c := range commandList() {
		if c.name != rest[0] {
			continue
		}
		err := c.run(ctx, g, rest[1:])
		return exitCode(g.stderr, c.name, err)
	}
	fmt.Fprintf(g.stderr, "sealpost: unknown command %q\nRun \"sealpost --help\" for the list of commands.\n", rest[0])
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
		fmt.Fprintf(stderr, "sealpost %s: %v\nOnce the agent runs again, `sealpost results %s` shows whether it was recorded; `sealpost %s --id %s ...` with the same command sends it only if it was not.\n",
			name, err, unknown.ID, name, unknown.ID)
		return exitUnknown
	case name == "run" || name == "ping" || name == "sysinfo" || name == "pull" || name == "push":
		fmt.Fprintf(stderr, "sealpost %s: %v\n", name, err)
		return exitSealpost
	default:
		fmt.Fprintf(stderr, "sealpost %s: %v\n", name, err)
		return exitError
	}
}

// newFlags makes a command's flag set with the global options it uses (usesOf), -h/--help,
// and a usage text with an example: on stdout when asked for (exit 0), on stderr after a usage
// error (exit 2).
func newFlags(g *globals, name, args, about, example string) *flag.FlagSet {
	fs := flag.NewFlagSet("sealpost "+name, flag.ContinueOnError)
	fs.SetOutput(g.stderr)
	u := usesOf(name)
	g.addFlags(fs, u)
	help := new(bool)
	fs.BoolVar(help, "help", false, "show this help")
	fs.BoolVar(help, "h", false, "show this help")
	fs.Usage = func() {
		w := g.stderr
		if *help {
			w = g.stdout
		}
		var b strings.Builder
		fmt.Fprintf(&b, "Usage: sealpost %s %s\n\n%s\n", name, args, about)
		own := func(n string) bool { return !isGlobal(n) }
		hasOwn := false
		fs.VisitAll(func(f *flag.Flag) { hasOwn = hasOwn || own(f.Name) && f.Name != "help" && f.Name != "h" })
		if hasOwn {
			b.WriteString("\nOptions:\n")
			printOptions(&b, fs, own)
		}
		if u != 0 {
			b.WriteString("\nGlobal options:\n")
			printOptions(&b, fs, isGlobal)
		}
		fmt.Fprintf(&b, "\nExample:\n  %s\n", example)
		io.WriteString(w, b.String()) // one write: a reader that stops early (| head) sees whole lines
	}
	return fs
}

// helpAsked reports whether -h or --help was given to fs.
func helpAsked(fs *flag.FlagSet) bool {
	f := fs.Lookup("help")
	return f != nil && f.Value.String() == "true"
}

// parse parses fs, letting options follow positional arguments (`peer add bob --address ...`).
// Everything after the first "--" is positional and never parsed, so `run bob -- ls -l` works.
// With -h or --help it prints the usage on stdout and returns flag.ErrHelp.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, tail, err := parseSplit(fs, args)
	return append(pos, tail...), err
}

// parseNoArgs is parse for a command that takes no arguments: any is a usage error.
func parseNoArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	pos, err := parse(fs, args)
	if err == nil && len(pos) > 0 {
		return nil, usagef("unexpected argument %q: %s takes none", pos[0], fs.Name())
	}
	return pos, err
}

// parseSplit is parse that keeps the words before "--" (pos) apart from those after it (tail,
// nil when there is no "--").
func parseSplit(fs *flag.FlagSet, args []string) (pos, tail []string, err error) {
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], append([]string{}, args[i+1:]...)
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if len(pos) > 0 {
				// Most likely a remote program's option: `run bob ls -l` needs `run bob -- ls -l`.
				fmt.Fprintf(fs.Output(), "(put a remote program and its options after \"--\", as in: sealpost %s bob -- ls -l)\n", strings.TrimPrefix(fs.Name(), "sealpost "))
			}
			return nil, nil, usageError{msg: err.Error(), printed: true}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if helpAsked(fs) {
		fs.Usage()
		return nil, nil, flag.ErrHelp
	}
	return pos, tail, nil
}
