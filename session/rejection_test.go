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
		// Inverted: whatever is not marked as the node's own trouble is the package's fault.
		{errors.New("some check added later"), true, false},
		{&session.LocalError{Op: "store session", Err: errors.New("bbolt: database not open")}, false, false},
		{fmt.Errorf("wrapped: %w", &session.LocalError{Op: "read randomness", Err: errors.New("eof")}), false, false},
		{nil, false, false},
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

// failStore fails every call with err once armed.
type failStore struct {
	session.Store
	err   error
	armed bool
}

func (f *failStore) Peer(fp session.Fingerprint) (session.PinnedPeer, bool, error) {
	if f.armed {
		return session.PinnedPeer{}, false, f.err
	}
	return f.Store.Peer(fp)
}

func (f *failStore) Session(id session.SessionID) (*session.State, bool, error) {
	if f.armed {
		return nil, false, f.err
	}
	return f.Store.Session(id)
}

// TestRejectionOfStoreErrors: Receive marks a Store's own failure as local (the mail stays), and a
// Store's refusal of a record derived from the package (ErrRefusedRecord) as a rejection.
func TestRejectionOfStoreErrors(t *testing.T) {
	a, b := pair(t)
	pkg := send(t, a, b, 1, "x")
	for _, c := range []struct {
		err      error
		rejected bool
	}{
		{errors.New("disk full"), false},
		{fmt.Errorf("keystore: invalid: %w", session.ErrRefusedRecord), true},
	} {
		fs := &failStore{Store: b.st, err: c.err, armed: true}
		_, err := b.eng.Receive(fs, pkg)
		if r, _ := session.Rejection(err); r != c.rejected || !errors.Is(err, c.err) {
			t.Errorf("Receive over a store failing with %v: Rejection(%v) = %v, want %v (and the cause kept)", c.err, err, r, c.rejected)
		}
	}
}
