package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

// runPeerReport is `sealpost peer report NAME 15m|off`: ask a peer to mail status reports at
// that interval (docs/PROTOCOL.md section 19, "Status reports"), or to stop, and wait for its
// answer like ping.
func runPeerReport(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "peer report", "NAME INTERVAL|off [--timeout 2m]",
		"Ask the peer to mail a status report at INTERVAL (1s to 24h; off stops it). The first report is whole, later ones only what changed; `sealpost fleet` shows them.",
		"sealpost peer report bob 15m")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long it waits for the peer's answer; the request stays pending after it")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return usagef("peer report needs NAME and an INTERVAL (like 15m) or off")
	}
	var every time.Duration
	if pos[1] != "off" {
		if every, err = time.ParseDuration(pos[1]); err != nil || every < commands.MinReportEvery || every > commands.MaxReportEvery {
			return usagef("peer report: interval %q: want a duration from %v to %v (like 15m), or off", pos[1], commands.MinReportEvery, commands.MaxReportEvery)
		}
	}
	spec := node.RunSpec{Peer: pos[0], Request: commands.Request{Every: every}}
	if _, err := rand.Read(spec.ID[:]); err != nil {
		return err
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r, err := api.Reports(wctx, spec, true)
	switch {
	case err != nil && r.Status == "":
		return err
	case !node.Final(r.Status):
		return exitCodeError{exitPending, fmt.Errorf("no answer from %s within %s; the request %s stays %s and takes effect when it arrives", pos[0], *timeout, hexID(r.CommandID), r.Status)}
	case node.ReportsUnsupported(r):
		return exitCodeError{exitRefused, fmt.Errorf("%s's sealpost is too old for status reports; upgrade it", pos[0])}
	case r.Status != node.StatusDone:
		return exitCodeError{exitRefused, fmt.Errorf("%s refused: %s (%s)", pos[0], r.Status, r.Error)}
	case every == 0:
		fmt.Fprintf(g.stdout, "%s stops its status reports\n", pos[0])
	default:
		fmt.Fprintf(g.stdout, "%s reports every %s; `sealpost fleet` shows its state\n", pos[0], every)
	}
	return nil
}
