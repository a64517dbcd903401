package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/mailbox"
)

// sizeRecorder remembers the size of the mail each Send composes.
type sizeRecorder struct {
	mailbox.Transport
	mu    sync.Mutex
	sizes map[string]int // package type -> composed mail bytes (last seen)
}

func (s *sizeRecorder) Send(ctx context.Context, to string, pkg []byte) error {
	mail, err := mailbox.ComposeMail("sender@example.test", to, pkg, time.Now())
	if err == nil {
		s.mu.Lock()
		s.sizes[packageType(pkg)] = len(mail)
		s.mu.Unlock()
	}
	return s.Transport.Send(ctx, to, pkg)
}

// BenchmarkPingRelay is one `ping` round trip after the handshake, through the embedded relay:
// alice seals and mails the command, bob's agent (woken by IDLE) answers, alice (also in IDLE)
// opens the answer. It reports the size of the whole mail carrying the command and the response.
func BenchmarkPingRelay(b *testing.B) {
	l := newLabTB(b)
	var rec *sizeRecorder
	l.alice.Close()
	l.alice = l.open("alice", func(tr mailbox.Transport) mailbox.Transport {
		rec = &sizeRecorder{Transport: tr, sizes: map[string]int{}}
		return rec
	}, false)
	var bobRec *sizeRecorder
	l.stopBob()
	l.bob.Close()
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport {
		bobRec = &sizeRecorder{Transport: tr, sizes: map[string]int{}}
		return bobRec
	}, false)
	l.serveBob()
	defer l.stopBob()
	ping := RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}
	if r, err := l.alice.Run(l.ctx, ping, true, nil); err != nil || r.Status != StatusDone { // handshake
		b.Fatal(r, err)
	}
	b.ResetTimer()
	for b.Loop() {
		r, err := l.alice.Run(l.ctx, ping, true, nil)
		if err != nil || r.Status != StatusDone {
			b.Fatal(r, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(rec.sizes["COMMAND"]), "cmd-mail-bytes")
	b.ReportMetric(float64(bobRec.sizes["RESPONSE"]), "resp-mail-bytes")
}
