package node

import (
	"context"
	"errors"
	"time"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
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
// stays queued with its next attempt pushed back. Permanent failures (the server refused the mail
// for good, such as a size limit) are dropped from the outbox and logged.
func (n *Node) Flush(ctx context.Context) error {
	n.sendMu.Lock()
	defer n.sendMu.Unlock()
	var due []keystore.OutboxItem
	if err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		due, err = tx.DueOutbox(n.now())
		return err
	}); err != nil {
		return err
	}
	if len(due) == 0 {
		return nil
	}
	tr, err := n.transport()
	if err != nil {
		return err
	}
	var first error
	for _, it := range due {
		err := tr.Send(ctx, it.To, it.Package)
		if err == nil {
			if n.opts.Events != nil { // naming the peer reads every peer record: only for a reader
				n.emit(Event{Kind: EventSent, Peer: n.peerLabel(it.To), Package: packageType(it.Package), Bytes: len(it.Package)})
			}
			if err := n.store.Update(func(tx *keystore.Tx) error { return tx.DeleteOutbox(it.ID) }); err != nil {
				return err
			}
			continue
		}
		var se *mailbox.SendError
		permanent := errors.As(err, &se) && !se.Temporary
		n.log.Warn("send failed", "op", "send", "to", it.To, "attempt", it.Attempts+1, "permanent", permanent, "err", err)
		uerr := n.store.Update(func(tx *keystore.Tx) error {
			if permanent {
				return tx.DeleteOutbox(it.ID)
			}
			it.Attempts++
			it.LastError = err.Error()
			it.NextAttempt = n.now().Add(backoff(outboxBase, outboxMax, it.Attempts))
			return tx.PutOutbox(it)
		})
		if uerr != nil {
			return uerr
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return first
}

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
