package node

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sealpost/sealpost/keystore"
)

// Processed mail is spent: its state is committed, and a copy of it arriving again is answered
// from the ledger. The agent keeps it for a while (to read when something looks wrong), then
// deletes it, so that a mailbox with a quota does not fill up and stop taking commands.

// DefaultKeepProcessed is how long processed mail is kept when Options.KeepProcessed is zero.
const DefaultKeepProcessed = 30 * 24 * time.Hour

// pruneEvery is how often the agent looks for processed mail to delete. The time of the last
// look is kept in the state, so an agent run by cron with --once looks once a day too.
const pruneEvery = 24 * time.Hour

// pruneProcessed deletes processed mail older than the keep time when the last look was
// pruneEvery ago or more. A failure is logged and the next look is a day later: the mail stays
// meanwhile, which costs only space.
func (n *Node) pruneProcessed(ctx context.Context) {
	keep := n.opts.KeepProcessed
	if keep < 0 {
		return
	}
	if keep == 0 {
		keep = DefaultKeepProcessed
	}
	now := n.now()
	// Serve calls this every round: the state is read only for this process's first look (an
	// agent run by cron with --once has no other memory of the last one); later rounds go by
	// n.lastPrune.
	last := n.lastPrune
	if last.IsZero() {
		if err := n.store.View(func(tx *keystore.Tx) error {
			var err error
			last, _, err = tx.LastPrune()
			return err
		}); err != nil {
			n.log.Warn("could not read when processed mail was last pruned", "op", "prune", "err", err)
		}
		n.lastPrune = last
	}
	if now.Sub(last) < pruneEvery && !last.After(now) {
		return
	}
	tr, err := n.transport()
	if err != nil {
		return // Pump reports it
	}
	before := now.Add(-keep)
	count, err := tr.Prune(ctx, before)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		n.log.Warn("could not delete old processed mail; will try again in a day", "op", "prune", "err", err)
	} else {
		n.log.Info("looked for old processed mail", "op", "prune", "deleted", count, "arrived_before", before.Format(time.DateOnly))
	}
	n.lastPrune = now
	if err := n.update(func(tx *keystore.Tx, _ TxStore) error { return tx.PutLastPrune(now) }); err != nil {
		n.log.Warn("could not record the prune time", "op", "prune", "err", err)
	}
}

// DefaultKeepResults is how long finished commands' results are kept when Options.KeepResults
// is zero.
const DefaultKeepResults = 90 * 24 * time.Hour

// resultsPrunedPerCommand bounds the results deleted in the transaction that records a new
// command: a few more than one, so that the history shrinks back to the retention however it
// grew, without one submission paying for a large backlog at once.
const resultsPrunedPerCommand = 8

// pruneResults deletes up to limit results of commands that finished more than the keep time
// ago (KeepResults), oldest first, in tx. Results still waiting for an answer are kept however
// old: their commands may still be answered.
func (n *Node) pruneResults(tx *keystore.Tx, limit int) (int, error) {
	keep := n.cfg.KeepResults
	if keep < 0 {
		return 0, nil
	}
	if keep == 0 {
		keep = DefaultKeepResults
	}
	return tx.PruneResults(n.now().Add(-keep), limit)
}

// storeKeepResults records Options.KeepResults, when given, in the stored settings, so that
// the retention an agent was started with holds for every process on this state.
func (n *Node) storeKeepResults() error {
	if n.opts.KeepResults == 0 || n.opts.KeepResults == n.cfg.KeepResults {
		return nil
	}
	n.cfg.KeepResults = n.opts.KeepResults
	b, err := json.Marshal(n.cfg)
	if err != nil {
		return err
	}
	return n.store.Update(func(tx *keystore.Tx) error { return tx.PutMailboxSettings(b) })
}
