package keystore

import "log/slog"

// Cursor is how far the mailbox reader has got in one IMAP mailbox. A
// changed UIDValidity means the UIDs were renumbered and LastUID is void.
//
// Layout: cursors: mailbox name -> JSON.
type Cursor struct {
	UIDValidity uint32
	LastUID     uint32
}

type cursorRecord struct {
	UIDValidity uint32 `json:"uid_validity"`
	LastUID     uint32 `json:"last_uid"`
}

// Cursor returns the stored position for mailbox.
func (tx *Tx) Cursor(mailbox string) (Cursor, bool, error) {
	if err := checkMailbox(mailbox); err != nil {
		return Cursor{}, false, err
	}
	var r cursorRecord
	ok, err := getJSON(tx.bucket(bCursors), []byte(mailbox), "cursor", &r)
	return Cursor(r), ok && err == nil, err
}

// PutCursor stores the position for mailbox. Commit it in the same Update as
// the effects of the messages it moves past, so a crash re-reads rather than
// skips a message.
func (tx *Tx) PutCursor(mailbox string, c Cursor) error {
	if err := checkMailbox(mailbox); err != nil {
		return err
	}
	if err := putJSON(tx.bucket(bCursors), []byte(mailbox), cursorRecord(c)); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_cursor", slog.String("mailbox", mailbox))
	}
	return nil
}
