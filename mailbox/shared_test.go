package mailbox_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// Many nodes, one mailbox (docs/PROTOCOL.md section 17): three transports logged in to one
// account, each with a plus address of its own, read only the mail sent to their address, and
// move, flag, expunge and prune nothing of the others'. Run on the embedded relay and on the
// real Dovecot + Postfix.

// sharedEnv is one mail system with an account that several nodes share and a peer outside it.
type sharedEnv struct {
	imap, smtp    string // plain IMAP and SMTP (loopback, no TLS)
	account, pw   string // the shared account's login and password
	peer, peerPW  string // another user, who mails the nodes
	resetInbox    func() // empties the inboxes (real server)
	wantDelimiter string // the server's hierarchy delimiter
}

func TestSharedMailboxRelay(t *testing.T) {
	users := map[string]string{"carol@relay.test": "carol-pw", alice: "alice-pw"}
	r := startRelay(t, mailbox.RelayConfig{Users: users})
	runSharedMailbox(t, sharedEnv{imap: r.IMAPAddr(), smtp: r.SMTPAddr(), account: "carol@relay.test", pw: users["carol@relay.test"],
		peer: alice, peerPW: users[alice], resetInbox: func() {}, wantDelimiter: "/"})
}

func TestRealSharedMailbox(t *testing.T) {
	ms := fixtures.RealMailServer(t)
	const carol, alice = "carol@sealpost.test", "alice@sealpost.test"
	runSharedMailbox(t, sharedEnv{imap: ms.IMAPPlain, smtp: ms.SMTPPlain, account: carol, pw: ms.Users[carol],
		peer: alice, peerPW: ms.Users[alice], wantDelimiter: ".",
		resetInbox: func() {
			ms.DeleteAndRecreateInbox(t, carol)
			ms.DeleteAndRecreateInbox(t, alice)
		}})
}

