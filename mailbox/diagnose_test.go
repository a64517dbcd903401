package mailbox_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// TestWrongServerDiagnosed: the common setup mistakes (implicit TLS against a plaintext or
// STARTTLS port, plaintext or STARTTLS against an implicit-TLS port, the IMAP and SMTP
// addresses swapped) come back from Receive and Send as a *WrongServerError that says what the
// server sent, whether the addresses look swapped and which TLS mode to try. The servers are
// the relay on loopback, plaintext or with implicit TLS, reached the wrong way.
func TestWrongServerDiagnosed(t *testing.T) {
	ca := newTestCA(t)
	plain := startRelay(t, mailbox.RelayConfig{})
	implicit := startRelay(t, mailbox.RelayConfig{TLS: ca.server, ImplicitTLS: true})
	type want struct {
		found   mailbox.Found
		swapped bool
		suggest mailbox.TLSMode
	}
	for _, tc := range []struct {
		name       string
		mode       mailbox.TLSMode
		imap, smtp string
		imapWant   want
		smtpWant   want
	}{
		{"implicit TLS on plaintext ports", mailbox.TLSImplicit, plain.IMAPAddr(), plain.SMTPAddr(),
			want{mailbox.FoundIMAP, false, mailbox.TLSStartTLS}, want{mailbox.FoundSMTP, false, mailbox.TLSStartTLS}},
		{"implicit TLS on swapped plaintext ports", mailbox.TLSImplicit, plain.SMTPAddr(), plain.IMAPAddr(),
			want{mailbox.FoundSMTP, true, mailbox.TLSStartTLS}, want{mailbox.FoundIMAP, true, mailbox.TLSStartTLS}},
		{"STARTTLS on swapped ports", mailbox.TLSStartTLS, plain.SMTPAddr(), plain.IMAPAddr(),
			want{mailbox.FoundSMTP, true, ""}, want{mailbox.FoundIMAP, true, ""}},
		{"plaintext on swapped ports", mailbox.TLSNone, plain.SMTPAddr(), plain.IMAPAddr(),
			want{mailbox.FoundSMTP, true, ""}, want{mailbox.FoundIMAP, true, ""}},
		{"STARTTLS on implicit-TLS ports", mailbox.TLSStartTLS, implicit.IMAPAddr(), implicit.SMTPAddr(),
			want{mailbox.FoundNothing, false, mailbox.TLSImplicit}, want{mailbox.FoundNothing, false, mailbox.TLSImplicit}},
		{"plaintext on implicit-TLS ports", mailbox.TLSNone, implicit.IMAPAddr(), implicit.SMTPAddr(),
			want{mailbox.FoundNothing, false, mailbox.TLSImplicit}, want{mailbox.FoundNothing, false, mailbox.TLSImplicit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTransport(t, plain, alice, func(c *mailbox.Config) {
				c.TLS, c.RootCAs, c.IMAPAddr, c.SMTPAddr = tc.mode, ca.pool, tc.imap, tc.smtp
				// An implicit-TLS server says nothing until the client speaks TLS: the watchdog
				// ends the wait for a greeting.
				c.CommandTimeout = time.Second
			})
			_, _, err := tr.Receive(context.Background(), mailbox.Cursor{}, 0, 0)
			checkWrongServer(t, "Receive", err, "IMAP", tc.mode, tc.imapWant.found, tc.imapWant.swapped, tc.imapWant.suggest)
			err = tr.Send(context.Background(), bob, fixtures.Package(10))
			var se *mailbox.SendError
			if !errors.As(err, &se) {
				t.Fatalf("Send = %v, want a *SendError", err)
			}
			checkWrongServer(t, "Send", err, "SMTP", tc.mode, tc.smtpWant.found, tc.smtpWant.swapped, tc.smtpWant.suggest)
		})
	}
}

func checkWrongServer(t *testing.T, call string, err error, server string, mode mailbox.TLSMode, found mailbox.Found, swapped bool, suggest mailbox.TLSMode) {
	t.Helper()
	var we *mailbox.WrongServerError
	if !errors.As(err, &we) {
		t.Fatalf("%s = %v, want a *WrongServerError", call, err)
	}
	if we.Server != server || we.TLS != mode || we.Found != found || we.Swapped() != swapped || we.Suggest() != suggest {
		t.Errorf("%s = %+v (swapped %v, suggest %q), want %s, %s, found %v, swapped %v, suggest %q",
			call, we, we.Swapped(), we.Suggest(), server, mode, found, swapped, suggest)
	}
}

// TestWrongServerOther: a listener that answers as neither mail protocol (a web server, say) is
// named as such, and a TLS record where a greeting should be says implicit TLS.
func TestWrongServerOther(t *testing.T) {
	for _, tc := range []struct {
		greeting string
		found    mailbox.Found
		suggest  mailbox.TLSMode
	}{
		{"HTTP/1.1 400 Bad Request\r\n\r\n", mailbox.FoundOther, ""},
		{"\x15\x03\x03\x00\x02\x02\x46", mailbox.FoundTLS, mailbox.TLSImplicit},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(tc.greeting))
				c.Close()
			}
		}()
		plain := startRelay(t, mailbox.RelayConfig{})
		tr := newTransport(t, plain, alice, func(c *mailbox.Config) { c.IMAPAddr, c.SMTPAddr = ln.Addr().String(), ln.Addr().String() })
		_, _, err = tr.Receive(context.Background(), mailbox.Cursor{}, 0, 0)
		checkWrongServer(t, "Receive", err, "IMAP", mailbox.TLSNone, tc.found, false, tc.suggest)
		err = tr.Send(context.Background(), bob, fixtures.Package(10))
		checkWrongServer(t, "Send", err, "SMTP", mailbox.TLSNone, tc.found, false, tc.suggest)
	}
}
