package node

import (
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
)

// The inbox's bookkeeping in the state: the cursor (how far the reader got) and the notes of
// mail committed but not yet moved out of the inbox. Both commit with each mail's effects
// (docs/PROTOCOL.md section 11), so a crash inside a batch costs neither a re-read of the batch
// nor a second answer to any of it.

// markRead records, in the mail's own transaction, that the reader is past m and that m is still
// to be moved out of the inbox.
func markRead(tx *keystore.Tx, m mailbox.Message) error {
	if err := putCursorForward(tx, mailbox.Cursor{UIDValidity: m.UIDValidity, LastUID: m.UID}); err != nil {
		return err
	}
	return tx.PutOwedAck(keystore.OwedAck{Mailbox: m.Mailbox, UIDValidity: m.UIDValidity, UID: m.UID})
}

// putCursorForward stores c unless the stored cursor is already past it in the same UIDVALIDITY.
func putCursorForward(tx *keystore.Tx, c mailbox.Cursor) error {
	old, ok, err := tx.Cursor(inboxCursor)
	if err != nil {
		return err
	}
	if ok && old.UIDValidity == c.UIDValidity && old.LastUID >= c.LastUID {
		return nil
	}
	return tx.PutCursor(inboxCursor, keystore.Cursor{UIDValidity: c.UIDValidity, LastUID: c.LastUID})
}

// owedAcks lists the mail committed but not yet moved out of the inbox.
func owedAcks(tx *keystore.Tx) ([]mailbox.Message, error) {
	var ms []mailbox.Message
	err := tx.ForEachOwedAck(func(o keystore.OwedAck) error {
		ms = append(ms, mailbox.Message{Mailbox: o.Mailbox, UIDValidity: o.UIDValidity, UID: o.UID})
		return nil
	})
	return ms, err
}

// clearOwedAcks deletes the notes of mail that has been moved.
func clearOwedAcks(tx *keystore.Tx, ms []mailbox.Message) error {
	for _, m := range ms {
		if err := tx.DeleteOwedAck(m.UIDValidity, m.UID); err != nil {
			return err
		}
	}
	return nil
}
