package mailbox

import (
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// go-imap/v2 (beta.8) has no per-command timeout or context, and go-smtp resets the deadlines it
// sets after every command, so neither protects against a connection that stays open and goes
// silent. Every exchange therefore runs under a watchdog that closes the connection once nothing
// has moved for the command timeout (or the caller's context ends); closing it makes the library
// fail every pending command, and the next call reconnects. The watchdog measures silence, not
// total time, so a large mail on a slow link is not cut off while bytes keep arriving.

// watchedConn is a net.Conn that records when bytes last moved.
type watchedConn struct {
	net.Conn
	last atomic.Int64 // UnixNano of the last read or write that moved bytes
}

func newWatchedConn(c net.Conn) *watchedConn {
	w := &watchedConn{Conn: c}
	w.touch()
	return w
}

func (c *watchedConn) touch() { c.last.Store(time.Now().UnixNano()) }

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *watchedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.touch()
	}
	return n, err
}

// watch is one armed watchdog; stop it when the exchange is over.
type watch struct {
	mu        sync.Mutex
	t         *time.Timer
	done      bool
	timedOut  bool
	cancelled bool
	stopCtx   func() bool
}

// watch closes the connection when it has been silent for d, or when ctx ends, until stop is
// called.
func (c *watchedConn) watch(ctx context.Context, d time.Duration) *watch {
	w := &watch{}
	c.touch()
	var check func()
	check = func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.done {
			return
		}
		if idle := time.Duration(time.Now().UnixNano() - c.last.Load()); idle < d {
			w.t.Reset(d - idle)
			return
		}
		w.timedOut, w.done = true, true
		c.Conn.Close()
	}
	w.mu.Lock()
	w.t = time.AfterFunc(d, check)
	w.mu.Unlock()
	w.stopCtx = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.done {
			w.cancelled, w.done = true, true
			c.Conn.Close()
		}
	})
	return w
}

// stop disarms the watchdog and reports whether it closed the connection, and why.
func (w *watch) stop() (timedOut, cancelled bool) {
	w.stopCtx()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.t.Stop()
	return w.timedOut, w.cancelled
}

// backoff is the wait before reconnection attempt number failures+1: exponential from base, at
// most max, with equal jitter (half fixed, half random) so that many agents do not reconnect in
// step after a server restart.
func backoff(base, max time.Duration, failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := max
	if failures <= 30 {
		if x := base << (failures - 1); x > 0 && x < max {
			d = x
		}
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}
