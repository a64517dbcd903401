package node

import (
	"context"
	"errors"
	"time"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// markSent records one more transmission of a command (its result's Attempts and LastAttempt,
// which pace the resends) and that it is sent.
func (n *Node) markSent(tx *keystore.Tx, id session.CommandID) error {
	return n.recordResult(tx, id, func(r *keystore.Result) {
		r.Status, r.Attempts, r.LastAttempt = StatusSent, r.Attempts+1, n.now()
	})
}

// Maintain sends overdue commands again (with doubling intervals), restarts overdue handshakes,
// gives up on commands past their lifetime, and purges expired ledger entries.
func (n *Node) Maintain(ctx context.Context) error {
	now := n.now()
	if n.unsettled.Swap(false) {
		if err := n.Recover(ctx); err != nil {
			n.unsettled.Store(true)
			n.log.Warn("recovery of stuck commands failed; will retry", "op", "recover", "err", err)
		}
	}
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		if _, err := tx.PurgeLedger(now.Add(-session.LedgerRetention)); err != nil {
			return err
		}
		if err := n.expireQueued(tx, now); err != nil {
			return err
		}
		if err := n.askMissing(tx, st, now); err != nil {
			return err
		}
		if err := n.expireStreams(tx, now); err != nil {
			return err
		}
		peers, err := tx.Peers()
		if err != nil {
			return err
		}
		for _, peer := range peers {
			ids, err := tx.PendingOf(peer.Fingerprint)
			if err != nil {
				return err
			}
			for _, raw := range ids {
				id := session.CommandID(raw)
				p, ok, err := st.Pending(id)
				if err != nil || !ok {
					return err
				}
				if now.After(time.UnixMilli(p.NotAfter).Add(session.DefaultSkew)) {
					if err := st.DeletePending(id); err != nil {
						return err
					}
					if err := n.recordResult(tx, id, func(r *keystore.Result) { r.Status = StatusLocalExpired }); err != nil {
						return err
					}
					continue
				}
				r, _, err := tx.Result(id)
				if err != nil {
					return err
				}
				if now.Sub(r.LastAttempt) < backoff(n.opts.RetryAfter, 6*time.Hour, r.Attempts) {
					continue
				}
				if r.Attempts >= 3 {
					// Three transmissions without an answer: the peer may have lost the session
					// (a restored database, a lost rekey request). Open a new one alongside; the
					// pending commands go out again under it once it is confirmed.
					if err := n.ensureHandshake(tx, st, peer, false); err != nil {
						return err
					}
				}
				pkg, err := n.eng.Retry(st, id)
				if errors.Is(err, session.ErrNoSession) {
					if err := n.ensureHandshake(tx, st, peer, false); err != nil {
						return err
					}
					continue
				}
				if err != nil {
					return err
				}
				if err := n.markSent(tx, id); err != nil {
					return err
				}
				if err := enqueue(tx, peer.Address, pkg); err != nil {
					return err
				}
			}
			// A handshake nobody answered is started again.
			if err := n.handshakeOverdue(tx, st, peer); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	n.resumePushes(ctx)
	// The flags are set inside the transactions that record the work, so a look made just
	// before one committed may have taken a flag and missed it: this round looks anyway.
	n.resendWanted.Store(true)
	n.placeWanted.Store(true)
	n.afterMail(ctx)
	n.sweepSpoolIn()
	return n.flushSoon(ctx)
}

// expireQueued gives up on commands that waited for a session past their lifetime.
func (n *Node) expireQueued(tx *keystore.Tx, now time.Time) error {
	var expired []session.CommandID
	if err := tx.ForEachQueued(func(q keystore.QueuedCommand) error {
		if !q.NotAfter.After(now) {
			expired = append(expired, q.ID)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, id := range expired {
		if err := tx.DeleteQueued(id); err != nil {
			return err
		}
		if err := n.recordResult(tx, id, func(r *keystore.Result) {
			r.Status, r.Error = StatusLocalExpired, "no session with the peer before the command's lifetime ended"
		}); err != nil {
			return err
		}
	}
	return nil
}

// handshakeOverdue restarts a handshake nobody answered; ensureHandshake leaves a young one be.
func (n *Node) handshakeOverdue(tx *keystore.Tx, st TxStore, peer keystore.Peer) error {
	ids, err := st.SessionsOf(peer.Fingerprint)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if s, ok, err := st.Session(id); err != nil {
			return err
		} else if ok && s.Role == session.Initiator && s.Status == session.Initializing {
			return n.ensureHandshake(tx, st, peer, false)
		}
	}
	return nil
}
