package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

// pull and push move files (docs/PROTOCOL.md section 20, "Files"): the peer's operator says
// which directories this node may read and write there (sealpost peer add NAME --allow-read DIR
// --allow-write DIR). Both go in chunks, resume after either side restarts, are checked by
// SHA-256, and are written under a temporary name and renamed into place only when whole.

func runPull(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "pull", "PEER REMOTE LOCAL [--timeout 1h] [--json]",
		"Copy the file REMOTE from PEER to LOCAL. REMOTE must lie in a directory PEER's operator lets\nthis node read (sealpost peer add NAME --allow-read DIR there). LOCAL is written under a\ntemporary name and renamed into place once the whole file arrived and matched its SHA-256.\nStopping sealpost does not stop the transfer: `sealpost results ID` shows it, and its output\nfile is kept there.",
		"sealpost pull vault /srv/backup/db.dump ./db.dump")
	var o runOptions
	o.addFlags(g, fs, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		return usagef("pull needs PEER, REMOTE and LOCAL")
	}
	if err := o.check(fs); err != nil {
		return err
	}
	if !filepath.IsAbs(pos[1]) {
		return usagef("REMOTE must be an absolute path on the peer")
	}
	o.output = pos[2]
	if !flagGiven(fs, "timeout", "deadline") {
		o.timeout = time.Hour
	}
	req := commands.Request{Name: commands.CmdPull, Path: pos[1]}
	return submit(ctx, g, pos[0], req, o, printRun)
}

func runPush(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "push", "PEER LOCAL REMOTE [--timeout 1h] [--json]",
		"Copy the file LOCAL to PEER, as REMOTE. REMOTE must lie in a directory PEER's operator lets\nthis node write (sealpost peer add NAME --allow-write DIR there); the peer writes it under a\ntemporary name and renames it into place once the whole file arrived and matched its SHA-256.\nStopping sealpost does not stop the transfer: the agent (or the next sealpost command) goes on\nwith it, and `sealpost results ID` shows it.",
		"sealpost push vault ./patch.tar.gz /srv/incoming/patch.tar.gz")
	var o runOptions
	o.addFlags(g, fs, true)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 {
		return usagef("push needs PEER, LOCAL and REMOTE")
	}
	if err := o.check(fs); err != nil {
		return err
	}
	if !filepath.IsAbs(pos[2]) {
		return usagef("REMOTE must be an absolute path on the peer")
	}
	if fi, err := os.Stat(pos[1]); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("push: %s is not a readable regular file", pos[1])
	}
	if !flagGiven(fs, "timeout", "deadline") {
		o.timeout = time.Hour
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	id, err := api.Push(ctx, node.PushSpec{ID: node.CommandID(o.id), Peer: pos[0], Local: pos[1], Remote: pos[2]})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	stop := transferProgress(g, api, id, "sending to "+pos[0])
	rs, err := api.WaitMany(wctx, []node.CommandID{id}, nil)
	stop()
	var r node.Result
	if len(rs) == 1 {
		r = rs[0]
	}
	if err != nil && ctx.Err() != nil {
		return interrupted(ctx, pos[0], id, r, err)
	}
	if o.json {
		if err := writeJSON(g.stdout, jsonResult(r)); err != nil {
			return err
		}
	}
	if !node.Final(r.Status) {
		return exitCodeError{exitPending, fmt.Errorf("%s has not confirmed the file within %s; the push goes on: see `sealpost results %s`", pos[0], o.timeout, hexID(id))}
	}
	if r.Status == node.StatusDone && r.ExitCode == 0 && !o.json {
		fmt.Fprintf(g.stdout, "%s now holds %s\n", pos[0], pos[2])
	}
	return resultExit(pos[0], r)
}

// flagGiven reports whether any of the flags was set on the command line.
func flagGiven(fs interface{ Visit(func(*flag.Flag)) }, names ...string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		for _, n := range names {
			if f.Name == n {
				given = true
			}
		}
	})
	return given
}

// transferProgress draws a transfer's progress on the terminal (bytes, rate, chunks waiting)
// until the returned function is called.
func transferProgress(g *globals, api node.API, id node.CommandID, what string) func() {
	var last *node.TransferProgress
	return redraw(g, func(elapsed time.Duration) string {
		if rs, err := api.ResultsOf(context.Background(), []node.CommandID{id}); err == nil && len(rs) == 1 {
			last = rs[0].Progress
		}
		return progressLine(what, last, elapsed)
	})
}

// progressLine says how far a transfer came: "sending to vault: 34.5 MiB of 100 MiB, 2.1 MiB/s,
// 3 chunks waiting, 16s".
func progressLine(what string, p *node.TransferProgress, elapsed time.Duration) string {
	line := what + ": "
	if p == nil {
		return line + "waiting for the answer by mail… " + elapsed.Round(time.Second).String()
	}
	line += humanBytes(p.Bytes)
	if p.Total > 0 {
		line += " of " + humanBytes(p.Total)
	}
	if s := elapsed.Seconds(); s > 0 {
		line += fmt.Sprintf(", %s/s", humanBytes(int64(float64(p.Bytes)/s)))
	}
	if p.ChunksWaiting > 0 {
		line += fmt.Sprintf(", %d chunks waiting", p.ChunksWaiting)
	}
	return line + ", " + elapsed.Round(time.Second).String()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
