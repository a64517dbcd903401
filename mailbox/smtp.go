package mailbox

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/emersion/go-smtp"
)

// Send implements Transport. Mails go out over SMTP connections that stay open between them,
// for at most smtpIdle after the last one: a backlog of answers then costs one TCP, TLS and AUTH
// setup per connection, not one per mail. Sends made at once use up to Config.SMTPConnections
// connections side by side. Every submission runs under the watchdog.
//
// Classification: a 4xx reply, a network failure or a timeout is temporary. A 5xx reply to RCPT
// or DATA, or a 552 to MAIL, concerns this mail (550: no such user, 552: too large) and is
// permanent. Any other 5xx (EHLO, STARTTLS, AUTH, a refused sender) and TLS or plaintext
// refusals are configuration trouble that a fix can cure without losing the mail, so they are
// reported as temporary too.
func (t *IMAPSMTP) Send(ctx context.Context, to string, pkg []byte) error {
	if t.shut.Load() {
		// Temporary: the mail was not sent and a new transport may send it; an outbox must not
		// drop it because the process is shutting down.
		return &SendError{Temporary: true, Err: ErrClosed}
	}
	mail, err := ComposeMail(t.s.Address, to, pkg, time.Now())
	if err != nil {
		return &SendError{Err: err}
	}
	if err := t.submit(ctx, to, mail); err != nil {
		return err
	}
	t.count(func(s *Stats) { s.Sent++ })
	return nil
}

// smtpIdle is how long a submission connection stays open after its last mail. Servers drop
// idle clients after minutes (Postfix: 300 s); an agent answering a backlog sends within
// milliseconds of the previous mail.
var smtpIdle = 10 * time.Second

// smtpConn is an open, authenticated submission connection.
type smtpConn struct {
	raw    *watchedConn
	capped *cappedConn // what the client reads from: raw or TLS over it, under the caps
	tls    bool        // the client runs over TLS
	c      *smtp.Client
	broken bool        // the watchdog closed it (set by watched)
	idle   *time.Timer // ends the connection after smtpIdle unused
	kept   uint64      // which keeping of it the idle timer belongs to (guarded by smtpMu)
}

// quitTimeout bounds the polite QUIT before a kept connection is closed: a server that has gone
// silent must not hold up Close or the next mail for long.
const quitTimeout = 2 * time.Second

// quit ends the connection politely when the server still listens, within quitTimeout (or the
// command timeout when that is shorter). Called without smtpMu held.
func (sc *smtpConn) quit(commandTimeout time.Duration) {
	d := min(quitTimeout, commandTimeout)
	sc.c.CommandTimeout = d // go-smtp sets this deadline for each command itself
	sc.raw.SetDeadline(time.Now().Add(d))
	_ = sc.c.Quit()
	sc.raw.Close()
}

// submit sends one mail over a kept connection, or a new one, once one of the
// Config.SMTPConnections slots is free. When a kept connection fails at the first command of the
// mail (MAIL FROM) without an answer from the server, or with 421 (closing the channel), the server
// had dropped it while it was idle: nothing of this mail reached it, so the mail is sent once more
// over a new connection. A failure at any later step is reported as it is: the server may hold part
// or all of the mail.
func (t *IMAPSMTP) submit(ctx context.Context, to string, mail []byte) error {
	select {
	case t.smtpSlots <- struct{}{}:
	case <-ctx.Done():
		return &SendError{Temporary: true, Err: fmt.Errorf("SMTP %s: %w", t.s.SMTPAddr, ctx.Err())}
	}
	defer func() { <-t.smtpSlots }()
	if sc := t.takeSMTP(); sc != nil {
		step, err := t.transact(ctx, sc, to, mail)
		if err == nil {
			t.keepSMTP(sc)
			return nil
		}
		sc.raw.Close()
		if step != stepMail || ctx.Err() != nil || !droppedWhileIdle(err) {
			return err
		}
		t.s.log.Debug("kept SMTP connection was closed; reconnecting", "op", "send", "err", err)
	}
	sc, err := t.dialSMTP(ctx)
	if err != nil {
		return err
	}
	if _, err := t.transact(ctx, sc, to, mail); err != nil {
		sc.raw.Close()
		return err
	}
	t.keepSMTP(sc)
	return nil
}

