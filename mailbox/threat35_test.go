package mailbox_test

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

const (
	// heapBound is what the client may hold at its peak while a server attacks it.
	heapBound = 64 << 20
	// hostileBound ends an attack that the client does not end by itself.
	hostileBound = 1 << 30
	// threat35MailCap is the mail cap of the attacked transport.
	threat35MailCap = 1 << 20
)

// TestThreat35EndlessServer: a mail server that sends an endless line, an endless multi-line
// reply or an oversized literal has its connection dropped at a byte cap, the client returns a
// *TooLongError that says which server and which cap, and the client's heap stays below 64
// MiB at its peak (THREATS.md row 35). Each server greets (or starts to), then streams until
// the client closes the connection or 1 GiB has gone out.
func TestThreat35EndlessServer(t *testing.T) {
	greeting := "* OK [CAPABILITY IMAP4rev1] hostile\r\n"
	repeat := func(unit string) func(w io.Writer) { return func(w io.Writer) { writeForever(w, []byte(unit)) } }
	ascending := func(w io.Writer) { // "1 3 5 7 ...": each UID its own range in go-imap's set
		var b []byte
		for i := 1; ; i += 2 {
			b = strconv.AppendInt(append(b, ' '), int64(i), 10)
			if len(b) >= 64<<10 {
				if _, err := w.Write(b); err != nil {
					return
				}
				b = b[:0]
			}
		}
	}
	for _, tc := range []struct {
		name   string
		server string // "IMAP" or "SMTP"
		prefix string
		stream func(w io.Writer)
		what   string
		cap    int64
		size   int64
	}{
		{"IMAP endless greeting", "IMAP", "* OK ", repeat("A"), "response", mailbox.MaxIMAPLine, 0},
		{"IMAP endless untagged line", "IMAP", greeting + "* OK ", repeat("A"), "response", mailbox.MaxIMAPLine, 0},
		{"IMAP endless quoted string", "IMAP", greeting + "* LIST () \"/\" \"", repeat("AAAAAAA\r\n"), "response", mailbox.MaxIMAPLine, 0},
		{"IMAP endless response code", "IMAP", greeting + "* OK [X-HOSTILE ", repeat("AAAAAAA\r\n"), "response", mailbox.MaxIMAPLine, 0},
		{"IMAP oversized literal", "IMAP", greeting + "* 1 FETCH (BODY[] {4000000000}\r\n", repeat("x"), "literal", threat35MailCap, 4000000000},
		{"IMAP endless string after a literal", "IMAP", greeting + "* 1 FETCH (BODY[] {1000}\r\n" + strings.Repeat("x", 1000) + " BODY[1] \"", repeat("A"), "response", mailbox.MaxIMAPLine, 0},
		// Unsolicited, so go-imap keeps none of the UIDs: this checks the framing's cap.
		{"IMAP endless SEARCH", "IMAP", greeting + "* SEARCH", ascending, "response", mailbox.MaxIMAPSearch, 0},
		{"SMTP endless line", "SMTP", "220 ", repeat("A"), "reply line", mailbox.MaxSMTPLine, 0},
		{"SMTP endless multi-line greeting", "SMTP", "", repeat("220-hostile " + strings.Repeat("x", 60) + "\r\n"), "reply", mailbox.MaxSMTPReply, 0},
		{"SMTP endless multi-line EHLO reply", "SMTP", "220 hostile\r\n", repeat("250-" + strings.Repeat("x", 60) + "\r\n"), "reply", mailbox.MaxSMTPReply, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHostile(t, tc.prefix, tc.stream)
			cfg := mailbox.Config{
				Address: bob, IMAPAddr: h.addr(), SMTPAddr: h.addr(), TLS: mailbox.TLSNone,
				MaxMessageBytes: threat35MailCap, CommandTimeout: 5 * time.Second,
			}
			tr, err := mailbox.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			ctx := context.Background()
			peak := peakHeap(h.abort, func() {
				if tc.server == "IMAP" {
					_, _, err = tr.Receive(ctx, mailbox.Cursor{}, 0, 0)
				} else {
					err = tr.Send(ctx, alice, fixtures.Package(100))
				}
			})
			t.Logf("peak heap %.1f MiB; the server sent %.1f MiB; %v", float64(peak)/(1<<20), float64(h.sent())/(1<<20), err)
			var tl *mailbox.TooLongError
			if !errors.Is(err, mailbox.ErrServerTooLong) || !errors.As(err, &tl) {
				t.Errorf("%s call = %v, want a *TooLongError", tc.server, err)
			} else if tl.Server != tc.server || tl.Addr != h.addr() || tl.What != tc.what || tl.Cap != tc.cap || tl.Size != tc.size {
				t.Errorf("%s call = %+v, want %s server %s, %s, cap %d, size %d", tc.server, *tl, tc.server, h.addr(), tc.what, tc.cap, tc.size)
			}
			if se := (*mailbox.SendError)(nil); tc.server == "SMTP" && (!errors.As(err, &se) || !se.Temporary) {
				t.Errorf("Send = %v, want a temporary SendError", err)
			}
			if peak >= heapBound {
				t.Errorf("peak heap %d bytes, want < %d", peak, heapBound)
			}
		})
	}
}

// writeForever writes unit over and over, in chunks of about 64 KiB, until a write fails.
func writeForever(w io.Writer, unit []byte) {
	chunk := make([]byte, 0, 64<<10+len(unit))
	for len(chunk) < 64<<10 {
		chunk = append(chunk, unit...)
	}
	for {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// hostile is a mail server on loopback that writes prefix to each connection, then stream,
// up to hostileBound bytes in all, and reads and discards whatever the client sends.
type hostile struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	n     int64
	done  sync.WaitGroup
}

func startHostile(t *testing.T, prefix string, stream func(w io.Writer)) *hostile {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostile{ln: ln}
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
			h.done.Add(2)
			go func() {
				defer h.done.Done()
				io.Copy(io.Discard, c)
			}()
			go func() {
				defer h.done.Done()
				defer c.Close()
				w := &boundedWriter{h: h, w: c}
				if _, err := io.WriteString(w, prefix); err == nil {
					stream(w)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		h.abort()
		h.done.Wait()
	})
	return h
}

func (h *hostile) addr() string { return h.ln.Addr().String() }

func (h *hostile) sent() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// abort ends the attack: no more connections, and the open ones are closed.
func (h *hostile) abort() {
	h.ln.Close()
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
}

// boundedWriter fails once the server has sent hostileBound bytes.
type boundedWriter struct {
	h *hostile
	w io.Writer
}

var errBound = errors.New("hostile server: bound reached")

func (b *boundedWriter) Write(p []byte) (int, error) {
	b.h.mu.Lock()
	over := b.h.n >= hostileBound
	b.h.mu.Unlock()
	if over {
		return 0, errBound
	}
	n, err := b.w.Write(p)
	b.h.mu.Lock()
	b.h.n += int64(n)
	b.h.mu.Unlock()
	return n, err
}

// peakHeap runs f and returns the highest heap (live and not yet swept objects) seen while it
// ran, sampled every half millisecond. Past heapBound it calls abort, so that a client without
// the caps fails the test without eating the machine's memory.
func peakHeap(abort func(), f func()) uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	stop, stopped := make(chan struct{}), make(chan uint64)
	go func() {
		var peak uint64
		tick := time.NewTicker(500 * time.Microsecond)
		defer tick.Stop()
		for {
			if h := read(); h > peak {
				peak = h
				if peak >= heapBound {
					abort()
				}
			}
			select {
			case <-stop:
				stopped <- peak
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(stop)
	return max(<-stopped, read())
}
