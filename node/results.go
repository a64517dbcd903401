package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// Result statuses. queued and sent are not final; every other status is.
const (
	StatusQueued       = "queued"             // waiting for a session with the peer
	StatusSent         = "sent"               // mailed, no answer yet
	StatusReceiving    = "receiving"          // answered; its streamed output is still coming
	StatusDone         = "done"               // ran; ExitCode is the program's
	StatusFailed       = "failed"             // an answer that could not be read, or a local failure
	StatusLocalExpired = "expired-unanswered" // not-after passed with no answer
	StatusMissing      = "missing"            // ResultsOf: no result recorded under the id (pruned, or never submitted)
)

// Final reports whether a result status will not change any more.
func Final(status string) bool {
	return status != StatusQueued && status != StatusSent && status != StatusReceiving && status != ""
}

func (n *Node) recordResult(tx *keystore.Tx, id session.CommandID, fn func(*keystore.Result)) error {
	r, ok, err := tx.Result(id)
	if err != nil {
		return err
	}
	if !ok {
		r = keystore.Result{CommandID: id, Peer: "?", Sent: n.now()}
	}
	fn(&r)
	if Final(r.Status) {
		r.Finished = n.now()
	}
	return tx.PutResult(r)
}

// CommandID names one command. It is session's id under node's name, so that callers of the
// API (the CLI) need not import session.
type CommandID = session.CommandID

// ParseCommandID reads a command id written as 32 hex digits.
func ParseCommandID(s string) (CommandID, error) { return session.ParseCommandID(s) }

// Result is what the API tells about one command: the controller's record of it, in the API's
// own type so that callers need not import keystore (whose record it is copied from).
type Result struct {
	CommandID CommandID
	Peer      string
	Command   []string
	// Status is where the command stands (StatusQueued … StatusDone, or the peer's refusal);
	// Outcome, for a command that ran (StatusDone), how the program ended: with ExitCode, by
	// Signal, by its timeout, or not started at all. Error is an explanation for people only.
	Status   string
	Outcome  commands.Outcome
	ExitCode int
	Signal   int
	Error    string
	Stdout   []byte
	Stderr   []byte
	// StdoutTruncated, StderrTruncated: the peer kept only the first part of the stream.
	StdoutTruncated, StderrTruncated bool
	Sent, Finished                   time.Time     // this node's clock
	Started                          time.Time     // the peer's clock, when it began the program
	Duration                         time.Duration // how long the program ran on the peer
	Attempts                         int           // transmissions of the command so far
	// Streamed: the output came as a stream and is in the files StdoutPath and StderrPath
	// (StdoutSize and StderrSize bytes), not in Stdout and Stderr. While Status is
	// StatusReceiving, StdoutSize and StderrSize count what is there from the start.
	Streamed               bool
	StdoutPath, StderrPath string
	StdoutSize, StderrSize int64
	// Progress of a transfer under way (not final): bytes moved so far, of Total (0 while
	// unknown), and chunks the answer names that have not arrived yet.
	Progress *TransferProgress `json:",omitempty"`
}

// TransferProgress is how far a streamed output, pull or push has come.
type TransferProgress struct {
	Bytes, Total  int64
	ChunksWaiting int64
}

func resultOf(r keystore.Result) Result {
	out := Result{CommandID: r.CommandID, Peer: r.Peer, Command: r.Command, Status: r.Status, ExitCode: r.ExitCode,
		Signal: r.Signal, Error: r.Error, Stdout: r.Stdout, Stderr: r.Stderr, StdoutTruncated: r.StdoutTruncated,
		StderrTruncated: r.StderrTruncated, Sent: r.Sent, Finished: r.Finished, Started: r.Started, Duration: r.Duration,
		Attempts: r.Attempts, Streamed: r.Streamed, StdoutSize: r.StdoutSize, StderrSize: r.StderrSize}
	if r.Outcome != "" {
		// A token this build does not know (a newer build wrote it) reads as unknown.
		out.Outcome, _ = commands.ParseOutcome(r.Outcome)
	}
	return out
}

