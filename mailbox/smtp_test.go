package mailbox_test

import (
	"bytes"
	"context"
	"errors"
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
	r := startRelay(t, mailbox.RelayConfig{})
	proxy := newFreezeProxy(t, r.SMTPAddr())
	a := newTransport(t, r, alice, func(c *mailbox.Config) { c.SMTPAddr = proxy.addr() })
	b := newTransport(t, r, bob, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

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
	if len(got) != len(sent) {
		t.Fatalf("%d mails arrived, %d were sent", len(got), len(sent))
	}
	for i := range sent {
		if !bytes.Equal(got[i].Package, sent[i]) {
			t.Fatalf("mail %d arrived with another package", i)
		}
	}
}

// lines returns the lines the clients sent since the last call (SMTP commands, and mail text).
func (p *freezeProxy) lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := strings.Split(string(p.sent), "\r\n")
	p.sent = nil
	return out
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
			r := startRelay(t, mailbox.RelayConfig{})
			proxy := newFreezeProxy(t, r.SMTPAddr())
			a := newTransport(t, r, alice, func(c *mailbox.Config) { c.SMTPAddr = proxy.addr() })
			b := newTransport(t, r, bob, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
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
			var msgs []mailbox.Message
			cur := mailbox.Cursor{}
			for len(msgs) < 2 {
				more, next, err := b.Receive(ctx, cur, time.Second, 0)
				if err != nil {
					t.Fatalf("Receive: %v", err)
				}
				if len(more) == 0 {
					break
				}
				msgs, cur = append(msgs, more...), next
			}
			if len(msgs) != 2 || !bytes.Equal(msgs[0].Package, first) || !bytes.Equal(msgs[1].Package, last) {
				t.Fatalf("bob received %d mails, want the first and the last", len(msgs))
			}
		})
	}
}
