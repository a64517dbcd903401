package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/node"
)

// agentStartWait bounds how long a command keeps trying the control socket after finding the
// state locked: an agent takes the state lock first and opens its socket a moment later.
var agentStartWait = 5 * time.Second

// stateLockTimeout is how long opening the state waits for its lock; zero is node's default
// (2 s). Tests shorten it.
var stateLockTimeout time.Duration

// dialRetried, when set (tests), is called each time reaching a starting agent failed and is
// about to be tried again.
var dialRetried func()

// openAPI reaches this node: through the running agent's control socket when there is one, else
// by opening the state directly. close releases what was opened. A socket that another user
// could have put there is refused (node.UnsafeSocketError), never worked around by opening the
// state instead.
func openAPI(ctx context.Context, g *globals) (api node.API, close func(), err error) {
	c, err := node.DialControl(g.state)
	if err == nil {
		return c, func() {}, nil
	}
	var unsafe *node.UnsafeSocketError
	if errors.As(err, &unsafe) {
		return nil, nil, err
	}
	opts := g.nodeOptions()
	opts.LockTimeout = stateLockTimeout
	n, err := node.Open(opts)
	var inUse *node.StateInUseError
	if errors.As(err, &inUse) {
		// Perhaps an agent that is starting: it has the lock and is about to listen.
		c, derr := dialAgent(ctx, g.state, time.Now().Add(agentStartWait))
		if derr == nil {
			return c, func() {}, nil
		}
		if errors.As(derr, &unsafe) {
			return nil, nil, derr
		}
		return nil, nil, fmt.Errorf("%w\nAnother sealpost process holds this state and no agent answered on its control socket within %s: a `run --wait` still waiting, or an agent that is stuck; wait for it or stop it", err, agentStartWait)
	}
	if err != nil {
		return nil, nil, err
	}
	return n, func() { n.Close() }, nil
}

// dialAgent tries the control socket until it answers or deadline passes, with a backoff from
// 10 ms to 250 ms.
func dialAgent(ctx context.Context, dir string, deadline time.Time) (*node.Client, error) {
	wait := 10 * time.Millisecond
	for {
		c, err := node.DialControl(dir)
		var unsafe *node.UnsafeSocketError
		if err == nil || errors.As(err, &unsafe) || !time.Now().Add(wait).Before(deadline) {
			return c, err
		}
		if dialRetried != nil {
			dialRetried()
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// parseAndOpen parses the flags of a command that takes no arguments and reaches the node (see
// openAPI).
func parseAndOpen(ctx context.Context, g *globals, fs *flag.FlagSet, args []string) (api node.API, close func(), err error) {
	if _, err := parseNoArgs(fs, args); err != nil {
		return nil, nil, err
	}
	return openAPI(ctx, g)
}
