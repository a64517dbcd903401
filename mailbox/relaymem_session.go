// Forked from go-imap v2.0.0-beta.8, imapserver/imapmemserver (see relaymem_user.go for the
// licence and for why the relay carries its own copy).

package mailbox

import (
	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

type (
	user    = memUser
	mailbox = memView
)

// memSession represents a session tied to a specific user.
//
// memSession implements imapserver.Session. Typically, a memSession pointer
// is embedded into a larger struct which overrides Login.
type memSession struct {
	*user    // immutable
	*mailbox // may be nil
}

var _ imapserver.SessionIMAP4rev2 = (*memSession)(nil)

// newMemSession creates a new user session.
func newMemSession(user *memUser) *memSession {
	return &memSession{user: user}
}

func (sess *memSession) Close() error {
	if sess != nil && sess.mailbox != nil {
		sess.mailbox.Close()
	}
	return nil
}

func (sess *memSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	mbox, err := sess.user.mailbox(name)
	if err != nil {
		return nil, err
	}
	mbox.mutex.Lock()
	defer mbox.mutex.Unlock()
	sess.mailbox = mbox.NewView()
	return mbox.selectDataLocked(), nil
}

func (sess *memSession) Unselect() error {
	sess.mailbox.Close()
	sess.mailbox = nil
	return nil
}

func (sess *memSession) Copy(numSet imap.NumSet, destName string) (*imap.CopyData, error) {
	dest, err := sess.user.mailbox(destName)
	if err != nil {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTryCreate,
			Text: "No such mailbox",
		}
	} else if sess.mailbox != nil && dest == sess.mailbox.memMailbox {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Text: "Source and destination mailboxes are identical",
		}
	}

	var sourceUIDs, destUIDs imap.UIDSet
	var msgs []*memMessage
	sess.mailbox.forEach(numSet, func(seqNum uint32, msg *memMessage) {
		msgs = append(msgs, msg)
		sourceUIDs.AddNum(msg.uid)
	})
	dest.mutex.Lock()
	defer dest.mutex.Unlock()
	copies, ops := dest.copiesLocked(msgs)
	if err := dest.persist(ops); err != nil {
		return nil, err
	}
	dest.addLocked(copies)
	for _, c := range copies {
		destUIDs.AddNum(c.uid)
	}

	return &imap.CopyData{
		UIDValidity: dest.uidValidity,
		SourceUIDs:  sourceUIDs,
		DestUIDs:    destUIDs,
	}, nil
}

func (sess *memSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, destName string) error {
	dest, err := sess.user.mailbox(destName)
	if err != nil {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTryCreate,
			Text: "No such mailbox",
		}
	} else if sess.mailbox != nil && dest == sess.mailbox.memMailbox {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Text: "Source and destination mailboxes are identical",
		}
	}

	sess.mailbox.mutex.Lock()
	defer sess.mailbox.mutex.Unlock()

	var sourceUIDs, destUIDs imap.UIDSet
	var msgs []*memMessage
	expunged := make(map[*memMessage]struct{})
	sess.mailbox.forEachLocked(numSet, func(seqNum uint32, msg *memMessage) {
		msgs = append(msgs, msg)
		sourceUIDs.AddNum(msg.uid)
		expunged[msg] = struct{}{}
	})
	// One store transaction for the copies and the expunges: a crash leaves the mail in one
	// folder, never in both or neither.
	dest.mutex.Lock()
	copies, ops := dest.copiesLocked(msgs)
	for _, m := range msgs {
		ops = append(ops, relayOp{uv: sess.mailbox.uidValidity, uid: m.uid, expunge: true})
	}
	if err := dest.persist(ops); err != nil {
		dest.mutex.Unlock()
		return err
	}
	dest.addLocked(copies)
	dest.mutex.Unlock()
	for _, c := range copies {
		destUIDs.AddNum(c.uid)
	}
	seqNums := sess.mailbox.expungeLocked(expunged)

	err = w.WriteCopyData(&imap.CopyData{
		UIDValidity: dest.uidValidity,
		SourceUIDs:  sourceUIDs,
		DestUIDs:    destUIDs,
	})
	if err != nil {
		return err
	}

	for _, seqNum := range seqNums {
		if err := w.WriteExpunge(sess.mailbox.tracker.EncodeSeqNum(seqNum)); err != nil {
			return err
		}
	}

	return nil
}

func (sess *memSession) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	if sess.mailbox == nil {
		return nil
	}
	return sess.mailbox.Poll(w, allowExpunge)
}

func (sess *memSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if sess.mailbox == nil {
		return nil // TODO
	}
	return sess.mailbox.Idle(w, stop)
}
