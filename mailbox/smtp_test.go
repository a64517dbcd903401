package mailbox_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// TestSMTPConnectionKept: consecutive mails share one submission connection; when the server
// has dropped it meanwhile, the next mail goes over a new one and arrives once; after smtpIdle
// without mail, and at Close, the connection is ended with QUIT.
func TestSMTPConnectionKept(t *testing.T) {
	mailbox.SetSMTPIdle(t, 300*time.Millisecond)
	proxy, a, b, ctx := proxiedSender(t)

	var sent [][]byte
	send := func() {
		t.Helper()
		pkg := fixtures.Package(100)
		if err := a.Send(ctx, bob, pkg); err != nil {
			t.Fatalf("Send: %v", err)
		}
		sent = append(sent, pkg)
	}
	for range 5 {
		send()
	}
	if got := a.Stats().SMTPConnects; got != 1 {
		t.Fatalf("5 mails in a row opened %d SMTP connections, want 1", got)
	}

	// The server drops the idle connection; the next mail notices at MAIL FROM and reconnects.
	if n := proxy.cut(); n != 1 {
		t.Fatalf("the proxy saw %d connections, want 1", n)
	}
	send()
	if got := a.Stats().SMTPConnects; got != 2 {
		t.Fatalf("after the server dropped the connection: %d SMTP connections, want 2", got)
	}

	// Idle past smtpIdle: the connection ends with QUIT; the next mail opens another.
	proxy.lines() // forget what was sent so far
	time.Sleep(3 * 300 * time.Millisecond)
	if cmds := proxy.lines(); !slices.Contains(cmds, "QUIT") {
		t.Fatalf("no QUIT after the connection was idle: client sent %q", cmds)
	}
	send()
	if got := a.Stats().SMTPConnects; got != 3 {
		t.Fatalf("after an idle close: %d SMTP connections, want 3", got)
	}
	a.Close()
	if cmds := proxy.lines(); !slices.Contains(cmds, "QUIT") {
		t.Fatalf("no QUIT at Close: client sent %q", cmds)
	}

	// Every mail arrived, once.
	arrivedOnce(t, ctx, b, sent)
}

// lines returns the lines the clients sent since the last call (SMTP commands, and mail text).
func (p *freezeProxy) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := strings.Split(string(p.sent), "\r\n")
	p.sent = nil
	return out
}

