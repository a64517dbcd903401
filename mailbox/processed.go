package mailbox

import (
	"context"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"
)

// MaxProcessed bounds how many messages one Processed call returns: a larger n counts as this.
const MaxProcessed = 100

// Processed implements Transport. In one exchange: a LIST of the processed folder (until this
// connection has seen it exist), an EXAMINE of it (read-only: nothing there changes, not even
// \Recent), one UID SEARCH NOT DELETED among its newest 1024 mails (by sequence number, so that
// the answer stays short however full the folder is; older mail is not looked at), the marker
// headers of the UIDs found from the highest down, in batches of 64, until n sealpost mails are
// found, then BODY.PEEK[] of these. Like Receive, it downloads no mail larger than
// MaxMessageBytes or much larger than its RFC822.SIZE (such a one is returned with Err) and no
// more than 2 x MaxMessageBytes of mail by the claimed sizes in one call (at least one mail):
// past that the list ends early, its newest part kept. A body announced over the cap ends the
// list there, or, since servers answer oldest first, usually fails the call with the
// *TooLongError: unlike the inbox, nothing waits behind that mail, and it cannot get here
// through Receive (which rejects it).
func (t *IMAPSMTP) Processed(ctx context.Context, n int) ([]Message, error) {
	if n <= 0 {
		return nil, nil
	}
	n = min(n, MaxProcessed)
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.ensure(ctx)
	if err != nil {
		return nil, fmt.Errorf("processed: %w", err)
	}
	if c.idle != nil {
		signal(t.kick) // the waiting Receive resumes once we are done
	}
	var out []Message
	err = t.do(ctx, "processed", func(c *imapConn) error {
		if err := c.endIdle(); err != nil {
			return err
		}
		ok, err := c.folderExists(c.processed)
		if err != nil || !ok {
			return err // a missing folder holds nothing, and is not created here
		}
		exists, err := c.examineFolder(c.processed)
		if err != nil {
			return err
		}
		out, err = t.newest(c, exists, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// newest returns the n newest sealpost mails of the examined folder, which holds exists mails,
// newest first.
func (t *IMAPSMTP) newest(c *imapConn, exists uint32, n int) ([]Message, error) {
	if exists == 0 {
		return nil, nil
	}
	first := uint32(1)
	if exists > uint32(lookPerScan) {
		first = exists - uint32(lookPerScan) + 1
	}
	// "first:*" rather than "first:exists": a mail expunged by another client since the EXAMINE
	// would make exists an invalid sequence number.
	criteria := &imap.SearchCriteria{
		SeqNum:  []imap.SeqSet{{imap.SeqRange{Start: first, Stop: 0}}},
		NotFlag: []imap.Flag{imap.FlagDeleted},
	}
	data, err := c.c.UIDSearch(criteria, nil).Wait()
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", c.selected, err)
	}
	uids := data.AllUIDs()
	slices.Sort(uids)
	slices.Reverse(uids)
	var (
		out    []Message
		want   []imap.UID
		plan   = map[imap.UID]planned{}
		budget = 2 * t.s.MaxMessageBytes
		bytes  int64
		full   bool
	)
	for len(uids) > 0 && len(out) < n && !full {
		batch := uids[:min(len(uids), 64)]
		uids = uids[len(batch):]
		heads, err := t.fetchHeads(c, batch)
		if err != nil {
			return nil, err
		}
		for _, uid := range batch {
			h, ok := heads[uid]
			if !ok || !h.sealpost || t.s.othersMail(h) {
				continue // expunged since the search, not sealpost's, or another node's
			}
			m, download := t.headMessage(c, uid, h)
			if download && len(out) > 0 && bytes+h.size > budget {
				full = true
				break
			}
			if download {
				want = append(want, uid)
				plan[uid] = planned{i: len(out), claim: h.size}
				bytes += h.size
			}
			out = append(out, m)
			if len(out) == n {
				break
			}
		}
	}
	if len(want) > 0 {
		cut, _, err := t.fetchBodies(c, want, plan, out)
		if err != nil {
			return nil, err
		}
		out = out[:cut] // the newest part, when the connection went down at a body over the cap
	}
	return out, nil
}

// folderExists reports whether the folder exists, with a LIST unless this connection knows it
// does. Unlike ensureFolder it creates nothing.
func (c *imapConn) folderExists(name string) (bool, error) {
	if c.folders[name] {
		return true, nil
	}
	ok, err := c.listed(name)
	if ok {
		c.folders[name] = true
	}
	return ok, err
}

// examineFolder opens a folder read-only (EXAMINE) and returns how many mails it holds. The
// next selectFolder of the same folder selects it again, read-write.
func (c *imapConn) examineFolder(name string) (uint32, error) {
	data, err := c.c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		c.selected = ""
		return 0, fmt.Errorf("examine %s: %w", name, err)
	}
	c.selected, c.uidValidity, c.readOnly = name, data.UIDValidity, true
	return data.NumMessages, nil
}
