package mailbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// freezeProxy forwards TCP to a target and can freeze: it stops forwarding in both directions
// without closing anything, like a half-dead connection or a stalled middlebox. It records what
// the clients send (commands), to count the commands an exchange costs.
type freezeProxy struct {
	ln       net.Listener
	target   string
	mu       sync.Mutex
	cond     *sync.Cond
	frozen   bool
	closed   bool
	conns    []net.Conn
	cutOn    string // when a client sends this, every connection is closed before it is passed on
	accepted int    // client connections, in all
	sent     []byte // from the clients, since the last commands()
}

func newFreezeProxy(t *testing.T, target string) *freezeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezeProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *freezeProxy) addr() string { return p.ln.Addr().String() }

func (p *freezeProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.accepted++
		p.cond.Broadcast() // for waitAccepted
		p.mu.Unlock()
		go p.pipe(s, c, true)
		go p.pipe(c, s, false)
	}
}

func (p *freezeProxy) pipe(dst, src net.Conn, fromClient bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.frozen && !p.closed {
				p.cond.Wait()
			}
			closed := p.closed
			if fromClient && !closed {
				p.sent = append(p.sent, buf[:n]...)
				p.cond.Broadcast() // for waitSent
				if p.cutOn != "" && bytes.Contains(buf[:n], []byte(p.cutOn)) {
					p.cutOn = ""
					for _, c := range p.conns {
						c.Close()
					}
					p.conns = nil
					closed = true
				}
			}
			p.mu.Unlock()
			if closed {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitSent waits until the clients have sent text since the last commands() (text whole within
// what was sent), and fails the test after 5 s.
func (p *freezeProxy) waitSent(t *testing.T, text string) {
	t.Helper()
	p.waitUntil(t, fmt.Sprintf("the client sent %q", text), func() bool { return bytes.Contains(p.sent, []byte(text)) })
}

// waitAccepted waits until the proxy has accepted n client connections in all, and fails the
// test after 5 s.
func (p *freezeProxy) waitAccepted(t *testing.T, n int) {
	t.Helper()
	p.waitUntil(t, fmt.Sprintf("the proxy accepted %d connections", n), func() bool { return p.accepted >= n })
}

// waitUntil waits, on the proxy's condition variable, until cond (called with p.mu held) holds,
// and fails the test after 5 s or when the proxy closed first.
func (p *freezeProxy) waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	late := false
	timer := time.AfterFunc(5*time.Second, func() {
		p.mu.Lock()
		late = true
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for !cond() && !late && !p.closed {
		p.cond.Wait()
	}
	if !cond() {
		t.Fatalf("%s: not within 5 s", what)
	}
}

func (p *freezeProxy) freeze(on bool) {
	p.mu.Lock()
	p.frozen = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

// cut closes every connection made so far, as a server that drops idle clients does, and
// returns how many client connections it had accepted in all.
func (p *freezeProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
	return p.accepted
}

// cutWhen arms the proxy to close every connection when a client next sends text (the whole of
// it within one read), before that data reaches the server.
func (p *freezeProxy) cutWhen(text string) {
	p.mu.Lock()
	p.cutOn = text
	p.mu.Unlock()
}

func (p *freezeProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.cond.Broadcast()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

// TestSupervisorFrozenConnection: go-imap and go-smtp would hang on a connection that goes
// silent; the watchdog makes calls fail within about CommandTimeout, and the next call after the
// connection recovers reconnects (after the backoff) and works.
func TestSupervisorFrozenConnection(t *testing.T) {
	const timeout = 500 * time.Millisecond
	r := startRelay(t, mailbox.RelayConfig{})
	imapProxy, smtpProxy := newFreezeProxy(t, r.IMAPAddr()), newFreezeProxy(t, r.SMTPAddr())
	b := newTransport(t, r, bob, func(c *mailbox.Config) {
		c.IMAPAddr, c.SMTPAddr = imapProxy.addr(), smtpProxy.addr()
		c.CommandTimeout, c.DialTimeout = timeout, time.Second
		c.PollInterval = time.Second // also the IDLE re-issue bound
	})
	a := newTransport(t, r, alice, nil)
	ctx := context.Background()
	if err := b.Send(ctx, alice, fixtures.Package(20)); err != nil {
		t.Fatalf("Send before the freeze: %v", err)
	}
	_, cur, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if err != nil {
		t.Fatalf("Receive before the freeze: %v", err)
	}
	within := func(what string, start time.Time, bound time.Duration) {
		t.Helper()
		d := time.Since(start)
		t.Logf("%s: %s", what, d.Round(time.Millisecond))
		if d > bound {
			t.Errorf("%s took %s, want under %s", what, d, bound)
		}
	}

	imapProxy.freeze(true)
	smtpProxy.freeze(true)
	start := time.Now()
	_, _, err = b.Receive(ctx, cur, 0, 0)
	if !errors.Is(err, mailbox.ErrTimeout) {
		t.Errorf("Receive during the freeze = %v, want ErrTimeout", err)
	}
	within("Receive during the freeze", start, 4*timeout)

	start = time.Now()
	err = b.Send(ctx, alice, fixtures.Package(20))
	var se *mailbox.SendError
	if !errors.As(err, &se) || !se.Temporary || !errors.Is(err, mailbox.ErrTimeout) {
		t.Errorf("Send during the freeze = %v, want a temporary SendError wrapping ErrTimeout", err)
	}
	within("Send during the freeze", start, 4*timeout)

	// A Receive that waits in IDLE when the connection freezes notices at the next IDLE
	// re-issue (PollInterval) plus the command timeout.
	imapProxy.freeze(false)
	time.Sleep(300 * time.Millisecond) // the backoff after the failure above
	waiting := make(chan error, 1)
	go func() {
		_, _, err := b.Receive(ctx, cur, time.Hour, 0)
		waiting <- err
	}()
	time.Sleep(200 * time.Millisecond) // let it reconnect and settle into IDLE
	imapProxy.freeze(true)
	start = time.Now()
	select {
	case err := <-waiting:
		if !errors.Is(err, mailbox.ErrTimeout) {
			t.Errorf("Receive(wait) across the freeze = %v, want ErrTimeout", err)
		}
		within("Receive(wait) across the freeze", start, time.Second+4*timeout)
	case <-time.After(10 * time.Second):
		t.Fatalf("Receive(wait) hangs on a frozen connection")
	}

	imapProxy.freeze(false)
	smtpProxy.freeze(false)
	connects := b.Stats().Connects
	pkg := fixtures.Package(64)
	if err := a.Send(ctx, bob, pkg); err != nil {
		t.Fatal(err)
	}
	msgs, _, err := b.Receive(ctx, cur, 0, 0)
	if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Package, pkg) {
		t.Fatalf("Receive after the freeze = %d messages, %v; want the new package", len(msgs), err)
	}
	if b.Stats().Connects != connects+1 {
		t.Errorf("connects %d -> %d, want one reconnection", connects, b.Stats().Connects)
	}
	if err := b.Ack(ctx, msgs[0]); err != nil {
		t.Fatalf("Ack after the freeze: %v", err)
	}
	if err := b.Send(ctx, alice, fixtures.Package(20)); err != nil {
		t.Fatalf("Send after the freeze: %v", err)
	}
}

// TestSupervisorShortWaitReportsSilentServer: a wait much shorter than the command timeout
// still reports a silent server, in a call that ends the IDLE left by the wait before and in one
// that connects anew: the wait bounds the waiting, never a command to the server.
func TestSupervisorShortWaitReportsSilentServer(t *testing.T) {
	const timeout = 500 * time.Millisecond
	r := startRelay(t, mailbox.RelayConfig{})
	proxy := newFreezeProxy(t, r.IMAPAddr())
	b := newTransport(t, r, bob, func(c *mailbox.Config) {
		c.IMAPAddr, c.CommandTimeout, c.DialTimeout = proxy.addr(), timeout, time.Second
	})
	ctx := context.Background()
	if _, _, err := b.Receive(ctx, mailbox.Cursor{}, 50*time.Millisecond, 0); err != nil {
		t.Fatalf("Receive before the freeze: %v", err)
	}
	proxy.freeze(true)
	for i, what := range []string{"ending the IDLE", "connecting"} {
		_, _, err := b.Receive(ctx, mailbox.Cursor{}, 50*time.Millisecond, 0)
		if !errors.Is(err, mailbox.ErrTimeout) {
			t.Fatalf("Receive(wait 50ms) #%d (%s) on a silent server = %v; want ErrTimeout", i+1, what, err)
		}
		time.Sleep(300 * time.Millisecond) // the backoff after a failure
	}
	proxy.freeze(false)
}

// TestSupervisorContextCancel: a call whose context ends while the server is silent returns
// the context's error at once and does not wait for the command timeout.
func TestSupervisorContextCancel(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	proxy := newFreezeProxy(t, r.IMAPAddr())
	b := newTransport(t, r, bob, func(c *mailbox.Config) { c.IMAPAddr = proxy.addr(); c.CommandTimeout = 10 * time.Second })
	if _, _, err := b.Receive(context.Background(), mailbox.Cursor{}, 0, 0); err != nil {
		t.Fatal(err)
	}
	proxy.freeze(true)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive = %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Receive took %s after its context ended", d)
	}
	proxy.freeze(false)
	if _, _, err := b.Receive(context.Background(), mailbox.Cursor{}, 0, 0); err != nil {
		t.Errorf("Receive after the cancel: %v", err)
	}
}

// TestReconnectAfterServerDrop: when the server closes an idle connection, the next call
// reconnects by itself.
func TestReconnectAfterServerDrop(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	proxy := newFreezeProxy(t, r.IMAPAddr())
	b := newTransport(t, r, bob, func(c *mailbox.Config) { c.IMAPAddr = proxy.addr() })
	ctx := context.Background()
	if _, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0); err != nil {
		t.Fatal(err)
	}
	proxy.mu.Lock()
	for _, c := range proxy.conns {
		c.Close()
	}
	proxy.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	if _, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0); err != nil {
		t.Errorf("Receive after the server dropped the connection: %v", err)
	}
	if c := b.Stats().Connects; c != 2 {
		t.Errorf("%d connections, want 2", c)
	}
}
