package session_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/session"
)

func TestRoundTripRotatesEpoch(t *testing.T) {
	a, b := pair(t)
	for i := 1; i <= 5; i++ {
		out := roundTrip(t, a, b, i)
		if string(out.Payload) != "ok:cmd" {
			t.Fatalf("payload = %q, want %q", out.Payload, "ok:cmd")
		}
		if out.Epoch != uint64(i) {
			t.Fatalf("after response %d epoch = %d, want %d", i, out.Epoch, i)
		}
	}
}

func TestSendWithoutSession(t *testing.T) {
	a, _ := pair(t)
	c := newNode(t, "carol", 3, a.clock, fixtures.NewMemStore(), session.Config{})
	pin(t, a, c)
	if _, err := a.eng.Send(a.st, c.fp(), cmdID(1), []byte("x"), a.clock.now.Add(1e9)); err == nil {
		t.Fatal("Send to a peer without a session succeeded")
	}
}

func TestFailAcceptsOnlyFinalCodes(t *testing.T) {
	a, b := pair(t)
	out, err := b.eng.Receive(b.st, send(t, a, b, 1, "x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []session.ErrorCode{0, session.CodeExpired, session.CodeClock, session.CodeRekey, 99} {
		before := b.st.Snapshot()
		if _, err := b.eng.Fail(b.st, out.Ticket, code, "x"); err == nil {
			t.Fatalf("Fail(%v) succeeded; only denied, bad-command and outcome-unknown are final", code)
		}
		if b.st.Snapshot() != before {
			t.Fatalf("Fail(%v) changed state", code)
		}
	}
	// A long detail is cut at a character boundary and still opens.
	pkg, err := b.eng.Fail(b.st, out.Ticket, session.CodeDenied, strings.Repeat("€", 400))
	if err != nil {
		t.Fatal(err)
	}
	got, err := a.eng.Receive(a.st, pkg)
	if err != nil || !utf8.ValidString(got.Err.Detail) || len(got.Err.Detail) > session.MaxErrorDetail {
		t.Fatalf("long detail: %v, valid %v, %d bytes", err, utf8.ValidString(got.Err.Detail), len(got.Err.Detail))
	}
}
