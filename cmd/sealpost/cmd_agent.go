package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/node"
)

func runAgent(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "agent", "[--once] [--keep-processed TIME] [--keep-results TIME] [--parallel N] [--min-report-every D]",
		"Serve this node's mailbox: run the commands peers send (within their allow lists), answer\nthem, and collect answers to the commands this node sent. While it runs, other sealpost\ncommands for the same state talk to it through its control socket.\n\nSIGTERM and SIGINT stop it: the commands still running are ended and answered, the outbox\nis mailed once more. SIGHUP restarts it in place: it stops the same way, then opens the state\nagain, reading the stored settings and the password file anew, and logs in again. Under\nsystemd (Type=notify) it reports READY=1 once its control socket answers.",
		"sealpost agent -v")
	once := fs.Bool("once", false, "process what is in the mailbox now, then exit")
	parallel := fs.Int("parallel", node.DefaultMaxParallel, "run the commands of up to `N` peers at once (each peer's one at a time, in order)")
	keep := keepFlag(node.DefaultKeepProcessed)
	fs.Var(&keep, "keep-processed", "keep processed mail for `TIME` (like 30d or 12h), then delete it; checked once\na day; forever keeps it")
	var keepResults keepFlag // zero: as stored in the state (90d unless set before)
	fs.Var(&keepResults, "keep-results", "keep the results of finished commands for `TIME` (like 90d, the default), then\ndelete them (each new command deletes up to 8 expired ones); forever keeps them. It is\nstored: every later command on this state, agent or not, keeps to it")
	minReport := fs.Duration("min-report-every", node.DefaultMinReportEvery, "mail each controller that asked for status reports at most once per `D` (like 1m),\nwhatever interval it asked for")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *minReport <= 0 {
		return usagef("--min-report-every must be positive (like 1m), not %v", *minReport)
	}
	var events func(node.Event)
	if g.verbose {
		events = func(e node.Event) { fmt.Fprintln(g.stderr, formatEvent("", e)) }
	}
	opts := g.nodeOptions()
	if *parallel < 1 {
		return usagef("--parallel must be at least 1, not %d", *parallel)
	}
	opts.Events, opts.KeepProcessed, opts.MaxParallel = events, time.Duration(keep), *parallel
	opts.KeepResults, opts.MinReportEvery = time.Duration(keepResults), *minReport
	if *once {
		// Quiet unless something goes wrong: cron mails whatever a job prints.
		n, err := node.Open(opts)
		if err != nil {
			return err
		}
		defer n.Close()
		log := g.logger()
		log.Debug("agent started", "version", version, "state", opts.Dir, "address", n.Address(), "once", true)
		err = n.Serve(ctx, true)
		log.Debug("agent stopped", "reason", "done", "err", err)
		return err
	}
	a := &agent{g: g, opts: opts, log: g.loggerAt(slog.LevelInfo), sd: newNotifier(), sigs: make(chan os.Signal, 4)}
	signal.Notify(a.sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(a.sigs)
	return a.run(ctx)
}

// agent is `sealpost agent` without --once: it serves until a signal or an error ends it, and
// starts over on SIGHUP. It logs one line when it starts (and after each restart) and one when
// it stops, saying why, at level INFO, which is shown without -v.
type agent struct {
	g    *globals
	opts node.Options
	log  *slog.Logger
	sd   notifier
	sigs chan os.Signal
}

// Why the agent stopped serving, for its stop line.
const (
	stopSignal = "signal" // SIGTERM or SIGINT
	stopReload = "reload" // SIGHUP: it starts again
	stopError  = "error"  // the state or the mailbox failed; the agent exits with status 1
)

// reloadLockTimeout is how long a restart on SIGHUP waits for the state lock: a command that
// found no control socket during the restart may hold the state for a moment.
const reloadLockTimeout = 30 * time.Second

