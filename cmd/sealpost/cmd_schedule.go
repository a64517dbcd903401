package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

// scheduleUsage names every schedule subcommand, for `schedule`, `schedule --help` and `help schedule`.
const scheduleUsage = `Usage: sealpost schedule SUBCOMMAND [options] [arguments]

Commands this node's agent sends by itself, every interval or at the times of a cron expression,
to a target (a peer, @TAG, @all, or a list of them). Each run's outcome is kept: see
` + "`sealpost results --schedule NAME`" + `. A run fails when a peer's command does not exit 0 or a peer
does not answer by the next run; ` + "`sealpost status`" + ` names schedules whose last run failed.
Runs missed while the agent was stopped are made up by one run when it starts.

Subcommands:
  add NAME (--every 1h | --cron "0 3 * * *") [--jitter 5m] [--on-failure CMD] TARGET -- PROGRAM [ARG ...]
                            add a schedule (--ping or --sysinfo instead of a PROGRAM)
  list [--json]             list schedules: target, when, next run, last run and its outcome
  remove NAME               remove a schedule and its history
  run NAME                  fire a schedule now (its next runs stay as they were)

Run "sealpost schedule SUBCOMMAND --help" for a subcommand's options.

Example:
  sealpost schedule add backup-check --cron "0 3 * * *" --jitter 10m --on-failure 'mail -s backup root' @web -- /usr/local/bin/backup-status
`

func runSchedule(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		io.WriteString(g.stderr, scheduleUsage)
		return usageError{msg: "schedule needs a subcommand", printed: true}
	}
	switch args[0] {
	case "--help", "-h", "-help", "help":
		io.WriteString(g.stdout, scheduleUsage)
		return nil
	case "add":
		return runScheduleAdd(ctx, g, args[1:])
	case "list", "ls":
		return runScheduleList(ctx, g, args[1:])
	case "remove", "rm":
		return runScheduleRemove(ctx, g, args[1:])
	case "run":
		return runScheduleRun(ctx, g, args[1:])
	}
	return usagef("unknown schedule subcommand %q (want add, list, remove or run)", args[0])
}

func runScheduleAdd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "schedule add", "NAME (--every 1h | --cron EXPR) [--jitter 5m] [--on-failure CMD] TARGET -- PROGRAM [ARG ...]",
		"Add a schedule: this node's agent sends the command to the target at every slot. The\nprogram is run as on `sealpost run`: as given, never through a shell, if the peer allows it.\n--on-failure runs CMD here (with /bin/sh -c, for at most a minute) when a run fails, with\nthe run as JSON on its stdin: the schedule, when it fired, each peer's status and exit code,\nand the peers that did not answer.",
		`sealpost schedule add disk-check --every 1h --jitter 5m --on-failure 'logger -t sealpost' @web -- df -h /`)
	var spec node.ScheduleSpec
	fs.DurationVar(&spec.Every, "every", 0, "run every `DURATION` (at least 1s; the first run one interval from now)")
	fs.StringVar(&spec.Cron, "cron", "", "run at the times of a five-field cron `EXPR` (minute hour day month weekday), in the\nagent's local time")
	fs.DurationVar(&spec.Jitter, "jitter", 0, "delay each run by a random part of `DURATION` (below the interval)")
	fs.StringVar(&spec.OnFailure, "on-failure", "", "run `CMD` (through /bin/sh) when a run fails, with the run as JSON on stdin")
	execTime := fs.Duration("exec-timeout", 0, "how long the program may run on the peer (default: the peer's, 1m)")
	ping := fs.Bool("ping", false, "send the built-in ping instead of a program")
	sysinfo := fs.Bool("sysinfo", false, "send the built-in sysinfo instead of a program")
	pos, tail, err := parseSplit(fs, args)
	if err != nil {
		return err
	}
	builtin := ""
	switch {
	case *ping && *sysinfo:
		return usagef("give at most one of --ping and --sysinfo")
	case *ping:
		builtin = commands.CmdPing
	case *sysinfo:
		builtin = commands.CmdSysinfo
	}
	switch {
	case len(pos) < 2:
		return usagef("schedule add needs a NAME and a TARGET: sealpost schedule add NAME --every 1h TARGET -- PROGRAM [ARG ...]")
	case len(pos) > 2:
		return usagef("%q before \"--\": schedule add takes a NAME and one TARGET (a list is written a,b,@tag), then \"--\" and the program", strings.Join(pos[2:], " "))
	case builtin == "" && len(tail) == 0:
		return usagef("schedule add needs a PROGRAM after \"--\" (or --ping or --sysinfo)")
	case builtin != "" && len(tail) > 0:
		return usagef("--%s takes no PROGRAM", builtin)
	}
	spec.Name, spec.Target = pos[0], pos[1]
	spec.Request = commands.Request{Name: builtin}
	if builtin == "" {
		spec.Request = commands.Request{Name: commands.CmdExec, Argv: tail, Timeout: *execTime}
	}
	// The form is checked here, so that a mistake is a usage error (exit 2) even when the
	// request would go to the agent.
	var se *node.ScheduleError
	if err := node.CheckScheduleSpec(spec, time.Now()); errors.As(err, &se) {
		return usagef("%v", se)
	} else if err != nil {
		return err
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	info, err := api.AddSchedule(ctx, spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "schedule %s added: %s, to %s; first run %s\n", info.Name, scheduleWhen(info.ScheduleSpec), info.Target, info.Next.Local().Format("2006-01-02 15:04:05"))
	return nil
}

