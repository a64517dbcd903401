package sealpost_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/sealpost/sealpost/compress"
	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/session"
)

// commandText is a realistic command payload: shell-like argv and environment lines.
func commandText(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "exec /usr/bin/rsync --archive --delete /srv/data/shard-%03d/ backup%d.example.org:/srv/mirror/ # %d\n", i%17, i%5, i)
	}
	return b.Bytes()[:n]
}

// BenchmarkPipeline4KiB carries a 4 KiB command the whole way that does not touch the network:
// compress, seal (Engine.Send, including the in-memory store's encoding), then on the responder
// open (Engine.Receive: parse, AEAD, replay window, ledger) and decompress.
func BenchmarkPipeline4KiB(b *testing.B) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	alice, _ := session.NewIdentity(seeded(1))
	bob, _ := session.NewIdentity(seeded(2))
	ast, bst := fixtures.NewMemStore(), fixtures.NewMemStore()
	ae, _ := session.NewEngine(session.Config{Identity: alice, Address: "alice@example.test", Now: clock})
	be, _ := session.NewEngine(session.Config{Identity: bob, Address: "bob@example.test", Now: clock})
	ast.PinPeer(session.PinnedPeer{Name: "bob", Address: "bob@example.test", PublicKey: bob.Public()})
	bst.PinPeer(session.PinnedPeer{Name: "alice", Address: "alice@example.test", PublicKey: alice.Public()})
	req, _, err := ae.StartSession(ast, bob.Fingerprint())
	if err != nil {
		b.Fatal(err)
	}
	out, err := be.Receive(bst, req)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ae.Receive(ast, out.Reply); err != nil {
		b.Fatal(err)
	}
	cmd := commandText(4 << 10)
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		frame, err := compress.Encode(cmd)
		if err != nil {
			b.Fatal(err)
		}
		h := sha256.Sum256(fmt.Append(nil, i))
		id := session.CommandID(h[:16])
		pkg, err := ae.Send(ast, bob.Fingerprint(), id, frame, now.Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		got, err := be.Receive(bst, pkg)
		if err != nil || got.Kind != session.Execute {
			b.Fatal(got.Kind, err)
		}
		plain, err := compress.Decode(got.Payload, 0)
		if err != nil || !bytes.Equal(plain, cmd) {
			b.Fatal("decoded command differs", err)
		}
		// Answer with an empty response, untimed, so the epoch window never fills.
		b.StopTimer()
		resp, err := be.Complete(bst, got.Ticket, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ae.Receive(ast, resp); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
