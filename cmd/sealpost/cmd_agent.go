package main

import (
	"context"
	"fmt"

	"github.com/sealpost/sealpost/node"
)

func runAgent(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "agent", "[--once]",
		"Serve this node's mailbox: run the commands peers send (within their allow lists), answer\nthem, and collect answers to the commands this node sent. While it runs, other sealpost\ncommands for the same state talk to it through its control socket.",
		"sealpost agent -v")
	once := fs.Bool("once", false, "process what is in the mailbox now, then exit")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	var events func(node.Event)
	if g.verbose {
		events = func(e node.Event) { fmt.Fprintln(g.stderr, formatEvent("", e)) }
	}
	n, err := node.Open(node.Options{Dir: g.state, Logger: g.logger(), Version: version, Events: events})
	if err != nil {
		return err
	}
	defer n.Close()
	if !*once {
		if err := n.ListenControl(ctx); err != nil {
			return err
		}
		fmt.Fprintf(g.stderr, "sealpost agent %s serving %s (Ctrl-C to stop)\n", n.Fingerprint(), n.Address())
	}
	return n.Serve(ctx, *once)
}
