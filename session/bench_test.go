package session_test

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/session"
)

// BenchmarkHandshake is one whole handshake, both sides: RSA-3072 and ML-KEM-768 key generation,
// INIT_REQ, INIT_RESP and its verification.
func BenchmarkHandshake(b *testing.B) {
	c := &clock{now: t0}
	a := newNode(b, "alice", 1, c, fixtures.NewMemStore(), session.Config{})
	r := newNode(b, "bob", 2, c, fixtures.NewMemStore(), session.Config{})
	pin(b, a, r)
	b.ReportAllocs()
	for b.Loop() {
		handshake(b, a, r)
	}
}

// BenchmarkRotation is one command round trip with its epoch rotation: Send, Receive and
// Complete on the responder, Receive on the initiator (four X25519 operations, two seals, two
// opens, the in-memory store's encoding).
func BenchmarkRotation(b *testing.B) {
	a, r := pair(b)
	payload := make([]byte, 200)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		pkg, err := a.eng.Send(a.st, r.fp(), cmdID(i), payload, a.clock.now.Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		deliver(b, a, execute(b, r, pkg))
	}
}