// scheduleWhen says when a schedule runs: "every 1h", "cron 0 3 * * *", with its jitter.
func scheduleWhen(s node.ScheduleSpec) string {
	w := "every " + s.Every.String()
	if s.Cron != "" {
		w = "cron " + s.Cron
	}
	if s.Jitter > 0 {
		w += " (+ up to " + s.Jitter.String() + ")"
	}
	return w
}

// runOutcome says how a run went: "ok", "FAILED", "waiting", or "error".
func runOutcome(r *node.ScheduleRun) string {
	switch {
	case r == nil:
		return "-"
	case !r.Done:
		return "waiting"
	case r.Failed:
		return "FAILED"
	}
	return "ok"
}

type scheduleJSON struct {
	Name      string            `json:"name"`
	Target    string            `json:"target"`
	Command   []string          `json:"command"`
	Every     string            `json:"every,omitempty"`
	Cron      string            `json:"cron,omitempty"`
	Jitter    string            `json:"jitter,omitempty"`
	OnFailure string            `json:"on_failure,omitempty"`
	Created   time.Time         `json:"created"`
	Next      time.Time         `json:"next"`
	LastRun   *node.ScheduleRun `json:"last_run,omitempty"`
	Outcome   string            `json:"last_outcome"` // ok, FAILED, waiting, "-" (none yet)
}

func commandOf(r commands.Request) []string {
	if r.Name == commands.CmdExec {
		return r.Argv
	}
	return []string{r.Name}
}

