package node

import (
	"encoding/json"
	"fmt"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
)

// The inbox's bookkeeping in the state: the cursor (how far the reader got) and the notes of
// mail committed but not yet moved out of the inbox. Both commit with each mail's effects
// (docs/PROTOCOL.md section 11), so a crash inside a batch costs neither a re-read of the batch
// nor a second answer to any of it.

// prefixOwedAck keys the notes: owed-ack/<uidvalidity>-<uid> -> owedAck.
const prefixOwedAck = "owed-ack/"

type owedAck struct {
	Mailbox     string `json:"mailbox"`
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
}

func owedKey(m mailbox.Message) string {
	return fmt.Sprintf("%s%d-%d", prefixOwedAck, m.UIDValidity, m.UID)
}

// markRead records, in the mail's own transaction, that the reader is past m and that m is still
// to be moved out of the inbox.
func markRead(tx *keystore.Tx, m mailbox.Message) error {
	if err := putCursorForward(tx, mailbox.Cursor{UIDValidity: m.UIDValidity, LastUID: m.UID}); err != nil {
		return err
	}
	b, err := json.Marshal(owedAck{Mailbox: m.Mailbox, UIDValidity: m.UIDValidity, UID: m.UID})
	if err != nil {
		return err
	}
	return tx.PutConfig(owedKey(m), b)
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
	err := tx.ForEachConfig(prefixOwedAck, func(key string, val []byte) error {
		var o owedAck
		if err := json.Unmarshal(val, &o); err != nil {
			return fmt.Errorf("stored note %s does not decode: %w", key, err)
		}
		ms = append(ms, mailbox.Message{Mailbox: o.Mailbox, UIDValidity: o.UIDValidity, UID: o.UID})
		return nil
	})
	return ms, err
}

// clearOwedAcks deletes the notes of mail that has been moved.
func clearOwedAcks(tx *keystore.Tx, ms []mailbox.Message) error {
	for _, m := range ms {
		if err := tx.DeleteConfig(owedKey(m)); err != nil {
			return err
		}
	}
	return nil
}