// takeSMTP returns the kept connection used last, or nil when none is kept.
func (t *IMAPSMTP) takeSMTP() *smtpConn {
	t.smtpMu.Lock()
	defer t.smtpMu.Unlock()
	k := len(t.smtpKept)
	if k == 0 {
		return nil
	}
	sc := t.smtpKept[k-1]
	t.smtpKept = t.smtpKept[:k-1]
	sc.idle.Stop()
	return sc
}

// droppedWhileIdle reports whether a failed MAIL FROM on a kept connection means the server
// had closed it: a temporary failure with no SMTP reply (the connection was gone), or 421.
func droppedWhileIdle(err error) bool {
	var se *SendError
	if !errors.As(err, &se) || !se.Temporary {
		return false
	}
	var reply *smtp.SMTPError
	return !errors.As(err, &reply) || reply.Code == 421
}

// keepSMTP keeps sc for the next mail, and ends it after smtpIdle unless one comes. No more
// connections are kept than submissions may run at once.
func (t *IMAPSMTP) keepSMTP(sc *smtpConn) {
	if sc.broken {
		sc.raw.Close()
		return
	}
	t.smtpMu.Lock()
	if t.shut.Load() || len(t.smtpKept) >= cap(t.smtpSlots) {
		t.smtpMu.Unlock()
		go sc.quit(t.s.CommandTimeout)
		return
	}
	t.smtpKept = append(t.smtpKept, sc)
	sc.kept++
	kept := sc.kept
	sc.idle = time.AfterFunc(smtpIdle, func() {
		t.smtpMu.Lock()
		i := slices.Index(t.smtpKept, sc)
		idle := i >= 0 && sc.kept == kept // not taken for a mail since
		if idle {
			t.smtpKept = slices.Delete(t.smtpKept, i, i+1)
		}
		t.smtpMu.Unlock()
		if idle {
			sc.quit(t.s.CommandTimeout)
		}
	})
	t.smtpMu.Unlock()
}

// closeSMTP ends the kept connections, if any.
func (t *IMAPSMTP) closeSMTP() {
	t.smtpMu.Lock()
	kept := t.smtpKept
	t.smtpKept = nil
	t.smtpMu.Unlock()
	for _, sc := range kept {
		sc.idle.Stop()
		sc.quit(t.s.CommandTimeout)
	}
}

// watched runs f under the watchdog of raw and turns a silent server or the end of ctx into the
// errors Send reports. A connection the watchdog closed is marked broken even when f succeeded
// just before, so that it is not kept.
func (t *IMAPSMTP) watched(ctx context.Context, sc *smtpConn, f func() error) error {
	w := sc.raw.watch(ctx, t.s.CommandTimeout)
	err := f()
	timedOut, cancelled := w.stop()
	tooLong := sc.capped.tooLong()
	if timedOut || cancelled || tooLong != nil {
		sc.broken = true
	}
	if err != nil && tooLong != nil && !(cancelled && ctx.Err() != nil) {
		// Whatever the library made of the closed connection: say which cap the server broke.
		return &SendError{Temporary: true, Err: tooLong}
	}
	var se *SendError
	if err == nil || !errors.As(err, &se) {
		return err
	}
	switch {
	case cancelled && ctx.Err() != nil:
		err = &SendError{Temporary: true, Err: fmt.Errorf("SMTP %s: %w", t.s.SMTPAddr, ctx.Err())}
	case timedOut || isNetTimeout(err):
		err = &SendError{Temporary: true, Err: keepDiagnosis(err, fmt.Errorf("SMTP %s: %w (silent for %s)", t.s.SMTPAddr, ErrTimeout, t.s.CommandTimeout))}
	}
	return err
}

