package node

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/mailbox"
)

// Serve is the agent: it answers commands from peers, delivers answers to commands this node
// sent, retries what is overdue, and keeps going through mail-server trouble with backoff. With
// once it handles what is in the mailbox now and returns.
func (n *Node) Serve(ctx context.Context, once bool) error {
	if !once {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		now := n.now()
		n.since.Store(&now)
		n.giveUp.Store(&cancel)
		defer n.giveUp.Store(nil)
		defer n.since.Store(nil)
		n.serving.Store(true)
		defer n.serving.Store(false)
		defer n.startSender(ctx)()
		// Stops before the sender's last flush, which mails what it fired last.
		defer n.startScheduler(ctx)()
		// Runs before the sender's last flush: the commands still running are ended with the
		// agent (THREATS row 39), and their answers are recorded and queued for that flush.
		defer n.exec.stop()
	}
	// What a previous agent's commands left running when it died ends now (THREATS row 39).
	if k, err := commands.KillLeftovers(); err != nil {
		n.log.Warn("could not end what an earlier agent's commands left running", "op", "serve", "err", err)
	} else if k > 0 {
		n.log.Warn("ended processes that commands of an earlier agent left running", "op", "serve", "count", k)
	}
	n.log.Info("a command's processes end with it", "op", "serve", "reaping", n.reg.Reaping())
	// Before the first mail: is the state older than the mailbox (docs/PROTOCOL.md section 16)?
	if _, err := n.checkProcessed(ctx); err != nil {
		return err
	}
	failures := 0
	var maintained time.Time
	for {
		// Maintenance walks every peer's pending commands and sessions in a write transaction:
		// with a large fleet, once per mail batch of a fan-out's answers cost more than the
		// fan-out itself (BENCHMARKS.md, "A controller with 1,000 peers"). Retries are due in
		// minutes, so it runs at most every maintainEvery.
		if now := n.now(); once || maintained.IsZero() || now.Sub(maintained) >= n.maintainEvery() || now.Before(maintained) {
			maintained = now
			if err := n.Maintain(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("maintenance failed", "op", "maintain", "err", err)
			}
		}
		n.pruneProcessed(ctx)
		nextReport := n.sendReports(ctx) // the status reports due now go out (report.go)
		if once {
			n.runSchedulesOnce(ctx)
			_, err := n.Pump(ctx, false, 0)
			n.polled(err)
			// The pushes this round joined are placed, and answered, before it ends: the
			// process exits next, and a copy cut at every round would never finish.
			n.placers.wait()
			return err
		}
		// Wake at least every pumpWait for retries even when no mail comes, and when the next
		// status report is due.
		_, err := n.Pump(ctx, true, max(min(n.pumpWait(), nextReport), time.Millisecond))
		if ctx.Err() != nil {
			return stopCause(ctx)
		}
		if perr := n.polled(err); perr != nil {
			return perr
		}
		if err != nil {
			failures++
			d := backoff(n.serveBackoff, 30*time.Second, failures)
			n.log.Warn(troubleLine("imap", n.cfg.IMAP, err)+"; retrying", "op", "serve", "in", d, "err", err)
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return stopCause(ctx)
			}
			continue
		}
		failures = 0
	}
}

// startSender runs the agent's sender until the returned stop is called: it mails the outbox
// whenever flushSoon kicks it, so that SMTP (a millisecond or more per mail on a kept connection,
// several on a new one) overlaps with reading, checking and running the next mail instead of adding
// to it. The outbox is durable, so the sender only ever delays mail. stop makes one last attempt,
// bounded by senderDrain, to mail what is due, then waits for the sender to end.
func (n *Node) startSender(ctx context.Context) (stop func()) {
	kick := make(chan struct{}, 1)
	n.kick.Store(&kick)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-kick:
			case <-ctx.Done():
				drain, cancel := context.WithTimeout(context.WithoutCancel(ctx), senderDrain)
				defer cancel()
				if err := n.Flush(drain); err != nil {
					n.log.Warn("outbox not flushed before stopping; it is sent at the next start", "op", "flush", "err", err)
				}
				return
			}
			if err := n.Flush(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
			}
		}
	}()
	return func() {
		n.kick.Store(nil)
		cancel()
		<-done
	}
}