// proxiedSender is alice's transport submitting through a proxy that can cut her SMTP
// connections, and bob's, reading what arrives.
func proxiedSender(t *testing.T) (proxy *freezeProxy, a, b *mailbox.IMAPSMTP, ctx context.Context) {
	t.Helper()
	r := startRelay(t, mailbox.RelayConfig{})
	proxy = newFreezeProxy(t, r.SMTPAddr())
	a = newTransport(t, r, alice, func(c *mailbox.Config) { c.SMTPAddr = proxy.addr() })
	b = newTransport(t, r, bob, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return proxy, a, b, ctx
}

// arrivedOnce checks that bob received exactly the packages sent, in order, each once.
func arrivedOnce(t *testing.T, ctx context.Context, b *mailbox.IMAPSMTP, sent [][]byte) {
	t.Helper()
	var got []mailbox.Message
	cur := mailbox.Cursor{}
	for len(got) < len(sent) {
		msgs, next, err := b.Receive(ctx, cur, 5*time.Second, 0)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(msgs) == 0 {
			break
		}
		got, cur = append(got, msgs...), next
	}
	if more, _, err := b.Receive(ctx, cur, 0, 0); err != nil || len(more) != 0 {
		t.Fatalf("after the %d mails sent: %d more arrived (%v)", len(sent), len(more), err)
	}
	if len(got) != len(sent) {
		t.Fatalf("%d mails arrived, %d were sent", len(got), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(got[i].Package, sent[i]) {
			t.Fatalf("mail %d arrived with another package", i)
		}
	}
}

// TestSMTPSendsSideBySide: while one mail waits on a slow server, the next goes out over a
// second connection (Config.SMTPConnections, default 2) instead of waiting behind it; both
// connections are kept for the mails after them, and every mail arrives once.
func TestSMTPSendsSideBySide(t *testing.T) {
	proxy, a, b, ctx := proxiedSender(t)
	first := fixtures.Package(100)
	if err := a.Send(ctx, bob, first); err != nil {
		t.Fatalf("Send: %v", err)
	}
	proxy.freeze(true) // the server answers nothing on the kept connection
	slow, quick := fixtures.Package(100), fixtures.Package(100)
	done := make(chan error, 1)
	// One of the two takes the kept connection and waits there; the other may not wait
	// behind it.
	go func() { done <- a.Send(ctx, bob, slow) }()
	go func() { done <- a.Send(ctx, bob, quick) }()
	proxy.waitAccepted(t, 2) // fails on a transport that sends one mail at a time
	proxy.freeze(false)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	last := fixtures.Package(100)
	if err := a.Send(ctx, bob, last); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if got := a.Stats().SMTPConnects; got != 2 {
		t.Fatalf("%d SMTP connections, want 2: one more for the mail sent beside the slow one, then kept", got)
	}
	// The two sent side by side may arrive either way round.
	var got []mailbox.Message
	cur := mailbox.Cursor{}
	for len(got) < 4 {
		msgs, next, err := b.Receive(ctx, cur, 5*time.Second, 0)
		if err != nil || len(msgs) == 0 {
			t.Fatalf("Receive after %d mails: %v", len(got), err)
		}
		got, cur = append(got, msgs...), next
	}
	arrived := map[string]int{}
	for _, m := range got {
		arrived[string(m.Package)]++
	}
	for _, p := range [][]byte{first, slow, quick, last} {
		if arrived[string(p)] != 1 {
			t.Fatalf("a mail arrived %d times, want once (%d mails in all)", arrived[string(p)], len(got))
		}
	}
}

// TestSMTPKeptConnectionFailsLate: when a kept connection fails after MAIL FROM was answered,
// the server may hold part of the mail (or all of it, if only the answer to the final dot is
// lost), so the mail is not sent again at once: Send reports a temporary failure, for the
// outbox's retry, without opening another connection. The next mail goes over a new one.
func TestSMTPKeptConnectionFailsLate(t *testing.T) {
	for _, cut := range []struct{ name, when string }{
		{"at RCPT", "RCPT TO:"},
		{"at the end of DATA", "\r\n.\r\n"},
	} {
		t.Run(cut.name, func(t *testing.T) {
			proxy, a, b, ctx := proxiedSender(t)
			first := fixtures.Package(100)
			if err := a.Send(ctx, bob, first); err != nil {
				t.Fatalf("Send: %v", err)
			}
			proxy.cutWhen(cut.when)
			err := a.Send(ctx, bob, fixtures.Package(100))
			var se *mailbox.SendError
			if !errors.As(err, &se) || !se.Temporary {
				t.Fatalf("Send over a connection cut %s = %v, want a temporary SendError", cut.name, err)
			}
			if got := a.Stats().SMTPConnects; got != 1 {
				t.Fatalf("%d SMTP connections; the cut mail must not be sent again over a new one", got)
			}
			last := fixtures.Package(100)
			if err := a.Send(ctx, bob, last); err != nil {
				t.Fatalf("Send after the cut: %v", err)
			}
			if got := a.Stats().SMTPConnects; got != 2 {
				t.Fatalf("after the cut: %d SMTP connections, want 2", got)
			}
			arrivedOnce(t, ctx, b, [][]byte{first, last})
		})
	}
}

// TestVerify: Verify logs in to both servers and says which one failed and how, without
// sending anything.
func TestVerify(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ok := newTransport(t, r, alice, nil)
	if err := ok.Verify(ctx); err != nil {
		t.Fatalf("Verify with working settings: %v", err)
	}
	if s := ok.Stats(); s.Sent != 0 || s.Connects != 1 || s.SMTPConnects != 1 {
		t.Fatalf("Verify: %+v; want one IMAP and one SMTP connection and nothing sent", s)
	}
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := closed.Addr().String()
	closed.Close()
	for _, tc := range []struct {
		name string
		edit func(*mailbox.Config)
		want []string
	}{
		{"wrong password", func(c *mailbox.Config) { c.Password = "wrong" }, []string{"IMAP server " + r.IMAPAddr(), "log in as " + alice}},
		{"no SMTP server", func(c *mailbox.Config) { c.SMTPAddr = deadAddr }, []string{"connect to SMTP server " + deadAddr}},
		{"the IMAP port given for SMTP", func(c *mailbox.Config) { c.SMTPAddr = r.IMAPAddr() }, []string{"SMTP server " + r.IMAPAddr()}},
		{"an address the login may not send as", func(c *mailbox.Config) { c.Address = "mallory@example.test" }, []string{"SMTP server " + r.SMTPAddr(), "MAIL FROM mallory@example.test", "553"}},
	} {
		tr := newTransport(t, r, alice, tc.edit)
		err := tr.Verify(ctx)
		for _, want := range tc.want {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Verify with %s = %v; want it to mention %q", tc.name, err, want)
			}
		}
		if err != nil && strings.Contains(err.Error(), "send mail") {
			t.Errorf("Verify with %s = %q: no mail was being sent", tc.name, err)
		}
	}
}
