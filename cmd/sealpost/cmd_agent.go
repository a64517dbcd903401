package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sealpost/sealpost/node"
)

func runAgent(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "agent", "[--once] [--keep-processed TIME] [--parallel N]",
		"Serve this node's mailbox: run the commands peers send (within their allow lists), answer\nthem, and collect answers to the commands this node sent. While it runs, other sealpost\ncommands for the same state talk to it through its control socket.",
		"sealpost agent -v")
	once := fs.Bool("once", false, "process what is in the mailbox now, then exit")
	parallel := fs.Int("parallel", node.DefaultMaxParallel, "run the commands of up to `N` peers at once (each peer's one at a time, in order)")
	keep := keepFlag(node.DefaultKeepProcessed)
	fs.Var(&keep, "keep-processed", "keep processed mail for `TIME` (like 30d or 12h), then delete it; checked once\na day; forever keeps it")
	if _, err := parse(fs, args); err != nil {
		return err
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
	n, err := node.Open(opts)
	if err != nil {
		return err
	}
	defer n.Close()
	if !*once {
		ctx, cancel := context.WithCancel(ctx)
		ctl, err := n.ListenControl(ctx)
		if err != nil {
			cancel()
			return err
		}
		// Before Close (deferred above, so run after this): stop taking requests and let the ones
		// in progress finish, also when Serve returns on its own.
		defer func() { cancel(); ctl.Wait() }()
		fmt.Fprintf(g.stderr, "sealpost agent %s serving %s (Ctrl-C to stop)\n", n.Fingerprint(), n.Address())
	}
	return n.Serve(ctx, *once)
}

// keepFlag is a keep time: a Go duration, a whole number of days ("30d"), or "forever" (stored
// as a negative duration, node.Options' way of saying "never delete").
type keepFlag time.Duration

func (k *keepFlag) String() string {
	switch d := time.Duration(*k); {
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