// maintainEvery is how often the serving loop runs Maintain: a fraction of the retry interval,
// at most maintainMax.
func (n *Node) maintainEvery() time.Duration {
	return min(maintainMax, n.opts.RetryAfter/4)
}

const maintainMax = 5 * time.Second

// senderDrain bounds the last flush when the agent stops.
const senderDrain = 3 * time.Second

// flushSoon mails the outbox: through the sender while Serve runs (so that the caller does not
// wait on a flush under way), else at once, returning its error.
func (n *Node) flushSoon(ctx context.Context) error {
	if k := n.kick.Load(); k != nil {
		select {
		case *k <- struct{}{}:
		default: // a kick is pending already; that flush will see this mail too
		}
		return nil
	}
	return n.Flush(ctx)
}

// stopCause is what Serve returns when its context ended: nil for a stop from outside, the
// *PermanentError the sender gave up with otherwise.
func stopCause(ctx context.Context) error {
	var pe *PermanentError
	if errors.As(context.Cause(ctx), &pe) {
		return pe
	}
	return nil
}

// polled records the outcome of one look at the inbox; it returns a *PermanentError when the
// agent should give up.
func (n *Node) polled(err error) error {
	if err == nil {
		n.health.ok("imap", n.now())
		return nil
	}
	if perr := n.health.failed("imap", err, n.now()); perr != nil {
		n.log.Error(troubleLine("imap", n.cfg.IMAP, err)+"; giving up", "op", "serve", "err", err)
		return perr
	}
	return nil
}

// sent records the outcome of one send; a permanent failure ends Serve.
func (n *Node) sent(err error) {
	if err == nil {
		n.health.ok("smtp", n.now())
		return
	}
	if perr := n.health.failed("smtp", err, n.now()); perr != nil {
		n.log.Error(troubleLine("smtp", n.cfg.SMTP, err)+"; giving up", "op", "send", "err", err)
		if c := n.giveUp.Load(); c != nil {
			(*c)(perr)
		}
	}
}

// troubleLine says in words what kind of trouble a server gives.
func troubleLine(role, addr string, err error) string {
	server := strings.ToUpper(role) + " server " + addr
	switch classify(err) {
	case ProblemSecret:
		return "no mailbox secret for " + server
	case ProblemLogin:
		return "cannot log in to " + server
	case ProblemConnect:
		return "cannot reach " + server
	case ProblemTLS:
		return "TLS with " + server + " failed"
	}
	return "trouble with " + server
}

// expectWindow is how long after this node mailed a package its mailbox wait polls eagerly for
// mail instead of idling (mailbox.IMAPSMTP.Expect): a command's answer is due, or, after an
// answer, the next command often follows at once (a person at a terminal, a script). Dovecot
// holds its IDLE notice of new mail for about 500 ms, which the eager wait spares each way of a
// round trip. A command that runs longer, or a next command that comes later, is noticed by
// IDLE again, 500 ms late at most. The cost is NOOPs to the IMAP server, only while the node
// waits for mail: never more than 20 a second, about 7 in the first second after the mail went
// out, 2 a second after that, none after the window: 25 for one mail and no answer (docs/
// BENCHMARKS.md, "One mail trip per answer").
const expectWindow = 10 * time.Second

// expecter is a transport whose wait can poll eagerly while mail is expected.
type expecter interface{ Expect(until time.Time) }

// expectMail tells tr, if it can poll eagerly, that mail is expected for expectWindow: called
// whenever a package was mailed.
func expectMail(tr mailbox.Transport) {
	if e, ok := tr.(expecter); ok {
		e.Expect(time.Now().Add(expectWindow))
	}
}
