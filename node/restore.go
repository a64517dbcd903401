package node

import (
	"context"
	"fmt"
	"time"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// A state put back from an older copy (docs/PROTOCOL.md section 16) is detected by the state store
// (its sidecar and its witness outside the state directory, keystore.RollbackInfo) when the node
// opens, and by the agent at start from the processed folder on the mail server: the newest mail
// there is mail whose effects committed, so a command in it that the ledger does not know means
// the state is older than the mailbox, even when the whole host, witness included, came back from
// a snapshot.

// restored drops every session, so that nothing opens under restored epochs, and sets the restore
// floor to now, so that commands issued before it that the restored ledger does not know are
// answered outcome-unknown and never run. It runs inside the detecting transaction.
func (n *Node) restored(tx *keystore.Tx) error {
	if _, err := tx.DeleteAllSessions(); err != nil {
		return err
	}
	if err := tx.PutRestoreFloor(n.now()); err != nil {
		return err
	}
	// The processed folder holds the lost interval's commands, which the restored ledger will
	// never know: the next check takes them as explained by this detection.
	return tx.PutProcessedMark(keystore.ProcessedMark{Rebase: true})
}

// processedLook is how many of the newest processed mails the agent compares with its ledger.
const processedLook = 20

// The check records, in keystore.ProcessedMark, the newest processed mail it has explained by a
// detected restore: mail up to it is not counted again at the next start (the restored ledger
// will never know the lost interval's commands). Rebase: a restore was detected otherwise; the
// next check records the newest processed mail as the mark and finds nothing.

// scanProcessed compares ms, the newest processed mail, with the ledger. It returns the stored
// mark (Rebase set when there is none yet: the first check of a state takes what the folder holds
// as its baseline, as it may hold mail an earlier version handled without a ledger entry), the
// first command past the mark that the ledger does not know, and the newest mail past the mark.
func (n *Node) scanProcessed(tx *keystore.Tx, st TxStore, ms []mailbox.Message, now time.Time) (mark keystore.ProcessedMark, unknown *session.Package, newest keystore.ProcessedMark, err error) {
	mark, ok, err := tx.ProcessedMark()
	if err != nil {
		return mark, nil, newest, err
	} else if !ok {
		mark.Rebase = true
	}
	fp := n.Fingerprint()
	for _, m := range ms {
		if m.UIDValidity == mark.UIDValidity && m.UID <= mark.UID {
			continue // explained by an earlier detection
		}
		if m.UIDValidity != newest.UIDValidity || m.UID > newest.UID {
			newest = keystore.ProcessedMark{UIDValidity: m.UIDValidity, UID: m.UID}
		}
		if m.Err != nil || unknown != nil {
			continue
		}
		p, err := session.Parse(m.Package)
		if err != nil || p.Type != session.TypeCommand || p.Recipient != fp {
			continue
		}
		// Only a command whose ledger entry cannot have been purged yet counts: entries are
		// kept until not_after, a refusal's no longer than the TTL cap from when it was refused
		// (at the earliest created-at minus the skew), then for the retention.
		keep := min(p.NotAfter, p.Created-session.DefaultSkew.Milliseconds()+session.MaxTTL.Milliseconds())
		if now.After(time.UnixMilli(keep).Add(session.LedgerRetention - session.DefaultSkew)) {
			continue
		}
		if _, ok, err := st.Ledger(p.Sender, p.Command); err != nil {
			return mark, nil, newest, err
		} else if !ok {
			unknown = p
		}
	}
	return mark, unknown, newest, nil
}

// processedReader is the part of the transport the check needs.
type processedReader interface {
	Processed(ctx context.Context, n int) ([]mailbox.Message, error)
}

// checkProcessed compares the newest processed mail with the ledger and, when a command there is
// unknown to it, treats the state as restored. It reports whether it found a restore. A mail server
// it cannot ask is no evidence either way: the check is skipped with a warning.
func (n *Node) checkProcessed(ctx context.Context) (bool, error) {
	tr, err := n.transport()
	if err != nil {
		return false, err
	}
	pr, ok := tr.(processedReader)
	if !ok {
		return false, nil
	}
	ms, err := pr.Processed(ctx, processedLook)
	if err != nil {
		n.log.Warn("could not read the processed folder to check the state against it; skipped", "op", "restore", "err", err)
		return false, nil
	}
	now := n.now()
	// A read-only look first: on an ordinary start it finds nothing to write, and commits
	// nothing (an agent run by cron with --once starts every few minutes).
	var act bool
	if err := n.view(func(tx *keystore.Tx, st TxStore) error {
		mark, unknown, _, err := n.scanProcessed(tx, st, ms, now)
		act = mark.Rebase || unknown != nil
		return err
	}); err != nil || !act {
		return false, err
	}
	var unknown *session.Package
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		mark, found, newest, err := n.scanProcessed(tx, st, ms, now)
		if err != nil {
			return err
		}
		if mark.Rebase {
			return tx.PutProcessedMark(newest)
		}
		if unknown = found; unknown == nil {
			return nil
		}
		if err := n.restored(tx); err != nil {
			return err
		}
		return tx.PutProcessedMark(newest)
	})
	if err != nil {
		return false, fmt.Errorf("check the state against the processed folder: %w", err)
	}
	if unknown != nil {
		n.log.Warn("restore detected: the processed folder holds a command this state does not know, so the state is older than the mailbox; all sessions dropped, peers must handshake again, and commands issued before now that the state does not know are answered outcome-unknown",
			"op", "restore", "reason", "processed-folder", "cmd_id", unknown.Command.String())
		n.eng.SetFloor(now)
	}
	return unknown != nil, nil
}