// ShellExitCode is the exit status a shell would report for the program: its own for a program
// that exited, 128+N for one killed by signal N (137 for kill -9); false when it did neither,
// or when how it ended is not known (an outcome this build cannot read: never guessed from
// the exit code alone).
func (r Result) ShellExitCode() (int, bool) {
	if r.Outcome == commands.OutcomeUnknown {
		return 0, false
	}
	return commands.Result{Outcome: r.Outcome, ExitCode: r.ExitCode, Signal: r.Signal}.ShellExitCode()
}

// Result returns the record of one command.
func (n *Node) Result(id CommandID) (Result, bool, error) {
	var r keystore.Result
	var ok bool
	var out Result
	err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		r, ok, err = tx.Result(id)
		if err != nil || !ok {
			return err
		}
		out, err = n.withProgress(tx, r)
		return err
	})
	return out, ok, err
}

// withProgress is the API's form of r: with the names of its spool files, and for one whose
// streamed output is still coming, how much of it is here from the start.
func (n *Node) withProgress(tx *keystore.Tx, r keystore.Result) (Result, error) {
	out := n.withStreamPaths(resultOf(r))
	if Final(r.Status) {
		return out, nil
	}
	p, ok, err := tx.Peer(r.Peer)
	if err != nil || !ok {
		return out, err
	}
	if push, ok, err := tx.StreamOut(p.Fingerprint, r.CommandID); err != nil {
		return out, err
	} else if ok {
		cut := int64(0)
		if k := len(push.Chunks); k > 0 {
			cut = push.Chunks[k-1].Offset + push.Chunks[k-1].Len
		}
		out.Progress = &TransferProgress{Bytes: cut, Total: push.Size}
	}
	in, ok, err := tx.StreamIn(p.Fingerprint, r.CommandID)
	if err != nil || !ok {
		return out, err
	}
	if in.Contig != [2]int64{} || in.Answer != nil {
		out.Streamed, out.StdoutSize, out.StderrSize = true, in.Contig[0], in.Contig[1]
		pr := &TransferProgress{Bytes: in.Contig[0] + in.Contig[1]}
		if in.Answer != nil {
			pr.ChunksWaiting = in.CountMissing(in.Chunks)
			if res, err := decodeResult(in.Answer); err == nil {
				pr.Total = res.StdoutSize + res.StderrSize
			}
		}
		out.Progress = pr
	}
	return out, nil
}

// withStreamPaths names the spool files of a streamed result.
func (n *Node) withStreamPaths(r Result) Result {
	r.StdoutPath, r.StderrPath = n.StreamPath(r.CommandID, session.PartStdout), n.StreamPath(r.CommandID, session.PartStderr)
	return r
}

// Results lists every command this node sent, oldest first.
func (n *Node) Results(ctx context.Context) ([]Result, error) {
	var rs []Result
	err := n.store.View(func(tx *keystore.Tx) error {
		recs, err := tx.Results()
		for _, r := range recs {
			rs = append(rs, n.withStreamPaths(resultOf(r)))
		}
		return err
	})
	return rs, err
}

// MaxRecentResults caps RecentResults' limit, so that one request cannot ask for the whole
// history through it.
const MaxRecentResults = 1000

// RecentResults returns the limit most recently sent commands' results, newest first: of one
// peer, or of all with peer "". It reads only those (keystore walks its results_by_sent index
// backwards), so a page that shows the recent results costs the page, not the whole history as
// Results does. limit is at least 1 and at most MaxRecentResults.
func (n *Node) RecentResults(ctx context.Context, peer string, limit int) ([]Result, error) {
	limit = min(max(limit, 1), MaxRecentResults)
	var rs []Result
	err := n.store.View(func(tx *keystore.Tx) error {
		return tx.ResultsNewestFirst(peer, func(r keystore.Result) (bool, error) {
			rs = append(rs, n.withStreamPaths(resultOf(r)))
			return len(rs) < limit, ctx.Err()
		})
	})
	return rs, err
}

