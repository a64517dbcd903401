package mailbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IMAPSMTP is the Transport over an ordinary mailbox: it reads with IMAP (go-imap/v2) and sends
// with SMTP (go-smtp). It keeps one IMAP connection, owned by a supervisor: every exchange runs
// under a watchdog (Config.CommandTimeout), any failure closes the connection, and the next call
// reconnects after an exponential backoff (200 ms doubling to 30 s, with jitter). Sends go over
// SMTP connections kept open for a few seconds after each mail, at most Config.SMTPConnections
// of them at once. It is safe for concurrent use;
// Receive calls run one at a time, and an Ack, Reject, Prune or Processed made while a Receive
// waits in IDLE interrupts the IDLE and lets it resume. While mail is expected (Expect) a
// waiting Receive polls with NOOP instead of idling, as Dovecot delays its IDLE notices.
type IMAPSMTP struct {
	s *settings

	recvMu sync.Mutex // one Receive at a time
	mu     sync.Mutex // guards everything below: one IMAP exchange at a time
	conn   *imapConn  // nil when disconnected
	fails  int        // consecutive failed calls, for the backoff
	retry  time.Time  // no reconnection before this
	closed bool
	shut   atomic.Bool // closed, readable without mu (Send must not wait for an IMAP exchange)

	wake chan struct{} // cap 1: the unilateral-data handler saw EXISTS (new mail)
	kick chan struct{} // cap 1: another call ended the IDLE a Receive waits on, Expect ran, or Close ran

	eagerMu    sync.Mutex // guards the two below: mail is expected (eager.go)
	eagerFrom  time.Time  // when Expect was last called: the eager schedule counts from here
	eagerUntil time.Time  // the eager polling ends here

	smtpSlots chan struct{} // one per submission under way (cap Config.SMTPConnections)
	smtpMu    sync.Mutex    // guards smtpKept
	smtpKept  []*smtpConn   // kept connections no submission uses; the last one kept is last
	smtpSize  atomic.Int64  // 1 + the SIZE the server advertised at the last greeting; 0: no greeting yet (sizelimit.go)

	statsMu sync.Mutex
	stats   Stats
}

var _ Transport = (*IMAPSMTP)(nil)

// New validates cfg and returns a transport. It does not connect: the first call does. It refuses
// TLS "none" with credentials unless the servers are loopback and AllowPlaintextAuth is set.
func New(cfg Config) (*IMAPSMTP, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	return newIMAPSMTP(s), nil
}

func newIMAPSMTP(s *settings) *IMAPSMTP {
	return &IMAPSMTP{s: s, wake: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		smtpSlots: make(chan struct{}, s.SMTPConnections)}
}

// Stats returns counters of what the transport has done.
func (t *IMAPSMTP) Stats() Stats {
	t.statsMu.Lock()
	defer t.statsMu.Unlock()
	return t.stats
}

func (t *IMAPSMTP) count(f func(*Stats)) {
	t.statsMu.Lock()
	f(&t.stats)
	t.statsMu.Unlock()
}

// Close ends the kept SMTP connection, logs out and closes the IMAP connection; it returns nil
// (a server that is already gone is no error here). Later calls return ErrClosed.
func (t *IMAPSMTP) Close() error {
	t.shut.Store(true) // from now on Send refuses, and keeps no connection
	t.closeSMTP()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	signal(t.kick)
	c := t.conn
	if c == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.s.CommandTimeout)
	defer cancel()
	// A polite LOGOUT; if the server is gone or silent, the connection is closed all the same.
	_ = t.do(ctx, "logout", func(c *imapConn) error {
		if err := c.endIdle(); err != nil {
			return err
		}
		return c.c.Logout().Wait()
	})
	t.drop()
	return nil
}

