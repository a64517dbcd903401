package mailbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// commands returns the commands sent since the last call, without their tags ("UID MOVE 3:5
// sealpost/processed").
func (p *freezeProxy) commands() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, line := range strings.Split(string(p.sent), "\r\n") {
		if _, cmd, ok := strings.Cut(line, " "); ok {
			out = append(out, cmd)
		}
	}
	p.sent = nil
	return out
}

// count returns how many commands are the verb ("UID MOVE", "SELECT", "EXPUNGE").
func count(cmds []string, verb string) int {
	n := 0
	for _, c := range cmds {
		if c = strings.ToUpper(c); c == verb || strings.HasPrefix(c, verb+" ") {
			n++
		}
	}
	return n
}

// TestAckBatchRoundTrips: one Ack of many messages from two folders costs, per folder, one SELECT
// (none for the folder already selected), one UID FETCH and one move (UID MOVE; or UID COPY + UID
// STORE + UID EXPUNGE with UIDPLUS; UID COPY + UID STORE without), whatever the number of messages;
// a stale message is left where it is and reported, the others are moved; messages already gone are
// skipped.
func TestAckBatchRoundTrips(t *testing.T) {
	for _, k := range relayKinds {
		t.Run(k.name, func(t *testing.T) {
			move := k.full                                                 // UID MOVE
			uidplus := !k.full && slices.Contains(k.caps, imap.CapUIDPlus) // COPY + STORE + UID EXPUNGE; else COPY + STORE
			r := k.start(t)
			proxy := newFreezeProxy(t, r.IMAPAddr())
			b := newTransport(t, r, bob, func(c *mailbox.Config) { c.IMAPAddr = proxy.addr() })
			inject := fixtures.SMTPInjector(r.SMTPAddr(), "mx@elsewhere.test")
			ctx := context.Background()
			const n = 12
			for range n {
				raw, err := mailbox.ComposeMail(alice, bob, fixtures.Package(40), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				inject(t, bob, raw)
			}
			msgs, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
			if err != nil || len(msgs) != n {
				t.Fatalf("Receive = %d, %v; want %d", len(msgs), err, n)
			}
			// Two go to the rejected folder first, so that the batch below has two folders.
			for _, m := range msgs[:2] {
				if err := b.Reject(ctx, m, "test"); err != nil {
					t.Fatalf("Reject: %v", err)
				}
			}
			rejected := rejectedMessages(t, r)
			if len(rejected) != 2 {
				t.Fatalf("rejected folder holds %d mails, want 2", len(rejected))
			}
			stale := msgs[2]
			stale.UIDValidity++
			batch := append([]mailbox.Message{msgs[3], stale, msgs[0]}, rejected...) // msgs[0] is gone
			batch = append(batch, msgs[4:]...)
			proxy.commands()
			err = b.Ack(ctx, batch...)
			cmds := proxy.commands()
			if name := fmt.Sprintf("UID %d of INBOX", stale.UID); !errors.Is(err, mailbox.ErrStaleMessage) || !strings.Contains(err.Error(), name) {
				t.Errorf("Ack(batch) = %v; want ErrStaleMessage naming %s", err, name)
			}
			t.Logf("Ack of %d messages from 2 folders: %q", len(batch), cmds)
			moves := 2
			if !move {
				moves = 0
			}
			copies := 2 - moves
			expunges := 0
			if uidplus {
				expunges = 2
			}
			for verb, want := range map[string]int{
				"SELECT": 1, "UID FETCH": 2, "UID MOVE": moves, "UID COPY": copies, "UID STORE": copies,
				"UID EXPUNGE": expunges, "EXPUNGE": 0,
			} {
				if got := count(cmds, verb); got != want {
					t.Errorf("%d %s commands, want %d", got, verb, want)
				}
			}
			// Only the stale message is left to read (mail moved without UIDPLUS stays, flagged
			// \Deleted, and Receive skips it), and it was not moved.
			left, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
			if err != nil || len(left) != 1 || left[0].UID != msgs[2].UID {
				t.Fatalf("Receive after the batch Ack = %d messages, %v; want only UID %d", len(left), err, msgs[2].UID)
			}
			inspect := fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
			if p := len(inspect(t, bob, "sealpost/processed")); p != n-1 {
				t.Errorf("processed folder holds %d mails, want %d", p, n-1)
			}
			// The connection survived the stale message, and a batch of nothing needs none.
			connects := b.Stats().Connects
			if err := b.Ack(ctx); err != nil {
				t.Errorf("Ack() = %v, want nil", err)
			}
			if err := b.Ack(ctx, left[0]); err != nil {
				t.Errorf("Ack(the stale one, read again) = %v", err)
			}
			if got := b.Stats().Connects; got != connects {
				t.Errorf("%d reconnections", got-connects)
			}
		})
	}
}

// rejectedMessages returns bob's mails in sealpost/rejected as Messages that name that folder.
func rejectedMessages(t *testing.T, r *mailbox.Relay) []mailbox.Message {
	t.Helper()
	c, err := imapclient.DialInsecure(r.IMAPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(bob, r.Users()[bob]).Wait(); err != nil {
		t.Fatal(err)
	}
	const folder = "sealpost/rejected"
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	got, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []mailbox.Message
	for _, m := range got {
		if !slices.Contains(m.Flags, imap.FlagDeleted) {
			out = append(out, mailbox.Message{Mailbox: folder, UIDValidity: sel.UIDValidity, UID: uint32(m.UID)})
		}
	}
	return out
}
