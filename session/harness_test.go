package session_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/session"
)

// t0 is the fake clock's start; tests move it by hand.
var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// node is one side of a test conversation.
type node struct {
	name  string
	id    *session.Identity
	addr  string
	st    *fixtures.MemStore
	eng   *session.Engine
	clock *clock
}

func (n *node) fp() session.Fingerprint { return n.id.Fingerprint() }

func seededReader(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}

func newNode(t testing.TB, name string, seed uint64, c *clock, st *fixtures.MemStore, cfg session.Config) *node {
	t.Helper()
	id, err := session.NewIdentity(seededReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	n := &node{name: name, id: id, addr: name + "@example.test", st: st, clock: c}
	cfg.Identity, cfg.Address, cfg.Now = id, n.addr, c.Now
	if cfg.Rand == nil {
		cfg.Rand = seededReader(seed + 1000)
	}
	n.eng, err = session.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// withConfig returns n with a different engine configuration over the same identity and store.
func (n *node) withConfig(t testing.TB, cfg session.Config) *node {
	t.Helper()
	cfg.Identity, cfg.Address, cfg.Now = n.id, n.addr, n.clock.Now
	eng, err := session.NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := *n
	m.eng = eng
	return &m
}

func pin(t testing.TB, a, b *node) {
	t.Helper()
	if err := a.st.PinPeer(session.PinnedPeer{Name: b.name, Address: b.addr, PublicKey: b.id.Public()}); err != nil {
		t.Fatal(err)
	}
	if err := b.st.PinPeer(session.PinnedPeer{Name: a.name, Address: a.addr, PublicKey: a.id.Public()}); err != nil {
		t.Fatal(err)
	}
}

// handshake runs INIT_REQ/INIT_RESP from a to b and fails the test on any error.
func handshake(t testing.TB, a, b *node) session.SessionID {
	t.Helper()
	req, id, err := a.eng.StartSession(a.st, b.fp())
	if err != nil {
		t.Fatalf("StartSession: %v", err)
	}
	out, err := b.eng.Receive(b.st, req)
	if err != nil || out.Kind != session.HandshakeAccepted {
		t.Fatalf("Receive(INIT_REQ) = %v, %v; want handshake-accepted", out.Kind, err)
	}
	out, err = a.eng.Receive(a.st, out.Reply)
	if err != nil || out.Kind != session.SessionConfirmed {
		t.Fatalf("Receive(INIT_RESP) = %v, %v; want session-confirmed", out.Kind, err)
	}
	return id
}

// established is a controller "alice" and an agent "bob" after one handshake, computed once (an
// RSA-3072 key generation is slow under -race) and cloned for each test.
var established struct {
	once   sync.Once
	aSt    *fixtures.MemStore
	bSt    *fixtures.MemStore
	sessID session.SessionID
}

var pairSeed atomic.Uint64

// pair returns alice and bob with a Confirmed session alice -> bob, on fresh copies of the state.
func pair(t testing.TB) (a, b *node) {
	t.Helper()
	established.once.Do(func() {
		c := &clock{now: t0}
		a := newNode(t, "alice", 1, c, fixtures.NewMemStore(), session.Config{})
		b := newNode(t, "bob", 2, c, fixtures.NewMemStore(), session.Config{})
		pin(t, a, b)
		established.sessID = handshake(t, a, b)
		established.aSt, established.bSt = a.st, b.st
	})
	if established.aSt == nil {
		t.Fatal("establishing the shared session failed in an earlier test")
	}
	c := &clock{now: t0.Add(time.Minute)}
	seed := pairSeed.Add(2) * 7919 // fresh randomness per copy, or copies would repeat session ids
	a = newNode(t, "alice", 1, c, established.aSt.Clone(), session.Config{Rand: seededReader(seed)})
	b = newNode(t, "bob", 2, c, established.bSt.Clone(), session.Config{Rand: seededReader(seed + 1)})
	return a, b
}

func cmdID(i int) session.CommandID {
	sum := sha256.Sum256([]byte{byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)})
	var c session.CommandID
	copy(c[:], sum[:16])
	return c
}

// send seals command i from a to b with a one-hour lifetime.
func send(t testing.TB, a, b *node, i int, payload string) []byte {
	t.Helper()
	pkg, err := a.eng.Send(a.st, b.fp(), cmdID(i), []byte(payload), a.clock.now.Add(time.Hour))
	if err != nil {
		t.Fatalf("Send(%d): %v", i, err)
	}
	return pkg
}

// execute has b receive a command package, expect Execute, and complete it with "ok:"+payload.
func execute(t testing.TB, b *node, pkg []byte) []byte {
	t.Helper()
	out, err := b.eng.Receive(b.st, pkg)
	if err != nil || out.Kind != session.Execute {
		t.Fatalf("Receive(COMMAND) = %v, %v; want execute", out.Kind, err)
	}
	resp, err := b.eng.Complete(b.st, out.Ticket, append([]byte("ok:"), out.Payload...))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	return resp
}

// deliver has a receive a response and expect it delivered.
func deliver(t testing.TB, a *node, pkg []byte) session.Outcome {
	t.Helper()
	out, err := a.eng.Receive(a.st, pkg)
	if err != nil || out.Kind != session.Delivered {
		t.Fatalf("Receive(RESPONSE) = %v, %v; want delivered", out.Kind, err)
	}
	return out
}

// roundTrip runs command i through to its delivered response.
func roundTrip(t testing.TB, a, b *node, i int) session.Outcome {
	t.Helper()
	return deliver(t, a, execute(t, b, send(t, a, b, i, "cmd")))
}

// mustReject asserts that n rejects pkg with want, leaving its state byte for byte unchanged.
func mustReject(t testing.TB, n *node, pkg []byte, want error) {
	t.Helper()
	before := n.st.Snapshot()
	out, err := n.eng.Receive(n.st, pkg)
	if err == nil {
		t.Fatalf("%s: Receive = %v, nil; want rejection %v", n.name, out.Kind, want)
	}
	if want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: Receive error = %v; want %v", n.name, err, want)
	}
	if out.Reply != nil || out.Kind != 0 {
		t.Fatalf("%s: rejected package produced outcome %v with reply %d bytes", n.name, out.Kind, len(out.Reply))
	}
	if after := n.st.Snapshot(); after != before {
		t.Fatalf("%s: state changed on rejection\nbefore:\n%s\nafter:\n%s", n.name, before, after)
	}
}
