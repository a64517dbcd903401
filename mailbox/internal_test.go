package mailbox

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// zeroReader makes composeMail deterministic for the golden file.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i)
	}
	return len(p), nil
}

func TestComposeMailGolden(t *testing.T) {
	pkg := append([]byte(Magic), bytes.Repeat([]byte{0xAB, 0x00, 0x7F}, 134)...) // 406 bytes
	raw, err := composeMail("alice@relay.test", "bob@relay.test", pkg, time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), zeroReader{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "golden", "compose-406.eml")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(raw, want) {
		t.Errorf("composeMail differs from %s (run with -update if the change is intended):\n%s", path, raw)
	}
}

func TestBackoff(t *testing.T) {
	base, max := 200*time.Millisecond, 30*time.Second
	if d := backoff(base, max, 0); d != 0 {
		t.Errorf("backoff(0 failures) = %s, want 0", d)
	}
	for n := 1; n <= 40; n++ {
		full := max
		if n <= 8 {
			full = base << (n - 1) // 200ms .. 25.6s
		}
		for range 50 {
			d := backoff(base, max, n)
			if d < full/2 || d > full {
				t.Fatalf("backoff(%d failures) = %s, want within [%s, %s]", n, d, full/2, full)
			}
		}
	}
}

func TestWatchdog(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	w := newWatchedConn(a)
	go func() { // the peer trickles a byte every 20ms for 300ms, then goes silent
		buf := make([]byte, 1)
		for range 15 {
			if _, err := b.Write(buf); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	g := w.watch(context.Background(), 100*time.Millisecond)
	start := time.Now()
	buf := make([]byte, 1)
	var err error
	for err == nil {
		_, err = w.Read(buf)
	}
	timedOut, cancelled := g.stop()
	d := time.Since(start)
	if !timedOut || cancelled {
		t.Fatalf("watchdog: timedOut %v, cancelled %v after %s; want a timeout", timedOut, cancelled, d)
	}
	if d < 300*time.Millisecond || d > 1500*time.Millisecond {
		t.Errorf("watchdog closed the connection after %s: want after the trickle (300ms) plus about 100ms of silence", d)
	}

	// Cancellation closes at once; a stopped watchdog never fires.
	a2, b2 := net.Pipe()
	defer b2.Close()
	w2 := newWatchedConn(a2)
	ctx, cancel := context.WithCancel(context.Background())
	g2 := w2.watch(ctx, time.Hour)
	cancel()
	if _, err := w2.Read(buf); err == nil {
		t.Fatal("read succeeded on a cancelled connection")
	}
	if timedOut, cancelled := g2.stop(); timedOut || !cancelled {
		t.Errorf("after cancel: timedOut %v, cancelled %v", timedOut, cancelled)
	}
	a3, b3 := net.Pipe()
	defer b3.Close()
	w3 := newWatchedConn(a3)
	g3 := w3.watch(context.Background(), 10*time.Millisecond)
	g3.stop()
	time.Sleep(30 * time.Millisecond)
	go b3.Write([]byte{1})
	if _, err := w3.Read(buf); err != nil {
		t.Errorf("a stopped watchdog closed the connection: %v", err)
	}
}

// TestPlaintextGuardAtConnect: even with a configuration that slipped past New, credentials are
// never sent unencrypted unless consent was given and the peer really is loopback.
func TestPlaintextGuardAtConnect(t *testing.T) {
	r, err := StartRelay(context.Background(), RelayConfig{Users: map[string]string{"bob@relay.test": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s, err := Config{Address: "bob@relay.test", IMAPAddr: r.IMAPAddr(), SMTPAddr: r.SMTPAddr(), TLS: TLSNone, CommandTimeout: 2 * time.Second}.settings()
	if err != nil {
		t.Fatal(err)
	}
	s.Username, s.Password = "bob@relay.test", "pw" // credentials without consent
	tr := newIMAPSMTP(s)
	defer tr.Close()
	ctx := context.Background()
	if _, _, err := tr.Receive(ctx, Cursor{}, 0, 0); !errors.Is(err, ErrPlaintextCredentials) {
		t.Errorf("Receive = %v, want ErrPlaintextCredentials", err)
	}
	err = tr.Send(ctx, "bob@relay.test", []byte("SLPK"))
	var se *SendError
	if !errors.As(err, &se) || !errors.Is(err, ErrPlaintextCredentials) {
		t.Errorf("Send = %v, want a SendError wrapping ErrPlaintextCredentials", err)
	}
	if st := tr.Stats(); st.Connects != 0 || st.Sent != 0 {
		t.Errorf("stats %+v: nothing may have succeeded", st)
	}
}
