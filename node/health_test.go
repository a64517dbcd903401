package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
)

// TestServeGivesUpOnRefusedLogin: an agent whose password the server keeps refusing ends with a
// *PermanentError saying so (a supervisor then shows it failed), after a few tries, not at the
// first refusal, and its status says "login" meanwhile.
func TestServeGivesUpOnRefusedLogin(t *testing.T) {
	l := newLab(t)
	l.bob.Close()
	l.bob = l.open("bob", wrongPassword(t, l), false)
	l.bob.serveBackoff = time.Millisecond
	l.bob.health.span = time.Nanosecond
	err := l.bob.Serve(l.ctx, false)
	var pe *PermanentError
	if !errors.As(err, &pe) || pe.Server.Problem != ProblemLogin || pe.Server.Role != "imap" {
		t.Fatalf("Serve with a refused password = %v; want a *PermanentError for an IMAP login", err)
	}
	if l.bob.health.loginRefusals < loginRefusalsToGiveUp {
		t.Fatalf("gave up after %d refusals, want %d", l.bob.health.loginRefusals, loginRefusalsToGiveUp)
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Problem
	}{
		{nil, ProblemNone},
		{ErrSecretUnavailable, ProblemSecret},
		{mailbox.ErrCertificateUntrusted, ProblemTLS},
		{mailbox.ErrTimeout, ProblemConnect},
		{errors.New("something"), ProblemOther},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// TestOneFlushRoundCountsOneRefusal: an outbox of several mails meeting a refused SMTP login
// stops at the first (the others would each log in again and count as many refusals), and a
// burst of refusals within a moment does not end the agent.
func TestOneFlushRoundCountsOneRefusal(t *testing.T) {
	l := newLab(t)
	l.bob.Close()
	l.bob = l.open("bob", wrongPassword(t, l), false)
	var cause error
	giveUp := context.CancelCauseFunc(func(err error) { cause = err })
	l.bob.giveUp.Store(&giveUp)
	if err := l.bob.store.Update(func(tx *keystore.Tx) error {
		for range 5 {
			if _, err := tx.Enqueue(keystore.OutboxItem{To: "alice@example.test", Package: []byte(mailbox.Magic + "\x01 sealed")}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for range 5 { // five rounds at once: five refusals, but within a moment
		_ = l.bob.Flush(l.ctx)
		var items []keystore.OutboxItem
		l.bob.store.View(func(tx *keystore.Tx) error { items, _ = tx.Outbox(); return nil })
		for _, it := range items { // due again now
			it.NextAttempt = time.Time{}
			l.bob.store.Update(func(tx *keystore.Tx) error { return tx.PutOutbox(it) })
		}
	}
	var pe *PermanentError
	if errors.As(cause, &pe) {
		t.Fatalf("refusals within a moment ended the agent: %v", pe)
	}
	if got := l.bob.health.loginRefusals; got != 5 {
		t.Fatalf("five flush rounds counted %d refusals, want 5 (one a round)", got)
	}
}

// wrongPassword makes bob's transport log in with a password the relay refuses.
func wrongPassword(t *testing.T, l *lab) func(mailbox.Transport) mailbox.Transport {
	return func(mailbox.Transport) mailbox.Transport {
		tr, err := mailbox.New(mailbox.Config{Address: "bob@example.test", IMAPAddr: l.relay.IMAPAddr(), SMTPAddr: l.relay.SMTPAddr(),
			Username: "bob@example.test", Password: "not-bobs", TLS: "none", AllowPlaintextAuth: true, CommandTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
}
