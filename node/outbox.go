package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// The outbox: every package to send is first committed to the state with the change that caused
// it, then mailed. A failed send stays queued and is retried with backoff, so a crash or an SMTP
// outage delays mail but never loses it.

const (
	outboxBase = 2 * time.Second
	outboxMax  = 15 * time.Minute
)

func enqueue(tx *keystore.Tx, to string, pkg []byte) error {
	_, err := tx.Enqueue(keystore.OutboxItem{To: to, Package: pkg})
	return err
}

// Flush sends every due outbox item. It returns the first error of a send that failed; the item
// stays queued with its next attempt pushed back. A mail the server refused for good (a size
// limit, say) leaves the outbox and is logged, and the command it belongs to ends instead of being
// retried for ever (see undeliverable).
func (n *Node) Flush(ctx context.Context) error {
	n.sendMu.Lock()
	defer n.sendMu.Unlock()
	var due []keystore.OutboxItem
	if err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		if due, err = tx.DueOutbox(n.now()); err != nil {
			return err
		}
		due, err = n.mailable(tx, due) // what waits to be carried stays (carry.go)
		return err
	}); err != nil {
		return err
	}
	if len(due) == 0 {
		return nil
	}
	tr, err := n.transport()
	if err != nil {
		n.sent(err)
		return err
	}
	var (
		first error
		done  []uint64 // mailed, to leave the outbox together (deleteSent)
	)
	// Mailed items leave the outbox in one transaction per sentBatch (and at the end of the
	// round), not one each: a commit costs a sync, and the serving loop waits for the store's one
	// writer. A crash before that commit mails them again: the peer takes duplicates (sequence
	// numbers seen, answers from the ledger), as it does after any crash between send and delete.
	deleteSent := func() error {
		if len(done) == 0 {
			return nil
		}
		err := n.store.Update(func(tx *keystore.Tx) error {
			for _, id := range done {
				// One gone meanwhile (its peer removed) is no reason to keep the others.
				if err := tx.DeleteOutbox(id); err != nil && !errors.Is(err, keystore.ErrNotFound) {
					return err
				}
			}
			return nil
		})
		done = done[:0]
		return err
	}
	defer func() {
		if err := deleteSent(); err != nil && first == nil {
			n.log.Warn("mailed mail not cleared from the outbox; it is mailed again", "op", "send", "err", err)
		}
	}()
	// Up to MailConfig.SMTPConnections mails are submitted side by side (the transport's bound),
	// so that a backlog of answers is not held to one server sync at a time. Mail to one peer
	// keeps its order, answers aside (see sendOrder); the outcomes are handled here, one at a
	// time, in the order they come.
	type sendOutcome struct {
		it  keystore.OutboxItem
		err error
	}
	outcomes := make(chan sendOutcome)
	atOnce := cmp.Or(n.cfg.SMTPConnections, mailbox.DefaultSMTPConnections)
	inflight := 0
	busy := map[string]int{} // sendOrder key -> mails under way
	next, stopped := 0, false
	serverDown := false // a send met server trouble: what fails after it is not counted again
	var fatal error     // a commit failed: send no more, and return it
	for {
		for !stopped && next < len(due) && inflight < atOnce && ctx.Err() == nil {
			it := due[next]
			k := sendOrder(it)
			if k != "" && busy[k] > 0 {
				break // the mail before it to the same peer is still under way
			}
			next++
			busy[k]++
			inflight++
			go func() { outcomes <- sendOutcome{it, tr.Send(ctx, it.To, it.Package)} }()
		}
		if inflight == 0 {
			break
		}
		o := <-outcomes
		inflight--
		busy[sendOrder(o.it)]--
		if fatal != nil {
			if o.err == nil {
				done = append(done, o.it.ID)
			}
			continue
		}
		it, err := o.it, o.err
		if err != nil && ctx.Err() != nil {
			// Cut off by the caller, not refused by the server: nothing to record, and a
			// caller past its deadline is not kept waiting for a commit.
			if first == nil {
				first = err
			}
			stopped = true
			continue
		}
		var se *mailbox.SendError
		permanent := errors.As(err, &se) && !se.Temporary
		if permanent || err == nil {
			n.sent(nil) // the server answered: a refusal of this mail says nothing of the server
		} else if ctx.Err() == nil && !serverDown {
			n.sent(err)
		}
		if isChunk(it.Package) && (err == nil || permanent) {
			n.chunks.add(-1) // the cutter may cut the next one
		}
		if err == nil {
			// An answer, or the next command, is likely soon: the mailbox wait polls (serve.go).
			expectMail(tr)
			if n.opts.Events != nil { // naming the peer reads every peer record: only for a reader
				n.emit(Event{Kind: EventSent, Peer: n.peerLabel(it.To), Package: packageType(it.Package), Bytes: len(it.Package)})
			}
			if done = append(done, it.ID); len(done) >= sentBatch {
				if err := deleteSent(); err != nil {
					fatal, stopped = err, true
				}
			}
			continue
		}
		n.log.Warn("send failed", "op", "send", "to", it.To, "attempt", it.Attempts+1, "permanent", permanent, "err", err)
		var failed []session.CommandID
		if permanent {
			// Settle the command first; if that fails the mail still leaves the outbox: a
			// refused mail kept there would be refused again at every round, blocking the rest.
			if serr := n.update(func(tx *keystore.Tx, st TxStore) error {
				var err error
				failed, err = n.undeliverable(tx, st, it.Package, se)
				return err
			}); serr != nil {
				n.log.Error("could not settle the command of a refused mail; dropping the mail", "op", "send", "err", serr)
				failed = nil
			}
		}
		uerr := n.update(func(tx *keystore.Tx, st TxStore) error {
			if permanent {
				return tx.DeleteOutbox(it.ID)
			}
			it.Attempts++
			it.LastError = err.Error()
			it.NextAttempt = n.now().Add(backoff(outboxBase, outboxMax, it.Attempts))
			return tx.PutOutbox(it)
		})
		if uerr != nil {
			fatal, stopped = uerr, true
			continue
		}
		n.notify(failed...)
		if first == nil {
			first = err
		}
		if ctx.Err() != nil || serverTrouble(err) {
			// The server (not this mail) is the trouble: the rest would meet the same, each
			// with a login of its own, and count as many refusals. They wait for the next round.
			stopped, serverDown = true, serverDown || serverTrouble(err)
		}
	}
	if fatal != nil {
		return fatal
	}
	return first
}

