package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

// Fan-out: `run`, `ping` and `sysinfo` with a TARGET that names several peers (@TAG, @all, a
// comma list). The commands are sealed and queued in one pass (SubmitMany) and, with --wait,
// the answers are waited for together (WaitMany) until all are in, --deadline passes, or
// Ctrl-C; then the outputs are shown grouped by identical output, with the peers that did not
// answer listed last. A single plain peer name keeps the one-peer path (submit) and its output.

// isFanout reports whether target is one for the fan-out: anything but a single plain name.
func isFanout(target string) bool { return strings.ContainsAny(target, ",@") }

// fanoutStyle is how the final report shows the answers.
type fanoutStyle int

const (
	groupedOutput fanoutStyle = iota // run, sysinfo: outputs grouped by identical output
	pingLines                        // ping: one line per peer with its round trip
)

// fanOut runs req on every peer that target names; see the comment at the top of this file.
func fanOut(ctx context.Context, g *globals, target string, req commands.Request, o runOptions, style fanoutStyle) error {
	if _, err := node.ParseTarget(target); err != nil {
		return usagef("%v", err)
	}
	if !node.CommandID(o.id).IsZero() {
		return usagef("--id names one command; a target of several peers gets one command (and id) per peer")
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	names, err := api.ResolveTarget(ctx, target)
	if err != nil {
		return err
	}
	specs := make([]node.RunSpec, len(names))
	for i, name := range names {
		specs[i] = node.RunSpec{Peer: name, Request: req, TTL: o.ttl}
		if _, err := rand.Read(specs[i].ID[:]); err != nil {
			return err
		}
	}
	ids, err := api.SubmitMany(ctx, specs)
	var unknown *node.FateUnknownError
	switch {
	case err == nil:
	case errors.As(err, &unknown):
		return exitCodeError{exitUnknown, fmt.Errorf("the commands for %s went to the agent, but no answer came back (%v): they may have been recorded and sent, or not; once the agent runs again, `sealpost results` shows which", target, unknown.Err)}
	case len(ids) == len(specs):
		// All recorded and queued; mailing failed. The outbox sends them again (the agent, or
		// the wait below).
		if !o.wait {
			printSubmitted(g, o, ids, specs)
			return exitCodeError{exitPending, fmt.Errorf("%d commands are recorded but not mailed yet (%v); they stay in the outbox and are sent again", len(ids), err)}
		}
		fmt.Fprintf(g.stderr, "sealpost: mailing the commands failed (%v); they stay in the outbox and are sent again while this waits\n", err)
	case len(ids) > 0:
		return fmt.Errorf("%d of %d commands were recorded before this failed: %w (see `sealpost results` for those)", len(ids), len(specs), err)
	default:
		return err
	}
	if !o.wait {
		printSubmitted(g, o, ids, specs)
		return nil
	}

	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	w := newFanoutWatch(g, o, names)
	w.start()
	rs, werr := api.WaitMany(wctx, ids, w.update)
	if len(rs) != len(ids) {
		// Nothing was read before the wait ended: read once more, briefly, for the report.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if got, err := api.ResultsOf(rctx, ids); err == nil {
			rs = got
		}
		cancel()
	}
	if len(rs) != len(ids) {
		w.stop()
		if werr == nil {
			werr = errors.New("no results")
		}
		return fmt.Errorf("waiting for the answers: %w; the commands are recorded: `sealpost results` shows them", werr)
	}
	w.update(rs)
	w.stop()

	end := endAnswered
	switch {
	case ctx.Err() != nil:
		end = endInterrupted
	case werr != nil && wctx.Err() != nil:
		end = endDeadline
	case werr != nil:
		end = endError
	}
	if o.json {
		w.flushJSON(rs)
	} else {
		printFanout(g, rs, style, end)
	}
	return fanoutError(ctx, rs, end, o.timeout, werr)
}

