package mailbox_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/mailbox"
)

// TestMailSizeBoundsComposeMail: MailSize is never below what ComposeMail makes, and at most a
// few hundred bytes above it, for packages of every size a sender cuts and long addresses.
func TestMailSizeBoundsComposeMail(t *testing.T) {
	long := strings.Repeat("x", 60) + "." + strings.Repeat("y", 60) + "@" + strings.Repeat("d", 63) + ".example.test"
	for _, addrs := range [][2]string{{"a@b.test", "c@d.test"}, {long, long}} {
		for _, n := range []int{4, 56, 57, 58, 1000, 65536 + 150, 1 << 20, 1<<20 + 150 + 65536} {
			pkg := append([]byte(mailbox.Magic), bytes.Repeat([]byte{0xa5}, n-len(mailbox.Magic))...)
			mail, err := mailbox.ComposeMail(addrs[0], addrs[1], pkg, time.Unix(1_700_000_000, 0))
			if err != nil {
				t.Fatal(err)
			}
			bound := mailbox.MailSize(addrs[0], addrs[1], n)
			if bound < int64(len(mail)) || bound > int64(len(mail))+800 {
				t.Errorf("MailSize(%d-char addresses, %d) = %d; ComposeMail made %d bytes", len(addrs[0]), n, bound, len(mail))
			}
		}
	}
}

// TestMaxMessageSizeFromSIZE: the transport learns the SIZE the relay advertises, connecting to
// learn it when it has not connected yet, and reports what it learned.
func TestMaxMessageSizeFromSIZE(t *testing.T) {
	for _, max := range []int64{40_000, mailbox.DefaultMaxMessageBytes} {
		r := startRelay(t, mailbox.RelayConfig{MaxMessageBytes: max})
		tr := newTransport(t, r, r.Addresses()[0], nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got, err := tr.MaxMessageSize(ctx)
		if err != nil || got != max {
			t.Fatalf("MaxMessageSize = %d, %v; want the relay's %d", got, err, max)
		}
		connects := tr.Stats().SMTPConnects
		if got, err := tr.MaxMessageSize(ctx); err != nil || got != max || tr.Stats().SMTPConnects != connects {
			t.Fatalf("again: %d, %v after %d connections (was %d); want %d without connecting", got, err, tr.Stats().SMTPConnects, connects, max)
		}
		// The connection made to learn it is the one the next mail goes over.
		if err := tr.Send(ctx, r.Addresses()[0], []byte(mailbox.Magic+"x")); err != nil || tr.Stats().SMTPConnects != connects {
			t.Fatalf("send: %v, %d connections (was %d)", err, tr.Stats().SMTPConnects, connects)
		}
	}
}