// sendOrder is the key that keeps mail in order: mails with the same key go out one after the
// other, in the order they were queued. Mail to one peer keeps its order (commands run in the
// order they arrive, and a handshake reply should not pass what went before it), except answers
// (RESPONSE and ERROR): the requester matches each by its command, so their order is nobody's
// concern, and a backlog of them goes out side by side. "" is no key.
func sendOrder(it keystore.OutboxItem) string {
	if len(it.Package) > 5 {
		switch session.Type(it.Package[5]) {
		case session.TypeResponse, session.TypeError, session.TypeChunk:
			return "" // chunks too: the receiver places each by its index
		}
	}
	return it.To
}

func isChunk(pkg []byte) bool { return len(pkg) > 5 && session.Type(pkg[5]) == session.TypeChunk }

// sentBatch bounds how many mailed items wait for one commit to leave the outbox, and so how
// many are mailed again after a crash.
const sentBatch = 32

// backoff doubles base per attempt up to max.
func backoff(base, max time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}

// peerLabel names an address by its peer name when one is pinned.
func (n *Node) peerLabel(addr string) string {
	name := addr
	_ = n.store.View(func(tx *keystore.Tx) error {
		peers, err := tx.Peers()
		for _, p := range peers {
			if p.Address == addr {
				name = p.Name
			}
		}
		return err
	})
	return name
}