// recentQuery is the recent-results control operation's request: RecentResults' arguments.
type recentQuery struct {
	Peer  string `json:"peer,omitempty"`
	Limit int    `json:"limit"`
}

// RecentResults asks the agent for RecentResults.
func (cl *Client) RecentResults(ctx context.Context, peer string, limit int) ([]Result, error) {
	r, err := cl.call(ctx, controlRequest{Op: "recent-results", Recent: &recentQuery{Peer: peer, Limit: limit}})
	return r.Results, err
}

// ResultsOf returns the results recorded under ids, in their order; see API.
func (n *Node) ResultsOf(ctx context.Context, ids []CommandID) ([]Result, error) {
	out := make([]Result, 0, len(ids))
	err := n.store.View(func(tx *keystore.Tx) error {
		for _, id := range ids {
			r, ok, err := tx.Result(id)
			if err != nil {
				return err
			}
			if !ok {
				out = append(out, Result{CommandID: id, Status: StatusMissing})
				continue
			}
			res, err := n.withProgress(tx, r)
			if err != nil {
				return err
			}
			out = append(out, res)
		}
		return nil
	})
	return out, err
}

// Wait blocks until the command's result is final or ctx ends. Without an agent serving this
// node it reads the mailbox itself; under Serve it waits for the serving loop. progress, if not
// nil, is called while waiting.
func (n *Node) Wait(ctx context.Context, id CommandID, progress func(Result)) (Result, error) {
	ch, unsubscribe := n.subscribe(id)
	defer unsubscribe()
	for {
		r, ok, err := n.Result(id)
		if err != nil {
			return r, err
		}
		if !ok {
			return r, fmt.Errorf("no command %s", id)
		}
		if Final(r.Status) {
			return r, nil
		}
		if progress != nil {
			progress(r)
		}
		if n.serving.Load() {
			select {
			case <-ch:
			case <-ctx.Done():
				return r, ctx.Err()
			case <-time.After(n.waitRecheck):
			}
			continue
		}
		// The caller's deadline is checked before each step: a `run --wait` through the
		// control socket expects its answer promptly once its timeout has passed.
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		if err := n.Maintain(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("maintenance failed", "op", "maintain", "err", err)
		}
		if ctx.Err() != nil {
			r, _, _ = n.Result(id)
			return r, ctx.Err()
		}
		if _, err := n.Pump(ctx, true, n.waitBound()); err != nil {
			if ctx.Err() != nil {
				r, _, _ = n.Result(id)
				return r, ctx.Err()
			}
			return r, err
		}
	}
}

// waitBound is pumpWait, shortened so that an outbox item due for another try is not held up
// by a quiet mailbox (a controller without an agent has no other loop that flushes).
func (n *Node) waitBound() time.Duration {
	d := n.pumpWait()
	_ = n.store.View(func(tx *keystore.Tx) error {
		items, err := tx.Outbox()
		for _, it := range items {
			d = min(d, max(time.Until(it.NextAttempt), 50*time.Millisecond))
		}
		return err
	})
	return d
}

// pumpWait bounds one blocking mailbox read so retries are not held up by a quiet mailbox.
func (n *Node) pumpWait() time.Duration {
	return min(30*time.Second, max(n.opts.RetryAfter, 200*time.Millisecond))
}

// subscribe returns a channel that notify signals when id's result becomes final, and the
// function that forgets it.
func (n *Node) subscribe(id session.CommandID) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.waitMu.Lock()
	n.waiters[id] = append(n.waiters[id], ch)
	n.waitMu.Unlock()
	return ch, func() {
		n.waitMu.Lock()
		defer n.waitMu.Unlock()
		n.waiters[id] = slices.DeleteFunc(n.waiters[id], func(c chan struct{}) bool { return c == ch })
		if len(n.waiters[id]) == 0 {
			delete(n.waiters, id)
		}
	}
}

func (n *Node) notify(ids ...session.CommandID) {
	n.waitMu.Lock()
	defer n.waitMu.Unlock()
	for _, id := range ids {
		for _, ch := range n.waiters[id] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
