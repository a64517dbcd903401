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
	// Clock is decided on receipt only, rekey is never final, and unknown codes cannot be read.
	for _, code := range []session.ErrorCode{0, session.CodeClock, session.CodeRekey, 99} {
		before := b.st.Snapshot()
		if _, err := b.eng.Fail(b.st, out.Ticket, code, "x"); err == nil {
			t.Fatalf("Fail(%v) succeeded; only denied, bad-command, expired and outcome-unknown are answers Fail gives", code)
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

// TestReplaceResponse: a response the mail server refused for good is replaced in the ledger.
// The requester's retry gets the replacement, sealed for it, without the command running again;
// a duplicate of the transmission that ran gets nothing; only a recorded response can be replaced.
func TestReplaceResponse(t *testing.T) {
	a, b := pair(t)
	first := send(t, a, b, 1, "big")
	_ = execute(t, b, first) // the refused response: a never sees it

	if err := b.eng.ReplaceResponse(b.st, a.fp(), cmdID(2), []byte("x")); err == nil {
		t.Fatal("ReplaceResponse of an unknown command succeeded")
	}
	if err := b.eng.ReplaceResponse(b.st, a.fp(), cmdID(1), make([]byte, session.MaxPayload+1)); err == nil {
		t.Fatal("ReplaceResponse with an oversized payload succeeded")
	}
	if err := b.eng.ReplaceResponse(b.st, a.fp(), cmdID(1), []byte("too large to mail")); err != nil {
		t.Fatalf("ReplaceResponse: %v", err)
	}
	mustReject(t, b, first, session.ErrReplay)

	retry, err := a.eng.Retry(a.st, cmdID(1))
	if err != nil {
		t.Fatalf("Retry: %v", err)
	}
	out, err := b.eng.Receive(b.st, retry)
	if err != nil || out.Kind != session.Replied || out.Reply == nil {
		t.Fatalf("Receive(retry) = %v, %v; want the ledger's answer, not another execution", out.Kind, err)
	}
	got := deliver(t, a, out.Reply)
	if string(got.Payload) != "too large to mail" {
		t.Fatalf("requester got %q, want the replacement", got.Payload)
	}

	// A command answered with an error has no response to replace.
	out, err = b.eng.Receive(b.st, send(t, a, b, 3, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.eng.Fail(b.st, out.Ticket, session.CodeDenied, "no"); err != nil {
		t.Fatal(err)
	}
	if err := b.eng.ReplaceResponse(b.st, a.fp(), cmdID(3), []byte("x")); err == nil {
		t.Fatal("ReplaceResponse of a denied command succeeded")
	}
}
