package session_test

import (
	"testing"

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
	a, b := pair(t)
	c := newNode(t, "carol", 3, a.clock, a.st, session.Config{})
	_ = b
	pin(t, a, c)
	if _, err := a.eng.Send(a.st, c.fp(), cmdID(1), []byte("x"), a.clock.now.Add(1e9)); err == nil {
		t.Fatal("Send to a peer without a session succeeded")
	}
}
