package main

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// TestThreat30ForgedPairE2E is the black-box check of THREATS row 30: with two forged
// PAIR mails (addresses that the protocol's old check let through and the store refused) waiting
// in bob's inbox, alice's ping is answered within 10 s (the CLI's own --timeout; before the fix
// each such mail held the inbox for a minute or more).
func TestThreat30ForgedPairE2E(t *testing.T) {
	l := newCrashLab(t)
	l.handshake(t)
	inject := fixtures.SMTPInjector(l.smtp, "mallory@example.test")
	for _, addr := range []string{"x", "a b@c"} {
		raw, err := mailbox.ComposeMail("mallory@example.test", l.bobAddr, forgedPair(t, addr), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		inject(t, l.bobAddr, raw)
	}
	bob := l.startBob(t)
	defer l.stopBob(t, bob)
	mustOK(t, sp(t, l.env, "--state", l.alice, "ping", "bob", "--timeout", "10s"), "ping behind two forged PAIR mails")
	if got := len(l.inspect(t, l.bobAddr, "sealpost/rejected")); got < 2 {
		t.Fatalf("%d mails in bob's rejected folder; want the two forged ones", got)
	}
}

// forgedPair is fixtures.ForgedPair, failing the test on error.
func forgedPair(t *testing.T, address string) []byte {
	t.Helper()
	pkg, err := fixtures.ForgedPair(address)
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}
