package session_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/sealpost/sealpost/session"
)

func TestRejection(t *testing.T) {
	cases := []struct {
		err            error
		rejected, keep bool
	}{
		{fmt.Errorf("%w: x", session.ErrAuth), true, false},
		{&session.ParseError{Field: "magic", Msg: "bad"}, true, false},
		{session.ErrUnknownEpoch, true, false},
		{fmt.Errorf("%w (2 attempts left)", session.ErrPairingCode), true, true},
		{fmt.Errorf("%w: RSA", session.ErrHandshakeAborted), true, true},
		{errors.New("bbolt: database not open"), false, false},
		{session.ErrNoSession, false, false},
	}
	for _, c := range cases {
		if r, k := session.Rejection(c.err); r != c.rejected || k != c.keep {
			t.Errorf("Rejection(%v) = %v, %v; want %v, %v", c.err, r, k, c.rejected, c.keep)
		}
	}
	// Every rejection Receive produced in the threat tests is classified as one: a store that
	// only fails makes Receive return its error unclassified.
	a, b := pair(t)
	pkg := send(t, a, b, 1, "x")
	pkg[len(pkg)-1] ^= 1
	if _, err := b.eng.Receive(b.st, pkg); err == nil {
		t.Fatal("tampered package accepted")
	} else if r, _ := session.Rejection(err); !r {
		t.Fatalf("Rejection(%v) = false for a tampered package", err)
	}
}
