package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

type runOptions struct {
	wait     bool
	timeout  time.Duration
	ttl      time.Duration
	execTime time.Duration
	json     bool
	id       commandIDFlag
	output   string
}

// addFlags adds the options of run, ping and sysinfo. builtin: ping and sysinfo always wait
// (their answer is the point), so they have no --wait.
func (o *runOptions) addFlags(g *globals, fs *flag.FlagSet, builtin bool) {
	o.wait = builtin
	waits := "how long it waits for the answer; the command stays pending after it"
	if !builtin {
		fs.BoolVar(&o.wait, "wait", false, "wait for the answer and exit with the remote exit status")
		fs.StringVar(&o.output, "output", "", "with --wait: write the program's stdout to `FILE` as it arrives (renamed into\nplace when whole), instead of to stdout")
		waits = "how long --wait waits; the command stays pending after it"
	}
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, waits)
	fs.DurationVar(&o.timeout, "deadline", 2*time.Minute, "the same as --timeout (give one of them): for a TARGET of several peers, the\npeers that have not answered by then are listed as not answered")
	fs.DurationVar(&o.ttl, "ttl", 24*time.Hour, "how long the command may wait for the peer to run it (at most 720h)")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON; for a TARGET of several peers one object per peer\nand line (JSON Lines), each with \"peer\"")
	fs.Var(&o.id, "id", "the command's `ID` (32 hex digits; default: a new one). Run again with the ID\nprinted by a run whose fate is unknown (exit 76): if that one was recorded, this\nreports it instead of sending it twice")
}

// check refuses what the flags cannot mean together.
func (o *runOptions) check(fs *flag.FlagSet) error {
	given := 0
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "timeout" || f.Name == "deadline" {
			given++
		}
	})
	if given > 1 {
		return usagef("--deadline is another name for --timeout: give one of them")
	}
	if o.output != "" && !o.wait {
		return usagef("--output needs --wait")
	}
	return nil
}

// targetHelp explains TARGET in the help of run, ping and sysinfo.
const targetHelp = `TARGET is a peer's name, @TAG (every peer tagged TAG; see sealpost peer tag), @all, or a
comma-separated list of these (bob,@web). A target of several peers gets the command in one pass;
waiting, a terminal shows a live table, and at the end the outputs are shown grouped by identical
output, then the peers that did not answer by the deadline. Exit status for several peers: 0 when
every peer answered with exit 0; 1 when some peer answered otherwise (non-zero exit, refused, ...);
75 when the others succeeded but some did not answer by the deadline (their commands go on);
130 on Ctrl-C (the commands go on).`

// commandIDFlag is --id: a command id in the 32-hex-digit form `results` prints.
type commandIDFlag node.CommandID

func (f *commandIDFlag) String() string {
	if node.CommandID(*f).IsZero() {
		return ""
	}
	return node.CommandID(*f).String()
}

func (f *commandIDFlag) Set(s string) error {
	id, err := node.ParseCommandID(s)
	if err != nil || id.IsZero() {
		return errors.New("want the 32 hex digits of a command id, as `sealpost results --json` shows it")
	}
	*f = commandIDFlag(id)
	return nil
}

func runRun(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "run", "TARGET [--wait] [--timeout 2m] [--json] -- PROGRAM [ARG ...]",
		"Run a program on a peer, or on each peer of a TARGET. Arguments are passed as they are,\nnever through a shell; the peer runs only programs its operator allowed for this node (sealpost\npeer add NAME --allow PROGRAM). With --wait, the remote stdout and stderr are printed and, for\none peer, the exit status is the remote one.\n\n"+targetHelp,
		"sealpost run bob --wait --timeout 2m -- df -h /\n  sealpost run @web --wait --deadline 5m -- systemctl is-active nginx")
	var o runOptions
	o.addFlags(g, fs, false)
	fs.DurationVar(&o.execTime, "exec-timeout", 0, "how long the program may run on the peer (default: the peer's, 1m)")
	pos, tail, err := parseSplit(fs, args)
	if err != nil {
		return err
	}
	argv, err := runArgv(pos, tail)
	if err != nil {
		return err
	}
	if err := o.check(fs); err != nil {
		return err
	}
	req := commands.Request{Name: "exec", Argv: argv, Timeout: o.execTime}
	if isFanout(pos[0]) {
		return fanOut(ctx, g, pos[0], req, o, groupedOutput)
	}
	return submit(ctx, g, pos[0], req, o, printRun)
}

