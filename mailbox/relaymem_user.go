// Forked from go-imap v2.0.0-beta.8, imapserver/imapmemserver (files relaymem_*.go), under its
// licence:
//
// The MIT License (MIT)
//
// Copyright (c) 2013 The Go-IMAP Authors
// Copyright (c) 2016 Proton Technologies AG
// Copyright (c) 2023 Simon Ser
//
// Permission is hereby granted, free of charge, to any person obtaining a copy of this software
// and associated documentation files (the "Software"), to deal in the Software without
// restriction, including without limitation the rights to use, copy, modify, merge, publish,
// distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
// Software is furnished to do so, subject to the following conditions:
//
// The above copyright notice and this permission notice shall be included in all copies or
// substantial portions of the Software.
//
// THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
// BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
// NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
// DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
// OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
//
// Why a copy: imapmemserver numbers every user's mailboxes UIDVALIDITY 1, 2, ... from zero on
// each start and gives no way to set it or a message's UID, so a restarted relay handed clients
// the UIDVALIDITY their cursors already held, with UIDs counted again from 1 (the cursors then
// skipped every new mail). The copy takes its UIDVALIDITYs from the relay and tells the relay's
// store (if any) of every change before it makes it.

package mailbox

import (
	"crypto/subtle"
	"sort"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

const memDelim rune = '/'

type memUser struct {
	username, password string

	// Where the relay keeps this user's mail: in memory only (db nil), or also in db under
	// key. Without db a mailbox's UIDVALIDITY is the relay's start (start, the clock's
	// seconds), or one more than the last this user's mailbox of that name had in this run.
	key    string
	db     *relayDB
	start  uint32
	lastUV map[string]uint32

	mutex     sync.Mutex
	mailboxes map[string]*memMailbox
}

func newMemUser(username, password string) *memUser {
	return &memUser{
		username:  username,
		password:  password,
		mailboxes: make(map[string]*memMailbox),
		lastUV:    map[string]uint32{},
	}
}

func (u *memUser) Login(username, password string) error {
	if username != u.username {
		return imapserver.ErrAuthFailed
	}
	if subtle.ConstantTimeCompare([]byte(password), []byte(u.password)) != 1 {
		return imapserver.ErrAuthFailed
	}
	return nil
}

func (u *memUser) mailboxLocked(name string) (*memMailbox, error) {
	mbox := u.mailboxes[name]
	if mbox == nil {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeNonExistent,
			Text: "No such mailbox",
		}
	}
	return mbox, nil
}

func (u *memUser) mailbox(name string) (*memMailbox, error) {
	u.mutex.Lock()
	defer u.mutex.Unlock()
	return u.mailboxLocked(name)
}

func (u *memUser) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	mbox, err := u.mailbox(name)
	if err != nil {
		return nil, err
	}
	return mbox.StatusData(options), nil
}

func (u *memUser) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	u.mutex.Lock()
	defer u.mutex.Unlock()

	// TODO: fail if ref doesn't exist

	if len(patterns) == 0 {
		return w.WriteList(&imap.ListData{
			Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect},
			Delim: memDelim,
		})
	}

	var l []imap.ListData
	for name, mbox := range u.mailboxes {
		match := false
		for _, pattern := range patterns {
			match = imapserver.MatchList(name, memDelim, ref, pattern)
			if match {
				break
			}
		}
		if !match {
			continue
		}

		data := mbox.list(options)
		if data != nil {
			l = append(l, *data)
		}
	}

	sort.Slice(l, func(i, j int) bool {
		return l[i].Mailbox < l[j].Mailbox
	})

	for _, data := range l {
		if err := w.WriteList(&data); err != nil {
			return err
		}
	}

	return nil
}

func (u *memUser) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	mbox, err := u.mailbox(mailbox)
	if err != nil {
		return nil, &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeTryCreate,
			Text: "No such mailbox",
		}
	}
	return mbox.appendLiteral(r, options)
}

func (u *memUser) Create(name string, options *imap.CreateOptions) error {
	u.mutex.Lock()
	defer u.mutex.Unlock()

	name = strings.TrimRight(name, string(memDelim))

	if u.mailboxes[name] != nil {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeAlreadyExists,
			Text: "Mailbox already exists",
		}
	}

	// UIDVALIDITY must change if a mailbox is deleted and re-created with the
	// same name, and when a restarted relay has lost the mailbox's UIDs.
	var uv uint32
	if u.db != nil {
		var err error
		if uv, err = u.db.createMailbox(u.key, name); err != nil {
			return err
		}
	} else {
		uv = max(u.start, u.lastUV[name]+1)
		u.lastUV[name] = uv
	}
	mbox := newMemMailbox(name, uv)
	mbox.db, mbox.user = u.db, u.key
	u.mailboxes[name] = mbox
	return nil
}

func (u *memUser) Delete(name string) error {
	u.mutex.Lock()
	defer u.mutex.Unlock()

	mbox, err := u.mailboxLocked(name)
	if err != nil {
		return err
	}
	if u.db != nil {
		if err := u.db.deleteMailbox(u.key, mbox.uidValidity); err != nil {
			return err
		}
	}

	delete(u.mailboxes, name)
	return nil
}

func (u *memUser) Rename(oldName, newName string, options *imap.RenameOptions) error {
	u.mutex.Lock()
	defer u.mutex.Unlock()

	newName = strings.TrimRight(newName, string(memDelim))

	mbox, err := u.mailboxLocked(oldName)
	if err != nil {
		return err
	}

	if u.mailboxes[newName] != nil {
		return &imap.Error{
			Type: imap.StatusResponseTypeNo,
			Code: imap.ResponseCodeAlreadyExists,
			Text: "Mailbox already exists",
		}
	}

	if u.db != nil {
		if err := u.db.renameMailbox(u.key, mbox.uidValidity, newName); err != nil {
			return err
		}
	}
	mbox.rename(newName)
	u.mailboxes[newName] = mbox
	delete(u.mailboxes, oldName)
	return nil
}

func (u *memUser) Subscribe(name string) error {
	mbox, err := u.mailbox(name)
	if err != nil {
		return err
	}
	return mbox.setSubscribed(true)
}

func (u *memUser) Unsubscribe(name string) error {
	mbox, err := u.mailbox(name)
	if err != nil {
		return err
	}
	return mbox.setSubscribed(false)
}

func (u *memUser) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{
		Personal: []imap.NamespaceDescriptor{{Delim: memDelim}},
	}, nil
}
