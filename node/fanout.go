package node

import (
	"context"
	"slices"
	"time"

	"github.com/sealpost/sealpost/session"
)

// Fan-out: one command to many peers is SubmitMany, then WaitMany for the answers. The answers
// come in one by one over minutes or days; WaitMany reports each change through progress and
// returns when every command is final or the caller gives up (its ctx), with what came in.

// allFinal reports whether every result is final (a missing one counts: it will not change).
func allFinal(rs []Result) bool {
	return !slices.ContainsFunc(rs, func(r Result) bool { return !Final(r.Status) })
}

// WaitMany blocks until every command in ids has a final result, or ctx ends; then it returns
// the last results it read (in the order of ids) and ctx's error. It is Wait for many ids: one
// channel subscribed to all of them, and without an agent serving this node it reads the
// mailbox itself. progress, if not nil, is called with the results each time it looks while
// some are not final.
func (n *Node) WaitMany(ctx context.Context, ids []CommandID, progress func([]Result)) ([]Result, error) {
	ch, unsubscribe := n.subscribeMany(ids)
	defer unsubscribe()
	var last []Result
	for {
		rs, err := n.ResultsOf(ctx, ids)
		if err != nil {
			return last, err
		}
		last = rs
		if allFinal(rs) {
			return rs, nil
		}
		if progress != nil {
			progress(rs)
		}
		if n.serving.Load() {
			select {
			case <-ch:
			case <-ctx.Done():
				return n.lastResults(ids, last), ctx.Err()
			case <-time.After(n.waitRecheck):
			}
			continue
		}
		if ctx.Err() != nil {
			return last, ctx.Err()
		}
		if err := n.Maintain(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("maintenance failed", "op", "maintain", "err", err)
		}
		if ctx.Err() != nil {
			return n.lastResults(ids, last), ctx.Err()
		}
		if _, err := n.Pump(ctx, true, n.waitBound()); err != nil {
			if ctx.Err() != nil {
				return n.lastResults(ids, last), ctx.Err()
			}
			return last, err
		}
	}
}

// lastResults reads the results once more after ctx ended (the state is local: reading it
// does not wait on anything ctx guards), and falls back to last when that fails.
func (n *Node) lastResults(ids []CommandID, last []Result) []Result {
	if rs, err := n.ResultsOf(context.Background(), ids); err == nil {
		return rs
	}
	return last
}

// subscribeMany is subscribe for many ids with one channel: notify signals it when any of
// them becomes final.
func (n *Node) subscribeMany(ids []session.CommandID) (chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n.waitMu.Lock()
	for _, id := range ids {
		n.waiters[id] = append(n.waiters[id], ch)
	}
	n.waitMu.Unlock()
	return ch, func() {
		n.waitMu.Lock()
		defer n.waitMu.Unlock()
		for _, id := range ids {
			n.waiters[id] = slices.DeleteFunc(n.waiters[id], func(c chan struct{}) bool { return c == ch })
			if len(n.waiters[id]) == 0 {
				delete(n.waiters, id)
			}
		}
	}
}

// clientPollEvery is how often Client.WaitMany asks the agent for the results.
var clientPollEvery = 250 * time.Millisecond

// WaitMany asks the agent for the results of ids every clientPollEvery until all are final or
// ctx ends (see Node.WaitMany). The agent reads the mailbox; polling needs no control operation
// of its own, and a poll costs the agent one read of its state.
func (cl *Client) WaitMany(ctx context.Context, ids []CommandID, progress func([]Result)) ([]Result, error) {
	var last []Result
	t := time.NewTicker(clientPollEvery)
	defer t.Stop()
	for {
		rs, err := cl.ResultsOf(ctx, ids)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, err
		}
		last = rs
		if allFinal(rs) {
			return rs, nil
		}
		if progress != nil {
			progress(rs)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-t.C:
		}
	}
}
