package node

import (
	"context"
	"time"
)

// Serve is the agent: it answers commands from peers, delivers answers to commands this node
// sent, retries what is overdue, and keeps going through mail-server trouble with backoff. With
// once it handles what is in the mailbox now and returns.
func (n *Node) Serve(ctx context.Context, once bool) error {
	if !once {
		n.serving.Store(true)
		defer n.serving.Store(false)
	}
	failures := 0
	for {
		if err := n.Maintain(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("maintenance failed", "op", "maintain", "err", err)
		}
		if once {
			_, err := n.Pump(ctx, false, 0)
			return err
		}
		// Wake at least every pumpWait for retries even when no mail comes.
		_, err := n.Pump(ctx, true, n.pumpWait())
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			d := backoff(500*time.Millisecond, 30*time.Second, failures)
			n.log.Warn("mailbox trouble; retrying", "op", "serve", "in", d, "err", err)
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		failures = 0
	}
}
