package node

import (
	"context"
	"errors"
	"sync"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// The executor runs the commands the protocol cleared, each after its Executing record committed
// (docs/PROTOCOL.md section 11): one at a time per peer, in the order their mail arrived, and
// commands of up to Options.MaxParallel peers at once, so that one peer's long command holds up no
// other peer's commands or pings, and the agent goes on reading and answering mail while commands
// run (THREATS row 40). The exactly-once records are as before: a command runs only after its
// Executing record committed, its answer commits as Done, and one left Executing by a crash is
// answered outcome-unknown at the next start and never run again (Recover skips the ones this
// executor still holds).

// DefaultMaxParallel is how many peers' commands run at once when Options.MaxParallel is zero.
const DefaultMaxParallel = 4

// errAgentStopped is the cause given to running commands when the agent stops: they are ended,
// with every process they started, and that is recorded as their result.
var errAgentStopped = errors.New("the agent stopped while the command ran")

type ledgerKey struct {
	peer session.Fingerprint
	cmd  session.CommandID
}

type executor struct {
	n     *Node
	slots chan struct{} // one token per command running

	mu      sync.Mutex
	ctx     context.Context // the commands' context: it ends when the agent stops
	cancel  context.CancelCauseFunc
	queues  map[session.Fingerprint][]*execution // per peer, oldest first; the head may be running
	held    map[ledgerKey]bool                   // every command queued or running
	waiting int                                  // workers waiting for a slot
	idle    *sync.Cond                           // broadcast when held empties
}

func newExecutor(n *Node, parallel int) *executor {
	if parallel <= 0 {
		parallel = DefaultMaxParallel
	}
	x := &executor{n: n, slots: make(chan struct{}, parallel),
		queues: map[session.Fingerprint][]*execution{}, held: map[ledgerKey]bool{}}
	x.idle = sync.NewCond(&x.mu)
	x.ctx, x.cancel = context.WithCancelCause(context.Background())
	return x
}

// dispatch queues a cleared command behind the peer's earlier ones.
func (x *executor) dispatch(e *execution) {
	x.mu.Lock()
	defer x.mu.Unlock()
	fp := e.ticket.Peer
	x.held[ledgerKey{fp, e.ticket.Command}] = true
	x.queues[fp] = append(x.queues[fp], e)
	if len(x.queues[fp]) == 1 {
		go x.work(fp) // no worker for this peer yet
	}
}

// work runs the peer's queue until it is empty, one command at a time.
func (x *executor) work(fp session.Fingerprint) {
	for {
		x.mu.Lock()
		e := x.queues[fp][0]
		x.mu.Unlock()

		if (!e.started || e.resumed) && !e.answered {
			x.mu.Lock()
			x.waiting++
			x.mu.Unlock()
			x.slots <- struct{}{} // a started one holds the slot taken for it
			x.mu.Lock()
			x.waiting--
			x.mu.Unlock()
		}
		x.mu.Lock()
		ctx := x.ctx
		// The next command of the peer's may take its turn in the transaction that records this
		// one's answer, keeping this slot, unless another peer waits for a slot: then it is
		// handed on, so that one peer's long queue does not hold a slot for good.
		var next *execution
		if len(x.queues[fp]) > 1 && x.waiting == 0 {
			next = x.queues[fp][1]
		}
		x.mu.Unlock()
		started := true
		if !e.answered {
			started = x.run(ctx, e, next)
		}
		// The slot this command held (none if it was answered without a turn) goes back,
		// unless the next command took its turn in this one's transaction and keeps it.
		if !e.answered && (next == nil || !next.started) {
			<-x.slots
		}

		x.mu.Lock()
		q := x.queues[fp][1:]
		if !started {
			// Keep the peer's order: what waits behind it is dispatched again with it.
			for _, w := range q {
				delete(x.held, ledgerKey{fp, w.ticket.Command})
			}
			q = nil
		}
		delete(x.held, ledgerKey{fp, e.ticket.Command})
		if len(q) == 0 {
			delete(x.queues, fp)
		} else {
			x.queues[fp] = q
		}
		if len(x.held) == 0 {
			x.idle.Broadcast()
		}
		x.mu.Unlock()
		if len(q) == 0 {
			return
		}
	}
}

// run starts and runs one command; false means it could not even be started (the state store's
// trouble), and the peer's queue is to stop so that its order is kept (Recover dispatches the
// rest again, in order).
func (x *executor) run(ctx context.Context, e, next *execution) bool {
	n := x.n
	if e.started {
		x.execute(ctx, e, next)
		return true
	}
	if ctx.Err() != nil {
		// The agent is stopping: the command has not started, so it stays Accepted and runs
		// after the next start, instead of being answered as if it had failed.
		n.unsettled.Store(true)
		return true
	}
	// At its turn the command is checked again, in the transaction that records its start
	// (Accepted -> Executing): its peer may have been removed, or its allow list changed, or its
	// not-after passed while it waited. A crash before that commit leaves the command to run
	// after the restart; a crash after it, an outcome-unknown answer.
	var (
		run *execution
		evs []Event
	)
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		var (
			pkg []byte
			err error
		)
		run, evs, pkg, err = n.atTurn(tx, st, e.ticket, e.raw)
		if err != nil {
			return err
		}
		if run == nil {
			if pkg == nil {
				return nil
			}
			return enqueue(tx, e.peer.Address, pkg)
		}
		return n.eng.Start(st, e.ticket)
	})
	if err != nil {
		n.unsettled.Store(true) // still Accepted: the next maintenance round dispatches it again
		n.log.Error("could not start a command; it is tried again", "op", "execute", "peer", e.peer.Name, "cmd_id", e.ticket.Command.String(), "err", err)
		return false
	}
	for _, ev := range evs {
		n.emit(ev)
	}
	if run == nil {
		if err := n.flushSoon(context.WithoutCancel(ctx)); err != nil {
			n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
		}
		return true
	}
	x.execute(ctx, run, next)
	return true
}