// dialSMTP connects, sets up TLS, greets and authenticates. An OAuth2 token the server refused
// is retried with a fresh one on a new connection: after a failed AUTH go-smtp sends "*", which
// Postfix takes for a non-SMTP command and drops the connection.
func (t *IMAPSMTP) dialSMTP(ctx context.Context) (*smtpConn, error) {
	sc, err := t.dialSMTPTry(ctx, 1)
	if ae := (*AuthError)(nil); errors.As(err, &ae) && ae.Tries == 1 && t.s.retriesToken() && !errors.Is(ae, ErrMechanismUnavailable) {
		t.s.log.Info("the server refused the OAuth2 token; asking for a fresh one", "op", "login", "err", ae)
		sc, err = t.dialSMTPTry(ctx, 2)
	}
	return sc, err
}

// dialSMTPTry is one connection of dialSMTP; try is the number of its login attempt.
func (t *IMAPSMTP) dialSMTPTry(ctx context.Context, try int) (*smtpConn, error) {
	s := t.s
	d := net.Dialer{Timeout: s.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", s.SMTPAddr)
	if err != nil {
		return nil, &SendError{Temporary: true, Err: fmt.Errorf("connect to SMTP server %s: %w", s.SMTPAddr, err)}
	}
	t.count(func(s *Stats) { s.SMTPConnects++ })
	sc := &smtpConn{raw: newWatchedConn(nc)}
	err = t.watched(ctx, sc, func() error { return t.greet(ctx, sc, nc, try) })
	if err != nil {
		if sc.c != nil {
			sc.c.Close()
		}
		sc.raw.Close()
		return nil, err
	}
	return sc, nil
}

func (t *IMAPSMTP) greet(ctx context.Context, sc *smtpConn, nc net.Conn, try int) error {
	s := t.s
	// EHLO names the domain of our address, which the mail shows anyway, not this host.
	helo, _ := addrSpec(s.Address) // validated by New
	// The client reads through a cappedConn above TLS (see caps.go and starttls.go).
	capped := func(c net.Conn, pre string) *cappedConn {
		sc.capped = newCappedConn(c, sc.raw, "SMTP", s.SMTPAddr, newSMTPFramer(), pre)
		return sc.capped
	}
	var c *smtp.Client
	var fb *firstBytes // plaintext only: what the server sent first, for diagnose
	switch s.TLS {
	case TLSImplicit:
		tc := tls.Client(sc.raw, s.smtpTLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return &SendError{Temporary: true, Err: diagnose(tlsError(err, s.SMTPAddr), "SMTP", s.SMTPAddr, s.TLS, nil)}
		}
		sc.tls = true
		c = smtp.NewClient(capped(tc, ""))
	case TLSStartTLS:
		fb := &firstBytes{Conn: sc.raw} // for diagnose
		tc, err := smtpStartTLS(ctx, capped(fb, ""), sc.raw, s.smtpTLS, helo)
		if err != nil {
			return setupErr("STARTTLS", diagnose(tlsError(err, s.SMTPAddr), "SMTP", s.SMTPAddr, s.TLS, fb.first()))
		}
		sc.tls = true
		c = smtp.NewClient(capped(tc, smtpStandIn))
	default:
		fb = &firstBytes{Conn: sc.raw}
		c = smtp.NewClient(capped(fb, ""))
	}
	sc.c = c
	// The watchdog is the bound; go-smtp's own deadlines are a looser backstop.
	c.CommandTimeout, c.SubmissionTimeout = 2*s.CommandTimeout, 2*s.CommandTimeout
	if err := c.Hello(helo); err != nil {
		if fb != nil { // plaintext: Hello read the greeting
			err = diagnose(err, "SMTP", s.SMTPAddr, s.TLS, fb.first())
		}
		return setupErr("EHLO", tlsError(err, s.SMTPAddr))
	}
	t.learnSize(c.MaxMessageSize()) // the SIZE extension, for senders that size their mails (sizelimit.go)
	if !s.hasCredentials() {
		return nil
	}
	// go-smtp's TLSConnectionState sees only the cappedConn, not the TLS under it.
	if !sc.tls && !(s.AllowPlaintextAuth && isLoopbackConn(nc)) {
		return &SendError{Temporary: true, Err: fmt.Errorf("%w: the SMTP connection to %s is not encrypted; use --tls implicit or starttls", ErrPlaintextCredentials, s.SMTPAddr)}
	}
	if err := s.authenticate(ctx, smtpAuth{c, s.SMTPAddr}, try); err != nil {
		// Temporary: a login trouble is the configuration's, not the mail's (see Send).
		return setupErr("AUTH as "+s.loginUser(), err)
	}
	return nil
}

// Steps of a mail transaction, for telling a connection dropped while idle (it fails at the
// first) from a failure of this mail.
const (
	stepMail = iota + 1
	stepRcpt
	stepData
)

// transact sends one mail over an open connection and says at which step it failed.
func (t *IMAPSMTP) transact(ctx context.Context, sc *smtpConn, to string, mail []byte) (step int, err error) {
	err = t.watched(ctx, sc, func() error {
		c := sc.c
		if max, ok := c.MaxMessageSize(); ok && max > 0 && len(mail) > max {
			return &SendError{Code: 552, Err: fmt.Errorf("mail of %d bytes exceeds the server's SIZE %d", len(mail), max)}
		}
		step = stepMail
		if err := c.Mail(t.s.Address, &smtp.MailOptions{Size: int64(len(mail))}); err != nil {
			// A refused sender is our configuration (authentication required, address not
			// ours); only a refused size (552, from SIZE=) is about this mail.
			if se := mailErrOf("MAIL FROM", err); se.Code == 552 {
				return se
			}
			return setupErr("MAIL FROM", err)
		}
		step = stepRcpt
		if err := c.Rcpt(to, nil); err != nil {
			return mailErrOf("RCPT TO "+to, err)
		}
		step = stepData
		wc, err := c.Data()
		if err != nil {
			return mailErrOf("DATA", err)
		}
		if _, err := wc.Write(mail); err != nil {
			wc.Close()
			return mailErrOf("DATA", err)
		}
		if err := wc.Close(); err != nil {
			return mailErrOf("DATA", err)
		}
		return nil
	})
	return step, err
}

// setupErr classifies a failure before the mail transaction: always temporary.
func setupErr(step string, err error) *SendError {
	se := &SendError{Temporary: true, Err: fmt.Errorf("%s: %w", step, err)}
	var smtpErr *smtp.SMTPError
	if errors.As(err, &smtpErr) {
		se.Code = smtpErr.Code
	}
	return se
}

// mailErrOf classifies a failure in the mail transaction: 5xx permanent, the rest temporary.
func mailErrOf(step string, err error) *SendError {
	var smtpErr *smtp.SMTPError
	if errors.As(err, &smtpErr) {
		return &SendError{Temporary: !(smtpErr.Code >= 500 && smtpErr.Code < 600), Code: smtpErr.Code, Err: fmt.Errorf("%s: %w", step, err)}
	}
	return &SendError{Temporary: true, Err: fmt.Errorf("%s: %w", step, err)}
}

// isNetTimeout reports a network deadline that fired (go-smtp's own).
func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TooLarge reports whether the server refused the mail for its size: reply 552 (RFC 5321's
// "exceeded storage allocation", what SIZE refusals use) or the enhanced status 5.3.4
// ("message too big for system") or 5.2.3 ("message length exceeds administrative limit").
// A smaller mail might pass where this one cannot.
func (e *SendError) TooLarge() bool {
	if e.Temporary {
		return false
	}
	if e.Code == 552 {
		return true
	}
	var smtpErr *smtp.SMTPError
	if errors.As(e.Err, &smtpErr) {
		switch smtpErr.EnhancedCode {
		case smtp.EnhancedCode{5, 3, 4}, smtp.EnhancedCode{5, 2, 3}:
			return true
		}
	}
	return false
}
