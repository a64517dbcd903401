package mailbox_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// TestEagerInterval: the wait before the next eager poll is half the time since Expect, at
// least 50 ms and at most 500 ms.
func TestEagerInterval(t *testing.T) {
	for _, c := range []struct{ elapsed, want time.Duration }{
		{0, 50 * time.Millisecond},
		{99 * time.Millisecond, 50 * time.Millisecond},
		{200 * time.Millisecond, 100 * time.Millisecond},
		{999 * time.Millisecond, 499500 * time.Microsecond},
		{time.Second, 500 * time.Millisecond},
		{time.Hour, 500 * time.Millisecond},
	} {
		if got := mailbox.EagerInterval(c.elapsed); got != c.want {
			t.Errorf("EagerInterval(%v) = %v, want %v", c.elapsed, got, c.want)
		}
	}
}

// TestEagerSchedule follows the schedule of one Expect on a fake clock: the polls come at
// 50, 100, 150, 225, 337.5 ms ... (each wait half the time since Expect), no more than seven in
// the first second, 500 ms apart after it, and none at or after the end; a zero end stops them
// at once, and a new Expect starts over at 50 ms.
func TestEagerSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr, err := mailbox.New(mailbox.Config{Address: bob, IMAPAddr: "127.0.0.1:1", SMTPAddr: "127.0.0.1:1", TLS: mailbox.TLSNone})
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := mailbox.EagerWait(tr); ok {
			t.Fatalf("before any Expect: eager wait %v; want none", d)
		}
		start := time.Now()
		tr.Expect(start.Add(5 * time.Second))
		var polls []time.Duration
		for {
			d, ok := mailbox.EagerWait(tr)
			if !ok {
				break
			}
			time.Sleep(d)                           // the bubble's fake clock
			if _, ok := mailbox.EagerWait(tr); ok { // a poll only while mail is expected
				polls = append(polls, time.Since(start))
			}
		}
		if end := time.Since(start); end != 5*time.Second {
			t.Errorf("eager polling ended %v after Expect, want 5s", end)
		}
		ms := time.Millisecond
		want := []time.Duration{50 * ms, 100 * ms, 150 * ms, 225 * ms, 337500 * time.Microsecond, 506250 * time.Microsecond}
		if len(polls) < len(want) || !slicesEqual(polls[:len(want)], want) {
			t.Fatalf("first polls at %v, want %v", polls, want)
		}
		first := 0
		for i, p := range polls {
			if p <= time.Second {
				first++
			}
			if p >= 5*time.Second {
				t.Errorf("poll at %v, at or after the end (5s)", p)
			}
			if i > 0 {
				if gap := p - polls[i-1]; gap > 500*ms || (i > 1 && gap < polls[i-1]-polls[i-2]) {
					t.Errorf("poll %d at %v: gap %v after %v; want growing gaps of at most 500ms", i, p, gap, polls[i-1]-polls[i-2])
				}
			}
		}
		if first > 7 {
			t.Errorf("%d polls in the first second, want at most 7", first)
		}
		if after := len(polls) - first; after > 9 { // 4 s at 500 ms
			t.Errorf("%d polls in seconds 1-5, want at most 9", after)
		}

		// A new Expect starts over; a zero end stops the polling at once.
		tr.Expect(time.Now().Add(time.Minute))
		if d, ok := mailbox.EagerWait(tr); !ok || d != 50*ms {
			t.Errorf("after a new Expect: eager wait %v, %v; want 50ms", d, ok)
		}
		time.Sleep(10 * time.Second) // the bubble's fake clock
		if d, ok := mailbox.EagerWait(tr); !ok || d != 500*ms {
			t.Errorf("10s into a 1-minute Expect: eager wait %v, %v; want 500ms", d, ok)
		}
		tr.Expect(time.Time{})
		if d, ok := mailbox.EagerWait(tr); ok {
			t.Errorf("after Expect(zero time): eager wait %v; want none", d)
		}
	})
}

func slicesEqual(a, b []time.Duration) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// waits records what each wait of a Receive was (SetWaitHook) and signals the first.
type waits struct {
	mu    sync.Mutex
	seen  []wait
	first chan struct{}
	once  sync.Once
	tr    *mailbox.IMAPSMTP
}

