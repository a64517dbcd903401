package node

import (
	"context"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/mailbox"
)

// lateSend mails each package delay after it is handed over, as a slow mail system would
// deliver it: the mail lands well after its addressee began to wait for it.
type lateSend struct {
	mailbox.Transport
	delay time.Duration
}

func (s lateSend) Send(ctx context.Context, to string, pkg []byte) error {
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Transport.Send(ctx, to, pkg)
}

// TestWaitNoticesAnswerWithoutPush: a controller waiting for an answer notices it as soon as it
// lands, although its mailbox never tells it (no IDLE, a poll an hour: as Dovecot, whose IDLE
// notice comes 500 ms late, at its worst): mailing the command made its transport poll eagerly
// for the answer (expectMail). Without that, the answer would wait for the end of the mailbox
// wait (30 s). Both as `sealpost run` without an agent (Wait reads the mailbox) and under the
// agent (Serve reads it).
func TestWaitNoticesAnswerWithoutPush(t *testing.T) {
	for _, serving := range []bool{false, true} {
		name := "Wait"
		if serving {
			name = "Serve"
		}
		t.Run(name, func(t *testing.T) {
			l := newLab(t)
			// bob answers 300 ms late, long after alice began to wait.
			l.bob.Close()
			l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { return lateSend{tr, 300 * time.Millisecond} }, false)
			l.serveBob()
			defer l.stopBob()
			l.alice.Close()
			addr := "alice@example.test"
			tr, err := mailbox.New(mailbox.Config{Address: addr, IMAPAddr: l.relay.IMAPAddr(), SMTPAddr: l.relay.SMTPAddr(),
				Username: addr, Password: l.users[addr], TLS: "none", AllowPlaintextAuth: true, CommandTimeout: 5 * time.Second,
				DisableIDLE: true, PollInterval: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tr.Close() })
			l.alice, err = Open(Options{Dir: l.dirs["alice"], Transport: tr, RetryAfter: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.alice.Close() })
			if serving {
				ctx, cancel := context.WithCancel(l.ctx)
				done := make(chan struct{})
				go func() { defer close(done); l.alice.Serve(ctx, false) }()
				defer func() { cancel(); <-done }()
			}
			// Well under the 30 s mailbox wait that would notice the answer without eager polls.
			ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
			defer cancel()
			start := time.Now()
			r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}, true, nil)
			t.Logf("ping took %v, stats %+v", time.Since(start), tr.Stats())
			if err != nil || r.Status != StatusDone {
				t.Fatalf("ping: %+v, %v; want its answer noticed while alice polls for it", r, err)
			}
			if st := tr.Stats(); st.EagerPolls < 1 {
				t.Errorf("alice's transport %+v: want the answer found by eager polls", st)
			}
		})
	}
}
