package node

import (
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/mailbox"
)

// TestServeGivesUpOnRefusedLogin: an agent whose password the server keeps refusing ends with a
// *PermanentError saying so (a supervisor then shows it failed), after a few tries, not at the
// first refusal, and its status says "login" meanwhile.
func TestServeGivesUpOnRefusedLogin(t *testing.T) {
	l := newLab(t)
	l.bob.Close()
	wrong := func(mailbox.Transport) mailbox.Transport {
		tr, err := mailbox.New(mailbox.Config{Address: "bob@example.test", IMAPAddr: l.relay.IMAPAddr(), SMTPAddr: l.relay.SMTPAddr(),
			Username: "bob@example.test", Password: "not-bobs", TLS: "none", AllowPlaintextAuth: true, CommandTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	l.bob = l.open("bob", wrong, false)
	l.bob.serveBackoff = time.Millisecond
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