// execute runs a command recorded Executing and records its answer (and next's turn, see
// Node.execute).
func (x *executor) execute(ctx context.Context, e, next *execution) {
	n := x.n
	if n.beforeExecute != nil && n.beforeExecute() {
		return // tests: the process "died" between the Executing commit and the run
	}
	if err := n.execute(ctx, e, next); err != nil {
		n.log.Error("recording a command's answer failed; it is answered outcome-unknown", "op", "execute", "peer", e.peer.Name, "cmd_id", e.ticket.Command.String(), "err", err)
	}
}

// reserve takes a slot for a command of peer fp that may start at once: none of the peer's is
// queued or running, and a slot is free. Only the receiving goroutine calls it, between the
// transaction that accepts the command and its dispatch, so nothing of fp's can come between.
func (x *executor) reserve(fp session.Fingerprint) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.queues[fp]) > 0 {
		return false
	}
	select {
	case x.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// unreserve gives back a slot reserve took for a command that did not start after all.
func (x *executor) unreserve() { <-x.slots }

// holds reports whether the command is queued or running here.
func (x *executor) holds(peer session.Fingerprint, cmd session.CommandID) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.held[ledgerKey{peer, cmd}]
}

// wait returns when no command is queued or running. When ctx ends first, the running commands
// are ended (that is their result) and wait still waits for their answers to be recorded.
func (x *executor) wait(ctx context.Context) {
	x.mu.Lock()
	current := x.ctx
	x.mu.Unlock()
	// Only the commands of this wait are ended: if ctx ends after drain renewed the context, the
	// commands that come later are none of this wait's business.
	stop := context.AfterFunc(ctx, func() { x.end(current, errAgentStopped) })
	defer stop()
	x.drain()
}

// stop ends every running command and waits for their answers to be recorded; commands still
// queued behind them are answered the same way, without running.
func (x *executor) stop() {
	x.mu.Lock()
	current := x.ctx
	x.mu.Unlock()
	x.end(current, errAgentStopped)
	x.drain()
}

// end ends the commands running under ctx, if it is still the current context.
func (x *executor) end(ctx context.Context, cause error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.ctx == ctx {
		x.cancel(cause)
	}
}

// drain waits until nothing is held, then gives the commands that come later a fresh context if
// the last one was ended (a node may serve again after it stopped).
func (x *executor) drain() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for len(x.held) > 0 {
		x.idle.Wait()
	}
	if x.ctx.Err() != nil {
		x.ctx, x.cancel = context.WithCancelCause(context.Background())
	}
}