func runScheduleList(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "schedule list", "[--json]", "List the schedules: target, when they run, the next run, the last run and how it went.", "sealpost schedule list --json")
	asJSON := fs.Bool("json", false, "print JSON")
	api, done, err := parseAndOpen(ctx, g, fs, args)
	if err != nil {
		return err
	}
	defer done()
	list, err := api.Schedules(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		out := make([]scheduleJSON, 0, len(list))
		for _, s := range list {
			j := scheduleJSON{Name: s.Name, Target: s.Target, Command: commandOf(s.Request), Cron: s.Cron, OnFailure: s.OnFailure,
				Created: s.Created, Next: s.Next, LastRun: s.LastRun, Outcome: runOutcome(s.LastRun)}
			if s.Every > 0 {
				j.Every = s.Every.String()
			}
			if s.Jitter > 0 {
				j.Jitter = s.Jitter.String()
			}
			out = append(out, j)
		}
		return writeJSON(g.stdout, out)
	}
	if len(list) == 0 {
		fmt.Fprintln(g.stdout, "No schedules (add one with `sealpost schedule add`).")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTARGET\tWHEN\tNEXT\tLAST RUN\tOUTCOME\tCOMMAND")
	for _, s := range list {
		last := "-"
		if s.LastRun != nil {
			last = s.LastRun.Fired.Local().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", node.Printable(s.Name), node.Printable(s.Target), scheduleWhen(s.ScheduleSpec), in(now, s.Next), last,
			runOutcome(s.LastRun), node.Printable(strings.Join(commandOf(s.Request), " ")))
	}
	return tw.Flush()
}

func runScheduleRemove(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "schedule remove", "NAME", "Remove a schedule and its history. The results of the commands it sent stay in `sealpost results`.", "sealpost schedule remove disk-check")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("schedule remove needs exactly one NAME")
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	if err := api.RemoveSchedule(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "schedule %s removed\n", pos[0])
	return nil
}

func runScheduleRun(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "schedule run", "NAME", "Fire a schedule now, outside its times (which stay as they were). The run is judged like\nany other: see `sealpost results --schedule NAME`.", "sealpost schedule run disk-check")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("schedule run needs exactly one NAME")
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	r, err := api.RunSchedule(ctx, pos[0])
	if err != nil && !errors.Is(err, node.ErrNotMailed) {
		return err
	}
	var to []string
	for _, p := range r.Peers {
		to = append(to, p.Peer)
	}
	fmt.Fprintf(g.stdout, "schedule %s fired: %d %s (%s)\n", pos[0], len(to), plural(len(to), "command", "commands"), strings.Join(to, ", "))
	return err
}

// scheduleResults is `results --schedule NAME`: the schedule's runs, oldest first, each with
// one line per peer.
func scheduleResults(ctx context.Context, g *globals, name string, asJSON bool, limit int) error {
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	runs, err := api.ScheduleRuns(ctx, name)
	if err != nil {
		return err
	}
	if limit > 0 && len(runs) > limit {
		runs = runs[len(runs)-limit:]
	}
	if asJSON {
		if runs == nil {
			runs = []node.ScheduleRun{}
		}
		return writeJSON(g.stdout, runs)
	}
	if len(runs) == 0 {
		fmt.Fprintf(g.stdout, "Schedule %s has not run yet.\n", name)
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FIRED\tOUTCOME\tPEER\tSTATUS\tEXIT\tID")
	for _, r := range runs {
		fired := r.Fired.Local().Format("2006-01-02 15:04:05")
		if r.Manual {
			fired += " (run)"
		} else if r.Fired.Sub(r.Slot) > time.Minute && r.Fired.Sub(r.Slot) >= r.Deadline.Sub(r.Fired) {
			fired += " (late)"
		}
		outcome := runOutcome(&r)
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t%s\t-\t-\n", fired, outcome, node.Printable(r.Error))
			fired, outcome = "", ""
		}
		for _, p := range r.Peers {
			status, exit, id := p.Status, "-", p.ID
			switch {
			case p.ID == "":
				status, id = node.Printable(p.Error), "-"
			case !r.Done:
				status = "waiting"
			case !p.Answered:
				status = "not answered"
			case p.Status == node.StatusDone:
				exit = fmt.Sprint(p.ExitCode)
			}
			if len(id) > 12 {
				id = id[:12]
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", fired, outcome, node.Printable(p.Peer), status, exit, id)
			fired, outcome = "", ""
		}
		if r.Hook != "" {
			fmt.Fprintf(tw, "\t\thook\t%s\t\t\n", node.Printable(strings.TrimSpace(r.Hook+" "+r.HookError)))
		}
	}
	return tw.Flush()
}