// runArgv checks run's words: PEER -- PROGRAM [ARG ...], or PEER PROGRAM [ARG ...] when the
// program has no options. With "--", exactly one word comes before it: in `run bob alice --
// uptime` the extra word is a mistake to report, not a program to run on bob.
func runArgv(pos, tail []string) ([]string, error) {
	switch {
	case len(pos) == 0:
		return nil, usagef("run needs a PEER and a PROGRAM: sealpost run PEER -- PROGRAM [ARG ...]")
	case tail == nil && len(pos) < 2, tail != nil && len(tail) == 0:
		return nil, usagef("run needs a PROGRAM after the PEER: sealpost run %s -- PROGRAM [ARG ...]", pos[0])
	case tail != nil && len(pos) > 1:
		return nil, usagef("%q before \"--\": run takes one PEER, then \"--\" and the program with its arguments", strings.Join(pos[1:], " "))
	case tail != nil:
		return tail, nil
	}
	return pos[1:], nil
}

func runPing(ctx context.Context, g *globals, args []string) error {
	return runBuiltin(ctx, g, args, "ping", "Send the built-in ping and print the round-trip time through the mail servers.", pingLines,
		func(g *globals, peer string, r node.Result) {
			fmt.Fprintf(g.stdout, "answer from %s: time=%s\n", peer, r.Finished.Sub(r.Sent).Round(time.Millisecond))
		})
}

func runSysinfo(ctx context.Context, g *globals, args []string) error {
	return runBuiltin(ctx, g, args, "sysinfo", "Show the peer's host name, OS, kernel, uptime, load, memory, disks and sealpost version.", groupedOutput, printRun)
}

// runBuiltin is `sealpost ping|sysinfo TARGET`: a built-in command, waited for.
func runBuiltin(ctx context.Context, g *globals, args []string, name, about string, style fanoutStyle, print func(*globals, string, node.Result)) error {
	fs := newFlags(g, name, "TARGET [--timeout 2m] [--json]", about+"\n\n"+targetHelp, "sealpost "+name+" bob\n  sealpost "+name+" @all --json")
	var o runOptions
	o.addFlags(g, fs, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s needs exactly one TARGET (a PEER, @TAG, @all or a comma list)", name)
	}
	if err := o.check(fs); err != nil {
		return err
	}
	if isFanout(pos[0]) {
		return fanOut(ctx, g, pos[0], commands.Request{Name: name}, o, style)
	}
	return submit(ctx, g, pos[0], commands.Request{Name: name}, o, print)
}