type wait struct {
	idle, eager bool
	polls       int // the transport's eager polls when the wait began
}

func recordWaits(t *testing.T, tr *mailbox.IMAPSMTP) *waits {
	w := &waits{first: make(chan struct{}), tr: tr}
	mailbox.SetWaitHook(t, func(idle, eager bool) {
		w.mu.Lock()
		w.seen = append(w.seen, wait{idle, eager, w.tr.Stats().EagerPolls})
		w.mu.Unlock()
		w.once.Do(func() { close(w.first) })
	})
	return w
}

func (w *waits) list() []wait {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]wait(nil), w.seen...)
}

// TestExpectSeesMailWithoutPush: a Receive waiting while mail is expected sees a mail that
// arrives during its wait at once, although the server never tells it (no IDLE, a poll an
// hour): its NOOPs make the server report the mail. Without Expect it would wait the hour.
func TestExpectSeesMailWithoutPush(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	a := newTransport(t, r, alice, nil)
	b := newTransport(t, r, bob, func(c *mailbox.Config) { c.DisableIDLE, c.PollInterval = true, time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, cur, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := recordWaits(t, b)
	b.Expect(time.Now().Add(time.Minute))
	type got struct {
		msgs []mailbox.Message
		err  error
	}
	done := make(chan got, 1)
	go func() {
		msgs, _, err := b.Receive(ctx, cur, time.Hour, 0)
		done <- got{msgs, err}
	}()
	<-w.first // the Receive scanned the empty inbox and waits: the mail comes after that
	pkg := fixtures.Package(40)
	if err := a.Send(ctx, bob, pkg); err != nil {
		t.Fatal(err)
	}
	g := <-done
	if g.err != nil || len(g.msgs) != 1 || !bytes.Equal(g.msgs[0].Package, pkg) {
		t.Fatalf("Receive while mail is expected = %d messages, %v; want the mail sent during the wait", len(g.msgs), g.err)
	}
	if st := b.Stats(); st.EagerPolls < 1 || st.PollWakeups != 0 {
		t.Errorf("stats %+v: want the mail found by eager polls, not by the hourly poll", st)
	}
	for _, x := range w.list() {
		if x.idle || !x.eager {
			t.Errorf("waits %+v: want every wait an eager one", w.list())
			break
		}
	}
}

// TestExpectWakesIdleAndEnds: Expect switches a Receive waiting in IDLE to eager polls, which
// end when the expectation does: the wait goes back to IDLE and sends no NOOP after that.
func TestExpectWakesIdleAndEnds(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	b := newTransport(t, r, bob, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	w := recordWaits(t, b)
	done := make(chan error, 1)
	go func() {
		_, _, err := b.Receive(ctx, mailbox.Cursor{}, 1500*time.Millisecond, 0)
		done <- err
	}()
	<-w.first
	const window = 600 * time.Millisecond
	b.Expect(time.Now().Add(window))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	seen := w.list()
	// idle (before Expect), eager ..., idle (after the window), idle (IDLE's re-issue bound is
	// the PollInterval, 30 s: no more).
	if len(seen) < 3 || !seen[0].idle || seen[0].eager || !seen[len(seen)-1].idle {
		t.Fatalf("waits %+v: want IDLE, eager polls, IDLE again", seen)
	}
	var eager int
	for _, x := range seen[1 : len(seen)-1] {
		if x.idle || !x.eager {
			t.Fatalf("waits %+v: want only eager waits between the IDLEs", seen)
		}
		eager++
	}
	polls := b.Stats().EagerPolls
	if last := seen[len(seen)-1].polls; polls != last {
		t.Errorf("%d eager polls at the end, %d when the wait went back to IDLE: want none after", polls, last)
	}
	// 50, 100, 150, 225, 337, 506 ms: at most 6 polls in a 600 ms window.
	if polls > 6 || eager > 7 {
		t.Errorf("%d eager polls (%d eager waits) in a %v window, want at most 6", polls, eager, window)
	}
}
