package mailbox

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Eager polling: a node that has just mailed a command knows that an answer is coming, and one
// that has just answered a command knows that the next one often follows at once. IDLE is the
// wrong wait then: Dovecot holds its IDLE notice of new mail for about 500 ms (it batches the
// changes its index watch reports), so a round trip through two Dovecot mailboxes paid about
// 1 s for about 20 ms of delivery. Any command makes Dovecot look at the mailbox at once:
// measured on Dovecot 2.3 with a mail delivered by Postfix over LMTP, NOOP, UID SEARCH and a
// STATUS from a second connection all saw it on the first command after it landed (5-30 ms
// after the submission began), IDLE after 506-590 ms. NOOP is the cheapest of them (it
// returns no data but the EXISTS the unilateral-data handler looks for), so an eager wait
// sends NOOPs, and scans only when one reports EXISTS.

// The eager schedule: the wait before the next NOOP is half the time since Expect was called,
// at least eagerFirst and at most eagerMax. So a mail that lands a after the call is seen within
// max(eagerFirst, a/2) of landing (plus a NOOP's round trip), and the server gets at most one
// NOOP per eagerFirst (20 a second) however often Expect is called, about seven in the first
// second after one call, two a second after that (variables for tests). An answer cannot come
// sooner than two deliveries after its command (about 10 ms each on Dovecot + Postfix, measured),
// so a first wait shorter than 50 ms would mostly poll for nothing.
var (
	eagerFirst = 50 * time.Millisecond
	eagerMax   = 500 * time.Millisecond
)

// eagerInterval is the wait before the next eager poll, elapsed after the Expect call.
func eagerInterval(elapsed time.Duration) time.Duration {
	return min(max(elapsed/2, eagerFirst), eagerMax)
}

// Expect tells the transport that mail is likely to arrive before until: the node has just
// mailed a command and its answer is due, or has answered one and the next may follow soon. A
// Receive that waits for mail then polls the server with NOOP, at intervals that grow with the
// time since this call (50 ms, growing by half to at most 500 ms: at most 20 commands a second,
// about 7 in the first second after a call, 2 a second after it), instead of waiting for IDLE's
// notice, which Dovecot delays by about 500 ms; at until it waits in IDLE again. A Receive already waiting in IDLE is woken to
// switch. Each call restarts the schedule at its shortest interval and replaces until; a zero
// or past until ends the eager polling. It never blocks and needs no connection.
func (t *IMAPSMTP) Expect(until time.Time) {
	t.eagerMu.Lock()
	t.eagerFrom, t.eagerUntil = time.Now(), until
	t.eagerMu.Unlock()
	signal(t.kick)
}

// eager returns the wait before the next eager poll at now, and false when no mail is expected
// (the wait is IDLE's, or the poll interval's without IDLE).
func (t *IMAPSMTP) eager(now time.Time) (time.Duration, bool) {
	t.eagerMu.Lock()
	from, until := t.eagerFrom, t.eagerUntil
	t.eagerMu.Unlock()
	if !now.Before(until) {
		return 0, false
	}
	return min(eagerInterval(now.Sub(from)), until.Sub(now)), true
}

// noop is one eager poll: a NOOP, which makes the server report mail delivered since the last
// command (the EXISTS signals t.wake). A NOOP cannot run while IDLE does; eager waits do not
// IDLE, but a call that ended one may have left it to this one.
func (t *IMAPSMTP) noop(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := t.ensure(ctx); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	t.count(func(s *Stats) { s.EagerPolls++ })
	return t.do(ctx, "noop", func(c *imapConn) error {
		if err := c.endIdle(); err != nil {
			return err
		}
		if c.selected != t.s.Inbox || c.readOnly {
			// Another call left another folder selected: a NOOP there says nothing of the
			// inbox, so let the scan select it (a SELECT shows the folder as it is now).
			signal(t.wake)
			return nil
		}
		if err := c.c.Noop().Wait(); err != nil {
			return fmt.Errorf("noop: %w", err)
		}
		return nil
	})
}

// onWait, when set (tests), is called each time a Receive begins to wait after a scan or an
// eager poll: idle says that an IDLE runs, eager that the wait ends in an eager poll.
var onWait atomic.Pointer[func(idle, eager bool)]