// undeliverable settles the command behind a package the mail server refused for good, just
// before it leaves the outbox, and returns the commands whose result it finished.
//   - Our RESPONSE, refused for its size: the command ran and must not run again, but this answer
//     can never arrive. The ledger's response becomes the same result without its output, saying
//     why; the requester's next retry gets that small answer, and its command ends "failed" with
//     the reason. Other refusals (unknown recipient, quota) leave the ledger alone: a smaller mail
//     would fare no better, and a later retry may get the whole answer through.
//   - Our COMMAND, refused at its first transmission: it never left, so it ends "failed" here
//     with the server's answer. A refused retry changes nothing: an earlier transmission may
//     have arrived and its answer may still come.
//
// Other packages (pairing, handshake, errors) are small; their loss is handled as any lost mail.
func (n *Node) undeliverable(tx *keystore.Tx, st TxStore, pkg []byte, se *mailbox.SendError) ([]session.CommandID, error) {
	p, err := session.Parse(pkg)
	if err != nil {
		return nil, nil // not ours to settle (cannot happen: we sealed it)
	}
	switch p.Type {
	case session.TypeResponse:
		if !se.TooLarge() {
			return nil, nil
		}
		le, ok, err := st.Ledger(p.Recipient, p.Command)
		if err != nil || !ok || le.Payload == nil {
			return nil, err
		}
		res, err := decodeResult(le.Payload)
		if err != nil || res.Undelivered != "" {
			return nil, err // already without its output
		}
		kept := res
		kept.Stdout, kept.Stderr = nil, nil
		kept.Undelivered = clip(fmt.Sprintf("the result (%d bytes of output) was refused by the mail server for its size: %v", len(res.Stdout)+len(res.Stderr), se), commands.MaxErrorBytes)
		frame, err := encodeResult(kept)
		if err != nil {
			return nil, err
		}
		n.log.Warn("result too large to mail; the requester's retry gets it without the output", "op", "send", "command", p.Command, "err", se)
		return nil, n.eng.ReplaceResponse(st, p.Recipient, p.Command, frame)
	case session.TypeChunk:
		// A chunk the server refuses for good cannot reach the requester by mail: the stream
		// is broken. Its spool goes; the record stays to tell the requester why when it asks
		// for the chunk (stream_ask.go).
		rec, ok, err := tx.StreamOut(p.Recipient, p.Command)
		if err != nil || !ok || rec.Broken != "" {
			return nil, err
		}
		why := "a chunk of the output was refused by the mail server"
		if se.TooLarge() {
			why += " for its size"
		}
		rec.Broken = clip(fmt.Sprintf("%s: %v", why, se), commands.MaxErrorBytes)
		n.removeStreamOut(rec.Peer, rec.Command)
		n.log.Warn("a chunk of a streamed output was refused for good; the requester learns why when it asks for it", "op", "send", "command", p.Command, "err", se)
		return nil, tx.PutStreamOut(rec)
	case session.TypeCommand:
		pd, ok, err := st.Pending(p.Command)
		if err != nil || !ok || len(pd.Sends) != 1 {
			return nil, err
		}
		if r, ok, err := tx.Result(p.Command); err != nil || ok && Final(r.Status) {
			return nil, err
		}
		if err := st.DeletePending(p.Command); err != nil {
			return nil, err
		}
		err = n.recordResult(tx, p.Command, func(r *keystore.Result) {
			r.Status, r.ExitCode = StatusFailed, -1
			r.Error = clip(fmt.Sprintf("the mail server refused the command, so it was not sent: %v", se), commands.MaxErrorBytes)
		})
		return []session.CommandID{p.Command}, err
	}
	return nil, nil
}

// clip makes s valid UTF-8 of at most max bytes (a server's reply text is neither, necessarily).
func clip(s string, max int) string {
	s = strings.ToValidUTF8(s, "?")
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
