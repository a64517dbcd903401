package keystore

import (
	"encoding/binary"
	"log/slog"
)

// OwedAck notes a mail whose effects have committed but which is not yet moved out of the inbox
// (docs/PROTOCOL.md section 11): it commits with the mail's effects, and goes once the mail is
// moved, so a crash between the two costs neither a re-read nor a second answer.
//
// Layout: owed_acks: uidvalidity (4) || uid (4) -> mailbox name.
type OwedAck struct {
	Mailbox     string
	UIDValidity uint32
	UID         uint32
}

func owedAckKey(uidValidity, uid uint32) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint32(k, uidValidity)
	binary.BigEndian.PutUint32(k[4:], uid)
	return k
}

// decodeOwedAck decodes an owed_acks row. Errors wrap ErrCorrupt and come with the zero value.
func decodeOwedAck(k, v []byte) (OwedAck, error) {
	if len(k) != 8 {
		return OwedAck{}, corruptf("owed ack key %x is %d bytes", k, len(k))
	}
	if err := checkMailbox(string(v)); err != nil {
		return OwedAck{}, corruptf("owed ack %x: %v", k, err)
	}
	return OwedAck{Mailbox: string(v), UIDValidity: binary.BigEndian.Uint32(k), UID: binary.BigEndian.Uint32(k[4:])}, nil
}

// PutOwedAck notes that a is still to be moved out of its mailbox. The note is keyed by
// UIDVALIDITY and UID, which name one message on the server; putting it again replaces it.
func (tx *Tx) PutOwedAck(a OwedAck) error {
	if err := checkMailbox(a.Mailbox); err != nil {
		return err
	}
	if err := tx.bucket(bOwedAcks).Put(owedAckKey(a.UIDValidity, a.UID), []byte(a.Mailbox)); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_owed_ack", slog.Any("uid_validity", a.UIDValidity), slog.Any("uid", a.UID))
	}
	return nil
}

// DeleteOwedAck removes the note for the message; a missing note is not an error (the mail may
// have been moved by an earlier run that crashed before its commit).
func (tx *Tx) DeleteOwedAck(uidValidity, uid uint32) error {
	if err := tx.bucket(bOwedAcks).Delete(owedAckKey(uidValidity, uid)); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("delete_owed_ack", slog.Any("uid_validity", uidValidity), slog.Any("uid", uid))
	}
	return nil
}

// ForEachOwedAck calls fn with every note, by UIDVALIDITY then UID. The notes are read before the
// first call, so fn may delete them.
func (tx *Tx) ForEachOwedAck(fn func(OwedAck) error) error {
	var acks []OwedAck
	if err := tx.bucket(bOwedAcks).ForEach(func(k, v []byte) error {
		a, err := decodeOwedAck(k, v)
		if err != nil {
			return err
		}
		acks = append(acks, a)
		return nil
	}); err != nil {
		return err
	}
	for _, a := range acks {
		if err := fn(a); err != nil {
			return err
		}
	}
	return nil
}
