package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealpost/sealpost/node"
)

// checkUsage names every check subcommand, for `check`, `check --help` and `help check`.
const checkUsage = `Usage: sealpost check SUBCOMMAND [options] [arguments]

This node's own checks: programs its agent runs each time it takes its state for a status
report (only while some controller asked for reports: ` + "`sealpost peer report`" + ` on the
controller), and whose results go in the report. A check passes when its program exits 0; the
controller's ` + "`sealpost fleet`" + ` counts the failing ones. A check runs like an allowed command:
never through a shell, with the command environment, killed with everything it started at its
timeout.

Subcommands:
  add NAME [--timeout 30s] -- PROGRAM [ARG ...]   add a check, or replace the one of that name
  list [--json]                                   list the checks
  remove NAME                                     remove a check
  run [--json]                                    run every check now, here, and print the results
                                                  (exit status 1 when one fails)

Run "sealpost check SUBCOMMAND --help" for a subcommand's options.

Example:
  sealpost check add apt-updates --timeout 1m -- /usr/lib/nagios/plugins/check_apt
`

func runCheck(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		io.WriteString(g.stderr, checkUsage)
		return usageError{msg: "check needs a subcommand", printed: true}
	}
	switch args[0] {
	case "--help", "-h", "-help", "help":
		io.WriteString(g.stdout, checkUsage)
		return nil
	case "add":
		return runCheckAdd(ctx, g, args[1:])
	case "list", "ls":
		return runCheckList(ctx, g, args[1:])
	case "remove", "rm":
		return runCheckRemove(ctx, g, args[1:])
	case "run":
		return runCheckRun(ctx, g, args[1:])
	}
	return usagef("unknown check subcommand %q (want add, list, remove or run)", args[0])
}

func runCheckAdd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "check add", "NAME [--timeout 30s] -- PROGRAM [ARG ...]",
		"Add a check, or replace the one called NAME. PROGRAM is an absolute path or a name looked up\nin PATH now; it runs as given, never through a shell. The check passes when it exits 0; the\nfirst line of its output goes with its result.",
		`sealpost check add disk-root --timeout 10s -- /usr/lib/nagios/plugins/check_disk -w 10% -p /`)
	timeout := fs.Duration("timeout", 0, fmt.Sprintf("how long one run may take (default %s, at most %s)", node.DefaultCheckTimeout, node.MaxCheckTimeout))
	pos, tail, err := parseSplit(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return usagef("check add needs exactly one NAME before \"--\": sealpost check add NAME -- PROGRAM [ARG ...]")
	case len(tail) == 0 || tail[0] == "":
		return usagef("check add needs a PROGRAM after \"--\": sealpost check add %s -- PROGRAM [ARG ...]", pos[0])
	case *timeout < 0 || *timeout > node.MaxCheckTimeout:
		return usagef("--timeout %s: give a duration up to %s", *timeout, node.MaxCheckTimeout)
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	s, err := api.AddCheck(ctx, node.CheckSpec{Name: pos[0], Argv: tail, Timeout: *timeout})
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "check %s added: %s (timeout %s)\n", node.Printable(s.Name), node.Printable(strings.Join(s.Argv, " ")), checkTimeout(s.Timeout))
	return nil
}

func checkTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return node.DefaultCheckTimeout
	}
	return d
}

func runCheckList(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "check list", "[--json]", "List this node's checks: name, timeout and program.", "sealpost check list --json")
	asJSON := fs.Bool("json", false, "print JSON: an array of {name, argv, timeout} (timeout in nanoseconds, 0: the default)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q: check list takes none", pos[0])
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	list, err := api.Checks(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []node.CheckSpec{}
		}
		return writeJSON(g.stdout, list)
	}
	if len(list) == 0 {
		fmt.Fprintln(g.stdout, "No checks (add one with `sealpost check add NAME -- PROGRAM`).")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTIMEOUT\tCOMMAND")
	for _, c := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", node.Printable(c.Name), checkTimeout(c.Timeout), node.Printable(strings.Join(c.Argv, " ")))
	}
	return tw.Flush()
}

func runCheckRemove(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "check remove", "NAME", "Remove a check. The next status report tells the controllers it is gone.", "sealpost check remove disk-root")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("check remove needs exactly one NAME")
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	if err := api.RemoveCheck(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "check %s removed\n", node.Printable(pos[0]))
	return nil
}

func runCheckRun(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "check run", "[--json]", "Run every check now, here (by the agent when one runs), and print the results. The exit\nstatus is 1 when a check fails. Status reports are not changed by it.", "sealpost check run --json")
	asJSON := fs.Bool("json", false, "print JSON: an array of {name, ok, exit, output, at}")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q: check run takes none", pos[0])
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	res, err := api.RunChecks(ctx)
	if err != nil {
		return err
	}
	failing := 0
	for _, r := range res {
		if !r.OK {
			failing++
		}
	}
	if *asJSON {
		if res == nil {
			res = []node.CheckResult{}
		}
		if err := writeJSON(g.stdout, res); err != nil {
			return err
		}
	} else if len(res) == 0 {
		fmt.Fprintln(g.stdout, "No checks (add one with `sealpost check add NAME -- PROGRAM`).")
	} else {
		tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tRESULT\tEXIT\tOUTPUT")
		for _, r := range res {
			verdict := "ok"
			if !r.OK {
				verdict = "FAILED"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", node.Printable(r.Name), verdict, r.Exit, node.Printable(r.Output))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if failing > 0 {
		return exitCodeError{code: exitError, err: fmt.Errorf("%d of %d %s failed", failing, len(res), plural(len(res), "check", "checks"))}
	}
	return nil
}
