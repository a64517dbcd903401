package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// Many nodes, one mailbox (docs/PROTOCOL.md section 17): three agents logged in to one account,
// each with a plus address of its own, paired one after another by code with one controller
// while the ones paired before them serve, each run only the commands sent to them, once, and
// none of them touches another's mail.

// sharedSite is a mail system with a controller's account and an account the agents share.
type sharedSite struct {
	imap, smtp   string
	tls          mailbox.TLSMode
	caFile       string
	controller   string // the controller's address (and login)
	controllerPW string
	account      string // the shared account's login
	accountPW    string
	delimiter    string // the IMAP server's hierarchy delimiter
}

func TestSharedMailboxAgents(t *testing.T) {
	users := map[string]string{"alice@example.test": "pw-a", "shared@example.test": "pw-s"}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	relay, err := mailbox.StartRelay(ctx, mailbox.RelayConfig{Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	runSharedAgents(t, ctx, sharedSite{imap: relay.IMAPAddr(), smtp: relay.SMTPAddr(), tls: mailbox.TLSNone,
		controller: "alice@example.test", controllerPW: users["alice@example.test"],
		account: "shared@example.test", accountPW: users["shared@example.test"], delimiter: "/"})
}

func TestRealSharedMailboxAgents(t *testing.T) {
	ms := fixtures.RealMailServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ms.DeleteAndRecreateInbox(t, realAlice)
	ms.DeleteAndRecreateInbox(t, "carol@sealpost.test")
	site := sharedSite{imap: ms.IMAPPlain, smtp: ms.SMTPStartTLS, tls: mailbox.TLSStartTLS, caFile: ms.CAFile,
		controller: realAlice, controllerPW: ms.Users[realAlice],
		account: "carol@sealpost.test", accountPW: ms.Users["carol@sealpost.test"], delimiter: "."}
	// The agents' folders of an earlier run.
	c := sharedAdmin(t, site)
	for _, d := range []string{"web1", "web2", "web3"} {
		for _, f := range []string{"processed", "rejected"} {
			_ = c.Delete(strings.Join([]string{"sealpost", f, d}, site.delimiter)).Wait()
		}
	}
	runSharedAgents(t, ctx, site)
}

func runSharedAgents(t *testing.T, ctx context.Context, site sharedSite) {
	local, domain, _ := strings.Cut(site.account, "@")
	plus := func(d string) string { return local + "+" + d + "@" + domain }
	dir := t.TempDir()
	var (
		mu       sync.Mutex
		rejected []string // every mail any node rejected
	)
	open := func(name, addr, login, pw string) *Node {
		t.Helper()
		cfg := mailbox.Config{Address: addr, IMAPAddr: site.imap, SMTPAddr: site.smtp, Username: login, Password: pw,
			TLS: site.tls, CAFile: site.caFile, AllowPlaintextAuth: site.tls == mailbox.TLSNone, CommandTimeout: 10 * time.Second}
		tr, err := mailbox.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		events := func(e Event) {
			if e.Kind == EventRejected {
				mu.Lock()
				rejected = append(rejected, fmt.Sprintf("%s rejected a mail from %s: %s", name, e.Peer, e.Detail))
				mu.Unlock()
			}
		}
		n, err := Init(Options{Dir: filepath.Join(dir, name), Transport: tr, RetryAfter: time.Minute, Events: events},
			MailConfig{Address: addr, IMAP: site.imap, SMTP: site.smtp, Login: login, TLS: string(site.tls), CAFile: site.caFile})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	var wg sync.WaitGroup
	serve := func(n *Node) {
		sctx, stop := context.WithCancel(ctx)
		wg.Add(1)
		go func() { defer wg.Done(); n.Serve(sctx, false) }()
		t.Cleanup(func() { stop(); wg.Wait() })
	}
	alice := open("alice", site.controller, site.controller, site.controllerPW)
	serve(alice)

	// Each agent allows alice one script that counts its runs and says whose it is.
	details := []string{"web1", "web2", "web3"}
	agents := map[string]*Node{}
	counters := map[string]string{}
	for _, d := range details {
		counters[d] = filepath.Join(dir, d+".runs")
		script := filepath.Join(dir, d+".sh")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+counters[d]+"\necho "+d+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		// Paired one after another, while the agents paired before serve the same mailbox.
		added, err := alice.AddPeer(ctx, PeerSpec{Name: d, Address: plus(d)})
		if err != nil {
			t.Fatal(err)
		}
		agent := open(d, plus(d), site.account, site.accountPW)
		if _, err := agent.AddPeer(ctx, PeerSpec{Name: "alice", Address: site.controller, Code: added.GeneratedCode, Allow: []string{script}}); err != nil {
			t.Fatal(err)
		}
		agents[d] = agent
		serve(agent)
		fixtures.Eventually(t, 30*time.Second, d+" paired", func() bool {
			a, _ := alice.Peers(ctx)
			b, _ := agent.Peers(ctx)
			return pairedWith(a, d) && pairedWith(b, "alice")
		})
	}

	// Two commands to each agent, all sent at once; all three agents poll the one inbox.
	var ids []session.CommandID
	peerOf := map[session.CommandID]string{}
	for range 2 {
		for _, d := range details {
			script := filepath.Join(dir, d+".sh")
			id, err := alice.Submit(ctx, RunSpec{Peer: d, Request: commands.Request{Name: "exec", Argv: []string{script}}})
			if err != nil {
				t.Fatalf("submit to %s: %v", d, err)
			}
			ids = append(ids, id)
			peerOf[id] = d
		}
	}
	for _, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		r, err := alice.Wait(wctx, id, nil)
		cancel()
		if err != nil {
			t.Fatalf("wait for %s's command: %v", peerOf[id], err)
		}
		if r.Status != StatusDone || r.ExitCode != 0 || strings.TrimSpace(string(r.Stdout)) != peerOf[id] {
			t.Errorf("command for %s: status %s, exit %d, stdout %q; want done by %s", peerOf[id], r.Status, r.ExitCode, r.Stdout, peerOf[id])
		}
	}
	for _, d := range details {
		b, _ := os.ReadFile(counters[d])
		if got := strings.Count(string(b), "ran\n"); got != 2 {
			t.Errorf("%s ran its script %d times, want 2", d, got)
		}
	}

	// No agent touched another's mail: each agent's processed and rejected folders hold only
	// mail sent to its own address (a node rejects the second initial PAIR of a pairing, its
	// own: by then the pairing is no longer armed), and nothing is left in the shared inbox.
	mu.Lock()
	for _, r := range rejected {
		t.Log(r)
	}
	mu.Unlock()
	c := sharedAdmin(t, site)
	for _, d := range details {
		for _, kind := range []string{"processed", "rejected"} {
			folder := strings.Join([]string{"sealpost", kind, d}, site.delimiter)
			to := folderTo(t, c, folder)
			if kind == "processed" && len(to) == 0 {
				t.Errorf("%s's processed folder %s is empty", d, folder)
			}
			for _, a := range to {
				if !strings.EqualFold(a, plus(d)) {
					t.Errorf("%s's %s folder holds mail to %s: %s moved another node's mail", d, kind, a, d)
				}
			}
		}
	}
	if to := folderTo(t, c, "INBOX"); len(to) != 0 {
		t.Errorf("the shared inbox still holds mail to %v", to)
	}
}

// pairedWith reports whether the peer named name is pinned (paired, or further).
func pairedWith(ps []PeerInfo, name string) bool {
	for _, p := range ps {
		if p.Name == name && (p.Status == "paired" || p.Ready()) {
			return true
		}
	}
	return false
}

// sharedAdmin logs in to the shared account to look at it (plaintext on loopback; the servers
// allow it there).
func sharedAdmin(t *testing.T, site sharedSite) *imapclient.Client {
	t.Helper()
	return imapLogin(t, site.imap, site.account, site.accountPW)
}

// folderTo lists the To address of every mail in a folder.
func folderTo(t *testing.T, c *imapclient.Client, name string) []string {
	t.Helper()
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages == 0 {
		return nil
	}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		for _, a := range m.Envelope.To {
			out = append(out, a.Addr())
		}
	}
	return out
}

// TestMailForAnotherNodeLeftAlone: a package sealed for another node that reaches this node's
// mailbox by another address than its own (an alias of a shared mailbox, which the transport's
// plus-address rule does not recognise) is left in the inbox, unflagged, and not read again; the
// same package mailed to this node's own address is rejected and moved aside (THREATS.md row
// 14: it can only be a reflection or a forgery).
func TestMailForAnotherNodeLeftAlone(t *testing.T) {
	l := newLab(t)
	carol := l.open("carol", nil, true)
	if _, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := l.transport("bob", nil).Receive(l.ctx, mailbox.Cursor{}, 0, 0)
	if err != nil || len(msgs) == 0 {
		t.Fatalf("bob's inbox: %d messages, %v", len(msgs), err)
	}
	pkg := msgs[0].Package // sealed for bob
	inject := fixtures.SMTPInjector(l.relay.SMTPAddr(), "mta@elsewhere.test")
	for _, to := range []string{"bob@example.test", "carol@example.test"} {
		raw, err := mailbox.ComposeMail("alice@example.test", to, pkg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		inject(t, "carol@example.test", raw)
	}
	if _, err := carol.Pump(l.ctx, false, 0); err != nil {
		t.Fatal(err)
	}
	c := imapLogin(t, l.relay.IMAPAddr(), "carol@example.test", l.users["carol@example.test"])
	if to := folderTo(t, c, "INBOX"); len(to) != 1 || to[0] != "bob@example.test" {
		t.Errorf("carol's inbox holds mail to %v; want the one to bob, left alone", to)
	}
	if to := folderTo(t, c, "sealpost/rejected"); len(to) != 1 || to[0] != "carol@example.test" {
		t.Errorf("carol's rejected folder holds mail to %v; want the one mailed to carol", to)
	}
	wantUnflagged(t, c, "INBOX")
	if n, err := carol.Pump(l.ctx, false, 0); err != nil || n != 0 {
		t.Errorf("carol's next Pump handled %d mails, %v; want none (the cursor passed it)", n, err)
	}
}

func imapLogin(t *testing.T, addr, user, pw string) *imapclient.Client {
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

// wantUnflagged fails when a mail of the folder carries \Seen, \Deleted or \Flagged.
func wantUnflagged(t *testing.T, c *imapclient.Client, name string) {
	t.Helper()
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil || sel.NumMessages == 0 {
		return
	}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		for _, f := range m.Flags {
			if f == imap.FlagSeen || f == imap.FlagDeleted || f == imap.FlagFlagged {
				t.Errorf("mail %d of %s is flagged %s", m.SeqNum, name, f)
			}
		}
	}
}