func (a *agent) run(ctx context.Context) error {
	restarts := 0
	for {
		why, detail, err := a.serve(ctx, restarts)
		if why == "" {
			return err // it never started: no state, no socket
		}
		if why == stopReload {
			restarts++
			a.log.Info("agent restarting", "reason", why, "signal", detail)
			continue
		}
		if err != nil {
			// The error is the stop line's; the exit code tells the service manager it failed.
			a.notify("STOPPING=1\nSTATUS=stopped: " + node.Printable(err.Error()))
			a.log.Error("agent stopped", "reason", why, "err", err)
			return exitCodeError{code: exitError}
		}
		a.log.Info("agent stopped", "reason", why, "signal", detail)
		return nil
	}
}

// serve opens the state, serves it until a signal or an error, and closes it again. detail names
// the signal. Before the state is open there is no start line: an error then is returned as is.
func (a *agent) serve(ctx context.Context, restarts int) (why, detail string, err error) {
	opts := a.opts
	if restarts > 0 {
		opts.LockTimeout = reloadLockTimeout
	}
	n, err := node.Open(opts)
	if err != nil {
		if restarts > 0 {
			return stopError, "", err
		}
		return "", "", err
	}
	defer n.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctl, err := n.ListenControl(sctx)
	if err != nil {
		if restarts > 0 {
			return stopError, "", err
		}
		return "", "", err
	}
	// Before Close (deferred above, so run after this): stop taking requests and let the ones in
	// progress finish, also when Serve returns on its own.
	defer func() { cancel(); ctl.Wait() }()
	st, err := n.Status(sctx)
	if err != nil {
		return stopError, "", err
	}
	msg := "agent started"
	if restarts > 0 {
		msg = "agent restarted"
	}
	a.log.Info(msg, "version", version, "state", opts.Dir, "address", n.Address(), "imap", st.IMAP, "smtp", st.SMTP,
		"fingerprint", n.Fingerprint().String(), "pid", os.Getpid())
	a.notify("READY=1\nSTATUS=serving " + node.Printable(n.Address()))
	done := make(chan error, 1)
	go func() { done <- n.Serve(sctx, false) }()
	select {
	case s := <-a.sigs:
		why, detail = stopSignal, signalName(s)
		if s == syscall.SIGHUP {
			why = stopReload
			a.notify("RELOADING=1\nSTATUS=restarting") // READY=1 follows when it serves again
		} else {
			a.notify("STOPPING=1\nSTATUS=stopping")
		}
		cancel()
		err = <-done
	case err = <-done:
		// Serve ended on its own: ctx ended (main's own handler caught SIGTERM or SIGINT first),
		// or it failed.
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("the agent stopped serving")
			}
			return stopError, "", err
		}
		why, detail = stopSignal, context.Cause(ctx).Error()
		select {
		case s := <-a.sigs:
			detail = signalName(s)
		default:
		}
		a.notify("STOPPING=1\nSTATUS=stopping")
	}
	if err != nil && ctx.Err() == nil && why != stopReload {
		return stopError, detail, err
	}
	return why, detail, nil
}

// notify tells systemd; failing to is worth a warning, never a stop.
func (a *agent) notify(state string) {
	if err := a.sd.notify(state); err != nil {
		a.log.Warn("could not notify the service manager", "op", "sd_notify", "err", err)
	}
}

func signalName(s os.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGHUP:
		return "SIGHUP"
	}
	return s.String()
}

// keepFlag is a keep time: a Go duration, a whole number of days ("30d"), or "forever" (stored
// as a negative duration, node.Options' way of saying "never delete").
type keepFlag time.Duration

func (k *keepFlag) String() string {
	switch d := time.Duration(*k); {
	case d == 0:
		return "" // not given (--keep-results: as stored)
	case d < 0:
		return "forever"
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	default:
		return d.String()
	}
}

func (k *keepFlag) Set(s string) error {
	if s == "forever" {
		*k = keepFlag(-1)
		return nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil || n == 0 {
			return errors.New("want a number of days like 30d, a duration like 12h, or forever")
		}
		*k = keepFlag(time.Duration(n) * 24 * time.Hour)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return errors.New("want a number of days like 30d, a duration like 12h, or forever")
	}
	*k = keepFlag(d)
	return nil
}