// Verify logs in to both servers, as the first Receive and Send would, checks that the SMTP
// server takes mail from the node's address (MAIL FROM, then RSET), and returns the first
// failure, saying which server and which step. It sends and moves no mail. The connections stay
// open for the calls that follow.
func (t *IMAPSMTP) Verify(ctx context.Context) error {
	t.mu.Lock()
	_, err := t.ensure(ctx)
	t.mu.Unlock()
	if err != nil {
		return err
	}
	sc, err := t.dialSMTP(ctx)
	if err == nil {
		// The sender address too: a server may take the login but not mail from this address
		// (Postfix's smtpd_sender_login_maps). MAIL FROM, then RSET: nothing is sent.
		err = t.watched(ctx, sc, func() error {
			if err := sc.c.Mail(t.s.Address, nil); err != nil {
				return setupErr("MAIL FROM "+t.s.Address, err)
			}
			if err := sc.c.Reset(); err != nil {
				return setupErr("RSET", err)
			}
			return nil
		})
		if err != nil {
			sc.raw.Close()
		}
	}
	if err != nil {
		// No mail was being sent: say which server failed and how, not "send mail".
		if se := (*SendError)(nil); errors.As(err, &se) {
			err = se.Err
		}
		if !strings.HasPrefix(err.Error(), "connect to SMTP server") && !errors.Is(err, ErrServerTooLong) {
			err = fmt.Errorf("SMTP server %s: %w", t.s.SMTPAddr, err)
		}
		return err
	}
	t.keepSMTP(sc)
	return nil
}

// signal is a non-blocking send: the one thing the reader goroutine's handler may do.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

// ensure returns the live connection, connecting (after the backoff) when there is none. The
// caller holds t.mu.
func (t *IMAPSMTP) ensure(ctx context.Context) (*imapConn, error) {
	if t.closed {
		return nil, ErrClosed
	}
	if c := t.conn; c != nil {
		select {
		case <-c.c.Closed():
			if err := c.capped.tooLong(); err != nil {
				t.s.log.Info("IMAP connection was closed at a cap; reconnecting", "op", "connect", "mailbox", t.s.Inbox, "err", err)
			} else {
				t.s.log.Info("IMAP connection was closed; reconnecting", "op", "connect", "mailbox", t.s.Inbox)
			}
			t.drop()
		default:
			return c, nil
		}
	}
	if wait := time.Until(t.retry); wait > 0 {
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	c, err := t.connect(ctx)
	if err != nil {
		t.failed()
		return nil, err
	}
	t.conn = c
	t.count(func(s *Stats) { s.Connects++ })
	return c, nil
}

// failed records a failure for the backoff.
func (t *IMAPSMTP) failed() {
	t.fails++
	t.retry = time.Now().Add(backoff(t.s.backoffBase, t.s.backoffCap, t.fails))
}

// drop closes the connection; the next call reconnects.
func (t *IMAPSMTP) drop() {
	if t.conn != nil {
		t.conn.close()
		t.conn = nil
	}
}

// do runs one exchange on the connection under the watchdog. Any failure closes the connection
// (except ErrStaleMessage, which is the caller's, not the connection's) and counts towards the
// backoff; success resets it. The caller holds t.mu.
func (t *IMAPSMTP) do(ctx context.Context, op string, f func(c *imapConn) error) error {
	c := t.conn
	if c == nil {
		return fmt.Errorf("%s: %w", op, ErrClosed)
	}
	w := c.raw.watch(ctx, t.s.CommandTimeout)
	err := f(c)
	timedOut, cancelled := w.stop()
	tooLong := c.capped.tooLong()
	if err == nil && !timedOut && !cancelled {
		t.fails = 0
		return nil
	}
	if errors.Is(err, ErrStaleMessage) && !timedOut && !cancelled {
		return err
	}
	t.drop()
	t.failed()
	switch {
	case cancelled && ctx.Err() != nil:
		err = ctx.Err()
	case tooLong != nil:
		err = tooLong
	case timedOut:
		err = fmt.Errorf("%w (silent for %s; connection closed)", ErrTimeout, t.s.CommandTimeout)
	case err == nil:
		err = errors.New("connection closed")
	}
	t.s.log.Debug("IMAP connection dropped after a failure", "op", op, "mailbox", t.s.Inbox, "err", err)
	return fmt.Errorf("%s: %w", op, err)
}