// printSubmitted is the answer of `run TARGET` without --wait: one line per command (its id,
// peer and status), or with --json one object per command.
func printSubmitted(g *globals, o runOptions, ids []node.CommandID, specs []node.RunSpec) {
	for i, id := range ids {
		r := node.Result{CommandID: id, Peer: specs[i].Peer, Command: specs[i].Request.Argv, Status: node.StatusSent}
		if o.json {
			writeJSONLine(g, r)
			continue
		}
		fmt.Fprintf(g.stdout, "%s %s %s\n", hexID(id), specs[i].Peer, r.Status)
	}
}

// writeJSONLine prints one result as a line of JSON (JSON Lines: one object per peer), in the
// form `run --json` prints one result.
func writeJSONLine(g *globals, r node.Result) {
	b, _ := json.Marshal(jsonResult(r))
	g.stdout.Write(append(b, '\n'))
}

// fanoutWatch shows the answers as they come: on a terminal a live table (with --json only a
// summary line), elsewhere one line per answer on stderr; with --json it prints each answer's
// object when it comes.
type fanoutWatch struct {
	g     *globals
	o     runOptions
	names []string
	begun time.Time

	mu      sync.Mutex
	rs      []node.Result
	printed map[node.CommandID]bool // answers already printed (JSON) or announced (stderr)
	table   *liveTable

	stopTick, ticked chan struct{}
}

func newFanoutWatch(g *globals, o runOptions, names []string) *fanoutWatch {
	w := &fanoutWatch{g: g, o: o, names: names, begun: time.Now(), printed: map[node.CommandID]bool{}}
	if g.console != nil {
		w.table = &liveTable{c: g.console}
	}
	return w
}

// start draws the live view every progressEvery until stop (on a terminal only).
func (w *fanoutWatch) start() {
	if w.table == nil {
		return
	}
	w.stopTick, w.ticked = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.ticked)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			w.draw()
			select {
			case <-w.stopTick:
				return
			case <-t.C:
			}
		}
	}()
}

// stop ends the live view and takes it off the screen.
func (w *fanoutWatch) stop() {
	if w.table == nil {
		return
	}
	if w.stopTick != nil {
		close(w.stopTick)
		<-w.ticked
		w.stopTick = nil
	}
	w.table.clear()
}

// update takes the results as they stand (WaitMany's progress) and prints the answers that came.
func (w *fanoutWatch) update(rs []node.Result) {
	w.mu.Lock()
	w.rs = rs
	w.mu.Unlock()
	if w.o.json {
		w.flushJSON(nil)
	} else if w.table == nil {
		w.announce()
	}
	w.draw()
}

// flushJSON prints the object of every answer not printed yet; with final, the results at the
// end, also those of the peers that did not answer.
func (w *fanoutWatch) flushJSON(final []node.Result) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rs := w.rs
	if final != nil {
		rs = final
	}
	for _, r := range rs {
		if w.printed[r.CommandID] || (final == nil && !node.Final(r.Status)) {
			continue
		}
		w.printed[r.CommandID] = true
		writeJSONLine(w.g, r)
	}
}

// announce writes one line on stderr per answer that came (not on a terminal, where the live
// table shows them): "[2/14] bob: exit 0 (1.2s)".
func (w *fanoutWatch) announce() {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.printed)
	for _, r := range w.rs {
		if !node.Final(r.Status) || w.printed[r.CommandID] {
			continue
		}
		w.printed[r.CommandID] = true
		n++
		fmt.Fprintf(w.g.stderr, "[%d/%d] %s: %s (%s)\n", n, len(w.rs), node.Printable(r.Peer), outcomeLabel(r), took(r, time.Now()))
	}
}

// draw redraws the live view: the table, or with --json the summary line alone.
func (w *fanoutWatch) draw() {
	if w.table == nil {
		return
	}
	w.mu.Lock()
	rs := w.rs
	w.mu.Unlock()
	if rs == nil {
		rs = make([]node.Result, len(w.names))
		for i, name := range w.names {
			rs[i] = node.Result{Peer: name, Status: node.StatusSent, Sent: w.begun}
		}
	}
	if w.o.json {
		w.table.draw(summaryLine(rs) + hint)
		return
	}
	w.table.draw(renderTable(rs, time.Now(), maxLiveRows) + hint)
}

// hint ends the live view's summary line.
const hint = " (Ctrl-C stops waiting, not the commands)"