// submit runs one command on peer. It makes the command's id itself, so that when the agent
// stops answering in the middle (node.FateUnknownError) the user learns which id to look up
// and can run again with it without running twice. A command that is recorded but has no final
// answer (no answer within --timeout, not mailed yet, the agent stopped) exits exitPending.
func submit(ctx context.Context, g *globals, peer string, req commands.Request, o runOptions, print func(*globals, string, node.Result)) error {
	spec := node.RunSpec{ID: node.CommandID(o.id), Peer: peer, Request: req, TTL: o.ttl}
	if spec.ID.IsZero() {
		if _, err := rand.Read(spec.ID[:]); err != nil {
			return err
		}
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	wctx := ctx
	if o.wait {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	stdout := g.stdout
	finishOutput := func(bool) error { return nil }
	if o.output != "" {
		f, finish, err := openOutput(o.output)
		if err != nil {
			return err
		}
		stdout, finishOutput = f, finish
	}
	defer func() { finishOutput(false) }() // not whole: the temporary file goes
	// A large output streams: it is copied out as it arrives, while the answer is awaited.
	copier := newOutputCopier(stdout, g.stderr)
	followErr := make(chan error, 1)
	fctx, stopFollow := context.WithCancel(ctx)
	if o.wait && !o.json && (req.Name == commands.CmdExec || req.Name == commands.CmdPull) {
		go func() { followErr <- copier.follow(fctx, api, spec.ID) }()
	} else {
		followErr <- nil
	}
	stopProgress := progress(g, peer, o.wait)
	if req.Name == commands.CmdPull {
		stopProgress = transferProgress(g, api, spec.ID, "receiving from "+peer)
	}
	r, err := api.Run(wctx, spec, o.wait, nil)
	stopProgress()
	stopFollow()
	if ferr := <-followErr; ferr != nil && err == nil {
		return ferr
	}
	if err != nil && ctx.Err() != nil {
		if o.json && r.Status != "" {
			// On record: --json shows where it stands, as it does for any recorded command.
			if err := writeJSON(g.stdout, jsonResult(r)); err != nil {
				return err
			}
		}
		return interrupted(ctx, peer, spec.ID, r, err)
	}
	var unknown *node.FateUnknownError
	pending := err // why a recorded command has no final result
	if err != nil && (errors.As(err, &unknown) || r.Status == "" || node.Final(r.Status)) {
		return err
	}
	if o.json {
		if err := writeJSON(g.stdout, jsonResult(r)); err != nil {
			return err
		}
	}
	if !node.Final(r.Status) {
		id := hexID(r.CommandID)
		if !o.wait && !o.json {
			fmt.Fprintf(g.stdout, "%s %s\n", id, r.Status)
		}
		if pending == nil && !o.wait {
			return nil
		}
		why := fmt.Sprintf("no answer from %s within %s", peer, o.timeout)
		if pending != nil && !errors.Is(pending, context.DeadlineExceeded) {
			why = pending.Error()
		}
		return exitCodeError{exitPending, fmt.Errorf("%s; command %s is recorded and stays %s (see `sealpost results %s`)", why, id, r.Status, id)}
	}
	if !o.wait {
		if !o.json {
			fmt.Fprintf(g.stdout, "%s %s\n", hexID(r.CommandID), r.Status)
		}
		return nil
	}
	if !o.json || o.output != "" {
		// With --json the output is in the JSON, unless it goes to --output.
		switch {
		case r.Streamed:
			if err := copier.copy(r); err != nil {
				return err
			}
		case o.output != "":
			if _, err := stdout.Write(r.Stdout); err != nil {
				return err
			}
			if !o.json {
				g.stderr.Write(r.Stderr)
			}
		default:
			print(g, peer, r)
		}
		if r.Status == node.StatusDone {
			if err := finishOutput(true); err != nil {
				return err
			}
			finishOutput = func(bool) error { return nil }
		}
	}
	return resultExit(peer, r)
}

func printRun(g *globals, _ string, r node.Result) {
	g.stdout.Write(r.Stdout)
	g.stderr.Write(r.Stderr)
}

// resultExit maps a final result to the documented exit codes.
func resultExit(peer string, r node.Result) error {
	switch r.Status {
	case node.StatusDone:
		if r.StdoutTruncated || r.StderrTruncated {
			// What was printed is not all the program wrote: that must not pass for success.
			return exitCodeError{exitTruncated, fmt.Errorf("%s: the output was cut at the peer's cap (sealpost peer add --max-output on %s); the program's exit code was %d", peer, peer, r.ExitCode)}
		}
		if code, ok := r.ShellExitCode(); ok {
			// Exited by itself (its own status), or killed by a signal (128+N, as shells say).
			var note error
			switch {
			case r.Outcome == commands.OutcomeSignaled:
				note = fmt.Errorf("%s: the program was killed by signal %d", peer, r.Signal)
			case r.Error != "":
				note = fmt.Errorf("note: %s", r.Error)
			}
			return exitCodeError{code, note}
		}
		switch r.Outcome {
		case commands.OutcomeTimedOut:
			return exitCodeError{exitTimedOut, fmt.Errorf("%s: %s", peer, r.Error)}
		case commands.OutcomeNotFound, commands.OutcomeNotExecutable, commands.OutcomeStartFailed:
			return exitCodeError{exitNotFound, fmt.Errorf("%s could not start the program: %s", peer, r.Error)}
		}
		// Cancelled (the peer's agent stopped), denied, or an outcome this build does not know.
		return exitCodeError{exitSealpost, fmt.Errorf("%s: the program ended without an exit status (%s): %s", peer, r.Outcome, r.Error)}
	case node.StatusFailed, node.StatusLocalExpired:
		return exitCodeError{exitSealpost, fmt.Errorf("%s: %s", r.Status, r.Error)}
	}
	return exitCodeError{exitRefused, fmt.Errorf("%s refused the command (%s): %s", peer, r.Status, r.Error)}
}

// interrupted is submit's answer when a signal (Ctrl-C) ended it: stopping sealpost does not
// stop the command, so it says where the command stands and how to find its result, and exits
// 128+N like a shell.
func interrupted(ctx context.Context, peer string, id node.CommandID, r node.Result, err error) error {
	var unknown *node.FateUnknownError
	var msg string
	switch {
	case errors.As(err, &unknown) || r.Status == "":
		msg = fmt.Sprintf("interrupted before sealpost learned whether the command was recorded; if it was, it continues on %s: see `sealpost results %s`", peer, id)
	case r.Status == node.StatusQueued:
		msg = fmt.Sprintf("interrupted; the command stays queued for %s and goes out when this node next reaches it: see `sealpost results %s`", peer, id)
	default:
		msg = fmt.Sprintf("interrupted; the command continues on %s; see `sealpost results %s`", peer, id)
	}
	return exitCodeError{signalExit(ctx), errors.New(msg)}
}

// progressEvery is how often the progress line is redrawn.
var progressEvery = time.Second

// progress draws "waiting for PEER's answer…" on the terminal while run --wait waits, through
// g.console (only there when stderr is a terminal), and returns the function that stops it and
// takes the line away before the caller writes anything.
func progress(g *globals, peer string, wait bool) func() {
	if !wait {
		return func() {}
	}
	return redraw(g, func(elapsed time.Duration) string {
		return fmt.Sprintf("waiting for %s's answer by mail… %s (Ctrl-C stops waiting, not the command)", peer, elapsed.Round(time.Second))
	})
}

// redraw shows line's text on the terminal every progressEvery (only when stderr is one) until
// the returned function is called, which takes the line away before the caller writes anything.
func redraw(g *globals, line func(elapsed time.Duration) string) func() {
	if g.console == nil {
		return func() {}
	}
	start := time.Now()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				g.console.show(line(time.Since(start)))
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		g.console.clear()
	}
}

type resultJSON struct {
	ID       string   `json:"id"`
	Peer     string   `json:"peer"`
	Command  []string `json:"command"`
	Status   string   `json:"status"`
	Outcome  string   `json:"outcome,omitempty"` // for status done: exited, signaled, timed-out, not-found, ...
	ExitCode int      `json:"exit_code"`
	Signal   int      `json:"signal,omitempty"`
	Error    string   `json:"error,omitempty"`
	Stdout   string   `json:"stdout"`
	Stderr   string   `json:"stderr"`
	// A streamed output (larger than 64 KiB) is not inlined: it is in these files of this
	// node's state, of these sizes; stdout and stderr are then empty.
	StdoutFile  string    `json:"stdout_file,omitempty"`
	StderrFile  string    `json:"stderr_file,omitempty"`
	StdoutSize  int64     `json:"stdout_size,omitempty"`
	StderrSize  int64     `json:"stderr_size,omitempty"`
	Truncated   bool      `json:"truncated,omitempty"`
	Sent        time.Time `json:"sent"`
	Finished    time.Time `json:"finished,omitzero"`
	RoundTripMS int64     `json:"round_trip_ms,omitempty"`
}

func jsonResult(r node.Result) resultJSON {
	j := resultJSON{ID: hexID(r.CommandID), Peer: r.Peer, Command: r.Command, Status: r.Status, ExitCode: r.ExitCode,
		Signal: r.Signal, Error: r.Error, Stdout: string(r.Stdout), Stderr: string(r.Stderr), Sent: r.Sent, Finished: r.Finished}
	if r.Outcome != commands.OutcomeUnknown {
		j.Outcome = r.Outcome.String()
	}
	if r.Streamed && node.Final(r.Status) {
		j.StdoutFile, j.StderrFile, j.StdoutSize, j.StderrSize = r.StdoutPath, r.StderrPath, r.StdoutSize, r.StderrSize
	}
	j.Truncated = r.StdoutTruncated || r.StderrTruncated
	if !r.Finished.IsZero() {
		j.RoundTripMS = r.Finished.Sub(r.Sent).Milliseconds()
	}
	if j.Command == nil {
		j.Command = []string{}
	}
	return j
}

func hexID(id [16]byte) string { return fmt.Sprintf("%x", id[:]) }

func runResults(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "results", "[ID] [--json] [--limit N] [--id PREFIX] [--schedule NAME]",
		"Without ID, list the commands this node sent, newest last. With ID (the command's id, or\nany unique start of it, as the list shows it), show that command: the program, its status\nand exit code, when it was sent and answered, and its output.",
		"sealpost results 3f2a9c1b")
	asJSON := fs.Bool("json", false, "print JSON")
	limit := fs.Int("limit", 50, "list at most `N` (0: all)")
	idPrefix := fs.String("id", "", "list only the command with this `ID`, or the ones whose ID starts with it\n(exit 1 when none: the command was never recorded)")
	schedule := fs.String("schedule", "", "list the runs of the schedule called `NAME`, each with its peers' results")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *schedule != "" {
		if len(pos) > 0 || *idPrefix != "" {
			return usagef("--schedule lists a schedule's runs: give no ID or --id with it")
		}
		return scheduleResults(ctx, g, *schedule, *asJSON, *limit)
	}
	if len(pos) > 1 {
		return usagef("results takes at most one ID, not %q", strings.Join(pos, " "))
	}
	if len(pos) == 1 && !isHex(pos[0]) {
		return usagef("%q is not a command ID: give the hex digits `sealpost results` lists (a unique start is enough)", pos[0])
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	// The list comes one result at a time and without outputs (ResultSummaries), and only the
	// results shown are kept: memory stays bounded however many commands printed however much.
	// An output is read, one result at a time, only where it is printed (ID, --json).
	var (
		rs   []node.Result
		keep = *limit // 0: all
		want = strings.ToLower(*idPrefix)
	)
	if len(pos) == 1 {
		want, keep = strings.ToLower(pos[0]), 0
	}
	err = api.ResultSummaries(ctx, func(r node.Result) error {
		if want != "" && !strings.HasPrefix(hexID(r.CommandID), want) {
			return nil
		}
		rs = append(rs, r)
		if keep > 0 && len(rs) >= 2*keep {
			rs = append(rs[:0], rs[len(rs)-keep:]...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		r, err := findResult(rs, pos[0])
		if err != nil {
			return err
		}
		if r, err = withOutput(ctx, api, r); err != nil {
			return err
		}
		if *asJSON {
			return writeJSON(g.stdout, jsonResult(r))
		}
		printResult(g, r)
		return nil
	}
	idWidth := 12
	if *idPrefix != "" {
		if len(rs) == 0 {
			return fmt.Errorf("no command %s in this node's history: it was never recorded, so running it again runs it once", *idPrefix)
		}
		idWidth = 32
	}
	if *limit > 0 && len(rs) > *limit {
		rs = rs[len(rs)-*limit:]
	}
	if *asJSON {
		return writeResultsJSON(ctx, g.stdout, api, rs)
	}
	if len(rs) == 0 {
		fmt.Fprintln(g.stdout, "No commands sent yet.")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPEER\tCOMMAND\tSTATUS\tEXIT\tSENT\tTOOK")
	for _, r := range rs {
		took, exit := "-", "-"
		if !r.Finished.IsZero() {
			took = r.Finished.Sub(r.Sent).Round(time.Millisecond).String()
		}
		if r.Status == node.StatusDone {
			exit = fmt.Sprint(r.ExitCode)
		}
		cmd := strings.Join(r.Command, " ")
		if len(cmd) > 40 {
			cmd = cmd[:37] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", hexID(r.CommandID)[:idWidth], r.Peer, cmd, r.Status, exit, r.Sent.Local().Format("2006-01-02 15:04:05"), took)
	}
	return tw.Flush()
}

// withOutput returns r (a summary, without output) with its output, read alone.
func withOutput(ctx context.Context, api node.API, r node.Result) (node.Result, error) {
	full, err := api.ResultsOf(ctx, []node.CommandID{r.CommandID})
	if err != nil {
		return r, err
	}
	if len(full) != 1 || full[0].Status == node.StatusMissing {
		return r, fmt.Errorf("%w %s in this node's history: it was pruned while being listed", errNoCommand, hexID(r.CommandID))
	}
	return full[0], nil
}

// writeResultsJSON prints rs, each with its output, as the JSON array writeJSON would make of
// them, byte for byte, but reading and writing one result's output at a time.
func writeResultsJSON(ctx context.Context, w io.Writer, api node.API, rs []node.Result) error {
	if len(rs) == 0 {
		return writeJSON(w, []resultJSON{})
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("[\n")
	for i, r := range rs {
		r, err := withOutput(ctx, api, r)
		if err != nil {
			return err
		}
		b, err := json.MarshalIndent(jsonResult(r), "  ", "  ")
		if err != nil {
			return err
		}
		bw.WriteString("  ")
		bw.Write(b)
		if i < len(rs)-1 {
			bw.WriteString(",")
		}
		bw.WriteString("\n")
		if err := bw.Flush(); err != nil {
			return err
		}
	}
	bw.WriteString("]\n")
	return bw.Flush()
}

func isHex(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(c rune) bool { return !strings.ContainsRune("0123456789abcdefABCDEF", c) })
}

// errNoCommand: no command in the history has the id asked for.
var errNoCommand = errors.New("no such command")

// ambiguousIDError: more than one command's id starts with Prefix.
type ambiguousIDError struct {
	Prefix     string
	Candidates []node.Result
}

func (e *ambiguousIDError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d commands have an ID that starts with %s; give more of it:", len(e.Candidates), e.Prefix)
	for _, r := range e.Candidates {
		fmt.Fprintf(&b, "\n  %s  %s  %s  %s", hexID(r.CommandID), r.Peer, r.Sent.Local().Format("2006-01-02 15:04:05"), strings.Join(r.Command, " "))
	}
	return b.String()
}

// findResult finds the one command whose id is prefix or starts with it (case does not
// matter): an error wrapping errNoCommand when none does, an *ambiguousIDError naming them
// when several do.
func findResult(rs []node.Result, prefix string) (node.Result, error) {
	want := strings.ToLower(prefix)
	var found []node.Result
	for _, r := range rs {
		switch id := hexID(r.CommandID); {
		case id == want:
			return r, nil
		case strings.HasPrefix(id, want):
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return node.Result{}, fmt.Errorf("%w %s in this node's history: it was never recorded here (see `sealpost results` for the list)", errNoCommand, prefix)
	case 1:
		return found[0], nil
	}
	return node.Result{}, &ambiguousIDError{Prefix: prefix, Candidates: found}
}

// printResult shows one command for `sealpost results ID`: what ran where, how it ended, its
// timings, then its output as the program wrote it.
func printResult(g *globals, r node.Result) {
	var b strings.Builder
	fmt.Fprintf(&b, "command    %s\n", hexID(r.CommandID))
	fmt.Fprintf(&b, "peer       %s\n", r.Peer)
	fmt.Fprintf(&b, "program    %s\n", strings.Join(r.Command, " "))
	status := r.Status
	if r.Status == node.StatusDone {
		status = fmt.Sprintf("%s, exit code %d", r.Status, r.ExitCode)
	}
	fmt.Fprintf(&b, "status     %s\n", status)
	if r.Error != "" {
		fmt.Fprintf(&b, "error      %s\n", r.Error)
	}
	fmt.Fprintf(&b, "sent       %s\n", r.Sent.Local().Format("2006-01-02 15:04:05 MST"))
	if r.Finished.IsZero() {
		fmt.Fprintf(&b, "finished   - (no answer yet)\n")
	} else {
		fmt.Fprintf(&b, "finished   %s\n", r.Finished.Local().Format("2006-01-02 15:04:05 MST"))
		fmt.Fprintf(&b, "round trip %s\n", r.Finished.Sub(r.Sent).Round(time.Millisecond))
	}
	if r.Streamed && node.Final(r.Status) {
		// A streamed output is in spool files: copied out, never read whole into memory.
		io.WriteString(g.stdout, b.String())
		for _, out := range []struct {
			name string
			path string
			size int64
		}{{"stdout", r.StdoutPath, r.StdoutSize}, {"stderr", r.StderrPath, r.StderrSize}} {
			if out.size == 0 {
				fmt.Fprintf(g.stdout, "%-10s (empty)\n", out.name)
				continue
			}
			fmt.Fprintf(g.stdout, "%s (%d bytes):\n", out.name, out.size)
			if f, err := os.Open(out.path); err == nil {
				io.Copy(g.stdout, io.LimitReader(f, out.size))
				f.Close()
			} else {
				fmt.Fprintf(g.stdout, "(not readable: %v)", err)
			}
			fmt.Fprintln(g.stdout)
		}
		return
	}
	for _, out := range []struct {
		name string
		data []byte
	}{{"stdout", r.Stdout}, {"stderr", r.Stderr}} {
		if len(out.data) == 0 {
			fmt.Fprintf(&b, "%-10s (empty)\n", out.name)
			continue
		}
		fmt.Fprintf(&b, "%s:\n%s", out.name, out.data)
		if out.data[len(out.data)-1] != '\n' {
			b.WriteString("\n")
		}
	}
	io.WriteString(g.stdout, b.String())
}
