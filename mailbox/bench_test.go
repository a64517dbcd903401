package mailbox_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// BenchmarkRoundTripRelay is the bare mail delivery floor: Send of a 300-byte package over SMTP,
// Receive(wait) woken by IDLE, Ack (MOVE), all through the embedded relay on loopback.
func BenchmarkRoundTripRelay(b *testing.B) {
	r := startRelay(b, mailbox.RelayConfig{})
	a := newTransport(b, r, alice, nil)
	rcv := newTransport(b, r, bob, nil)
	ctx := context.Background()
	pkg := fixtures.Package(300)
	_, cur, err := rcv.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := a.Send(ctx, bob, pkg); err != nil {
			b.Fatal(err)
		}
		msgs, next, err := rcv.Receive(ctx, cur, time.Hour, 0)
		if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Package, pkg) {
			b.Fatalf("Receive = %d messages, %v", len(msgs), err)
		}
		if err := rcv.Ack(ctx, msgs[0]); err != nil {
			b.Fatal(err)
		}
		cur = next
	}
	b.StopTimer()
	if st := rcv.Stats(); st.Connects != 1 {
		b.Errorf("%d IMAP connections, want 1", st.Connects)
	}
}

// BenchmarkComposeMail406 composes the mail for a 406-byte package (a small sealed command) and
// reports its size: the mail overhead over the package.
func BenchmarkComposeMail406(b *testing.B) {
	pkg := fixtures.Package(406)
	now := time.Now()
	var mail []byte
	for b.Loop() {
		var err error
		if mail, err = mailbox.ComposeMail(alice, bob, pkg, now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(mail)), "mail-bytes")
}

// BenchmarkParseMail406 parses that mail back.
func BenchmarkParseMail406(b *testing.B) {
	mail, err := mailbox.ComposeMail(alice, bob, fixtures.Package(406), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(mail)))
	for b.Loop() {
		if _, _, err := mailbox.ParseMail(mail, mailbox.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