func runSharedMailbox(t *testing.T, env sharedEnv) {
	env.resetInbox()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	local, domain, _ := strings.Cut(env.account, "@")
	addr := func(detail string) string { return local + "+" + detail + "@" + domain }
	open := func(address, login, pw string) *mailbox.IMAPSMTP {
		tr, err := mailbox.New(mailbox.Config{Address: address, IMAPAddr: env.imap, SMTPAddr: env.smtp,
			Username: login, Password: pw, TLS: mailbox.TLSNone, AllowPlaintextAuth: true,
			MaxMessageBytes: contractCap, CommandTimeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("New(%s): %v", address, err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	admin := imapAdmin(t, env.imap, env.account, env.pw)
	details := []string{"web1", "web2", "web3"}
	for _, d := range details {
		// Processed and rejected folders of an earlier run on the same server.
		for _, f := range []string{"processed", "rejected"} {
			_ = admin.Delete(strings.Join([]string{"sealpost", f, d}, env.wantDelimiter)).Wait()
		}
	}
	peer := open(env.peer, env.peer, env.peerPW)
	nodes := map[string]*mailbox.IMAPSMTP{}
	for _, d := range details {
		nodes[d] = open(addr(d), env.account, env.pw)
	}
	// One package for each node, and one for the account's own address (a node without a
	// detail, not running here): every node must leave the three that are not its own alone.
	sent := map[string]string{} // package -> the address it was mailed to
	for _, to := range append([]string{addr("web1"), addr("web2"), addr("web3")}, env.account) {
		pkg := "SLPK for " + to
		if err := peer.Send(ctx, to, []byte(pkg)); err != nil {
			t.Fatalf("send to %s: %v", to, err)
		}
		sent[pkg] = to
	}
	fixtures.Eventually(t, 20*time.Second, "four mails in the shared inbox", func() bool {
		return fixtures.InboxCount(t, env.imap, env.account, env.pw) == 4
	})

	// All three read at once; each gets its own package and no other.
	var (
		mu    sync.Mutex
		got   = map[string][]mailbox.Message{}
		curs  = map[string]mailbox.Cursor{}
		wg    sync.WaitGroup
		fails []string
	)
	for _, d := range details {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs, cur, err := nodes[d].Receive(ctx, mailbox.Cursor{}, 0, 0)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fails = append(fails, fmt.Sprintf("%s: Receive: %v", d, err))
			}
			got[d], curs[d] = msgs, cur
		}()
	}
	wg.Wait()
	if len(fails) > 0 {
		t.Fatal(strings.Join(fails, "; "))
	}
	for _, d := range details {
		msgs := got[d]
		if len(msgs) != 1 || sent[string(msgs[0].Package)] != addr(d) || !strings.EqualFold(msgs[0].To, addr(d)) {
			var pkgs []string
			for _, m := range msgs {
				pkgs = append(pkgs, fmt.Sprintf("%q (To %s, err %v)", m.Package, m.To, m.Err))
			}
			t.Fatalf("%s received %v; want only the package mailed to %s", d, pkgs, addr(d))
		}
		if s := nodes[d].Stats(); s.OthersSkips != 3 {
			t.Errorf("%s: OthersSkips = %d, want 3 (two other nodes' mail and the account's own)", d, s.OthersSkips)
		}
	}

	// web1 acknowledges its mail: the other three stay in the inbox, unflagged.
	if err := nodes["web1"].Ack(ctx, got["web1"]...); err != nil {
		t.Fatalf("web1 Ack: %v", err)
	}
	wantInbox(t, admin, addr("web2"), addr("web3"), env.account)
	// A node's reply goes out from its own address with the account's login.
	if err := nodes["web2"].Send(ctx, env.peer, []byte("SLPK from web2")); err != nil {
		t.Fatalf("web2 sends as %s with login %s: %v", addr("web2"), env.account, err)
	}
	var back []mailbox.Message
	fixtures.Eventually(t, 20*time.Second, "web2's mail at the peer", func() bool {
		back, _, _ = peer.Receive(ctx, mailbox.Cursor{}, 0, 0)
		return len(back) == 1
	})
	if !bytes.Equal(back[0].Package, []byte("SLPK from web2")) || !strings.EqualFold(back[0].From, addr("web2")) {
		t.Errorf("the peer got %q from %s; want web2's package from %s", back[0].Package, back[0].From, addr("web2"))
	}
	// web2 rejects its mail, web3 acknowledges: only the account's own mail is left, untouched.
	if err := nodes["web2"].Reject(ctx, got["web2"][0], "test"); err != nil {
		t.Fatalf("web2 Reject: %v", err)
	}
	if err := nodes["web3"].Ack(ctx, got["web3"]...); err != nil {
		t.Fatalf("web3 Ack: %v", err)
	}
	wantInbox(t, admin, env.account)
	d := env.wantDelimiter
	for folder, n := range map[string]int{
		"sealpost" + d + "processed" + d + "web1": 1, "sealpost" + d + "rejected" + d + "web2": 1,
		"sealpost" + d + "processed" + d + "web3": 1, "sealpost" + d + "processed" + d + "web2": 0,
	} {
		if got := folderCount(t, admin, folder); got != n {
			t.Errorf("%s holds %d mails, want %d", folder, got, n)
		}
	}
	// Nothing new for anyone: the cursors passed the others' mail.
	for _, n := range details {
		if msgs, _, err := nodes[n].Receive(ctx, curs[n], 0, 0); err != nil || len(msgs) != 0 {
			t.Errorf("%s reads again: %d messages, %v; want none", n, len(msgs), err)
		}
	}
	// The restore check reads a node's own processed mail; Prune deletes only that.
	if ps, err := nodes["web3"].Processed(ctx, 20); err != nil || len(ps) != 1 || sent[string(ps[0].Package)] != addr("web3") {
		t.Errorf("web3 Processed = %d messages, %v; want its one", len(ps), err)
	}
	if n, err := nodes["web1"].Prune(ctx, time.Now().Add(48*time.Hour)); err != nil || n != 1 {
		t.Errorf("web1 Prune = %d, %v; want its one mail", n, err)
	}
	if got := folderCount(t, admin, "sealpost"+d+"processed"+d+"web3"); got != 1 {
		t.Errorf("web1's Prune left %d mails in web3's processed folder, want 1", got)
	}
	wantInbox(t, admin, env.account)
}

// imapAdmin logs in to the shared account to look at it.
func imapAdmin(t *testing.T, addr, user, pw string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pw).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// wantInbox checks that the inbox holds exactly mail to the given addresses, none of it flagged
// (no \Seen, no \Deleted: nobody touched it).
func wantInbox(t *testing.T, c *imapclient.Client, to ...string) {
	t.Helper()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*imapclient.FetchMessageBuffer
	if sel.NumMessages > 0 {
		section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"To"}, Peek: true}
		msgs, err = c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true, BodySection: []*imap.FetchItemBodySection{section}}).Collect()
		if err != nil {
			t.Fatal(err)
		}
	}
	var have []string
	for _, m := range msgs {
		var hdr []byte
		for _, b := range m.BodySection {
			hdr = b.Bytes
		}
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(hdr)), "To:"))
		have = append(have, line)
		for _, f := range m.Flags {
			if f == imap.FlagSeen || f == imap.FlagDeleted || f == imap.FlagFlagged {
				t.Errorf("mail to %s is flagged %s: another node touched it", line, f)
			}
		}
	}
	want := slices.Clone(to)
	slices.Sort(have)
	slices.Sort(want)
	if !slices.Equal(have, want) {
		t.Errorf("inbox holds mail to %q, want %q", have, want)
	}
}

// folderCount is how many mails a folder holds (0 when it does not exist).
func folderCount(t *testing.T, c *imapclient.Client, name string) int {
	t.Helper()
	d, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
	if err != nil || d.NumMessages == nil {
		return 0
	}
	return int(*d.NumMessages)
}
