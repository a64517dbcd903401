package mailbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// TestIdleReissue: one IDLE never runs longer than the PollInterval bound (servers drop long
// IDLEs); re-issuing it does not reconnect.
func TestIdleReissue(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	b := newTransport(t, r, bob, func(c *mailbox.Config) { c.PollInterval = 100 * time.Millisecond })
	if _, _, err := b.Receive(context.Background(), mailbox.Cursor{}, 0, 0); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 650*time.Millisecond)
	defer cancel()
	msgs, _, err := b.Receive(ctx, mailbox.Cursor{}, time.Hour, 0)
	if !errors.Is(err, context.DeadlineExceeded) || len(msgs) != 0 {
		t.Fatalf("Receive(wait) on an empty inbox = %d messages, %v; want the context's end", len(msgs), err)
	}
	st := b.Stats()
	if st.PollWakeups < 3 || st.Connects != 1 {
		t.Errorf("stats %+v: want IDLE re-issued at least 3 times on one connection", st)
	}
	// The IDLE left running by the cancelled Receive does not get in the way of the next call.
	a := newTransport(t, r, alice, nil)
	pkg := fixtures.Package(30)
	if err := a.Send(context.Background(), bob, pkg); err != nil {
		t.Fatal(err)
	}
	msgs, _, err = b.Receive(context.Background(), mailbox.Cursor{}, time.Hour, 0)
	if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Package, pkg) {
		t.Fatalf("Receive after a cancelled wait = %d messages, %v", len(msgs), err)
	}
}

// TestAckWhileReceiveWaits: Ack and Reject interrupt the IDLE of a waiting Receive on the same
// transport instead of waiting for it, and the Receive goes back to waiting and still wakes up.
func TestAckWhileReceiveWaits(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	a := newTransport(t, r, alice, nil)
	b := newTransport(t, r, bob, nil)
	ctx := context.Background()
	if err := a.Send(ctx, bob, fixtures.Package(30)); err != nil {
		t.Fatal(err)
	}
	first, cur, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if err != nil || len(first) != 1 {
		t.Fatalf("Receive = %d, %v", len(first), err)
	}
	type result struct {
		msgs []mailbox.Message
		err  error
	}
	done := make(chan result, 1)
	go func() {
		msgs, _, err := b.Receive(ctx, cur, time.Hour, 0)
		done <- result{msgs, err}
	}()
	time.Sleep(100 * time.Millisecond) // into IDLE
	start := time.Now()
	if err := b.Ack(ctx, first[0]); err != nil {
		t.Fatalf("Ack during IDLE: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Ack during IDLE took %s", d)
	}
	select {
	case r := <-done:
		t.Fatalf("the waiting Receive returned after the Ack: %d messages, %v", len(r.msgs), r.err)
	case <-time.After(100 * time.Millisecond):
	}
	pkg := fixtures.Package(40)
	if err := a.Send(ctx, bob, pkg); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	select {
	case r := <-done:
		t.Logf("woken %s after the send", time.Since(sent))
		if r.err != nil || len(r.msgs) != 1 || !bytes.Equal(r.msgs[0].Package, pkg) {
			t.Fatalf("Receive(wait) = %d messages, %v; want the new package", len(r.msgs), r.err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the waiting Receive was not woken after the Ack")
	}
}

// TestCustomFolders: folder names given in Config are used as they are.
func TestCustomFolders(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	a := newTransport(t, r, alice, nil)
	b := newTransport(t, r, bob, func(c *mailbox.Config) { c.ProcessedFolder, c.RejectedFolder = "Archive/done", "Junk" })
	ctx := context.Background()
	for range 2 {
		if err := a.Send(ctx, bob, fixtures.Package(30)); err != nil {
			t.Fatal(err)
		}
	}
	msgs, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("Receive = %d, %v", len(msgs), err)
	}
	if err := b.Ack(ctx, msgs[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.Reject(ctx, msgs[1], "test"); err != nil {
		t.Fatal(err)
	}
	inspect := fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
	if len(inspect(t, bob, "Archive/done")) != 1 || len(inspect(t, bob, "Junk")) != 1 || len(inspect(t, bob, "sealpost/processed")) != 0 {
		t.Errorf("mail not moved to the configured folders")
	}
}

func TestNewValidates(t *testing.T) {
	ok := mailbox.Config{Address: bob, IMAPAddr: "imap.example.org:993", SMTPAddr: "smtp.example.org:465", Username: bob, Password: "pw"}
	for _, tc := range []struct {
		name string
		edit func(*mailbox.Config)
	}{
		{"no address", func(c *mailbox.Config) { c.Address = "" }},
		{"address with name", func(c *mailbox.Config) { c.Address = "Bob <" + bob + ">" }},
		{"IMAP without port", func(c *mailbox.Config) { c.IMAPAddr = "imap.example.org" }},
		{"SMTP empty", func(c *mailbox.Config) { c.SMTPAddr = "" }},
		{"TLS mode", func(c *mailbox.Config) { c.TLS = "ssl" }},
		{"CA file missing", func(c *mailbox.Config) { c.CAFile = "/nonexistent/ca.pem" }},
		{"processed is the inbox", func(c *mailbox.Config) { c.ProcessedFolder = "INBOX" }},
		{"processed is the inbox, in lower case", func(c *mailbox.Config) { c.ProcessedFolder = "inbox" }},
		{"rejected is the inbox, in mixed case", func(c *mailbox.Config) { c.RejectedFolder = "Inbox" }},
		{"processed is the rejected folder", func(c *mailbox.Config) { c.ProcessedFolder, c.RejectedFolder = "done", "done" }},
	} {
		cfg := ok
		tc.edit(&cfg)
		if _, err := mailbox.New(cfg); !errors.Is(err, mailbox.ErrConfig) {
			t.Errorf("New(%s) = %v, want ErrConfig", tc.name, err)
		}
	}
	if _, err := mailbox.New(ok); err != nil {
		t.Errorf("New(valid) = %v", err)
	}
}

// TestSendErrorClassification: what the outbox needs to decide between retry and give up.
func TestSendErrorClassification(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{MaxMessageBytes: 8 << 10})
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		edit      func(*mailbox.Config)
		to        string
		size      int
		temporary bool
		code      int
	}{
		{"unknown recipient", nil, "nobody@relay.test", 100, false, 550},
		{"too large", nil, bob, 16 << 10, false, 552},
		{"wrong password", func(c *mailbox.Config) { c.Password = "wrong" }, bob, 100, true, 535},
		{"server down", func(c *mailbox.Config) { c.SMTPAddr = closedPort(t) }, bob, 100, true, 0},
		{"no credentials", func(c *mailbox.Config) { c.Username, c.Password = "", "" }, bob, 100, true, 530},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newTransport(t, r, alice, tc.edit)
			err := a.Send(ctx, tc.to, fixtures.Package(tc.size))
			var se *mailbox.SendError
			if !errors.As(err, &se) || se.Temporary != tc.temporary || se.Code != tc.code {
				t.Fatalf("Send = %#v, want a SendError temporary=%v code=%d", err, tc.temporary, tc.code)
			}
		})
	}
}

func closedPort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestRelaySMTPRules: mail to a user is accepted without authentication (as an MX would), mail
// from a user's address needs AUTH as that user, and nothing is relayed elsewhere.
func TestRelaySMTPRules(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	raw, _ := mailbox.ComposeMail(alice, bob, fixtures.Package(20), time.Now())
	send := func(auth sasl.Client, from, to string) error {
		c, err := smtp.Dial(r.SMTPAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if auth != nil {
			if err := c.Auth(auth); err != nil {
				return err
			}
		}
		return c.SendMail(from, []string{to}, bytes.NewReader(raw))
	}
	code := func(err error) int {
		var se *smtp.SMTPError
		if errors.As(err, &se) {
			return se.Code
		}
		return 0
	}
	for _, tc := range []struct {
		name     string
		auth     sasl.Client
		from, to string
		code     int
	}{
		{"outside sender to a user", nil, "someone@elsewhere.test", bob, 0},
		{"user's address without auth", nil, alice, bob, 530},
		{"authenticated user", sasl.NewPlainClient("", alice, relayUsers[alice]), alice, bob, 0},
		{"someone else's address", sasl.NewPlainClient("", alice, relayUsers[alice]), bob, bob, 553},
		{"relaying", sasl.NewPlainClient("", alice, relayUsers[alice]), alice, "x@elsewhere.test", 550},
		{"wrong password", sasl.NewPlainClient("", alice, "nope"), alice, bob, 535},
	} {
		if got := code(send(tc.auth, tc.from, tc.to)); got != tc.code {
			t.Errorf("%s: SMTP code %d, want %d", tc.name, got, tc.code)
		}
	}
}

func TestRelayListening(t *testing.T) {
	if _, err := mailbox.StartRelay(context.Background(), mailbox.RelayConfig{Listen: "0.0.0.0", Users: relayUsers}); err == nil {
		t.Error("StartRelay on all interfaces without TLS succeeded; want a refusal")
	}
	if _, err := mailbox.StartRelay(context.Background(), mailbox.RelayConfig{}); err == nil {
		t.Error("StartRelay without users succeeded")
	}
	port := func(addr string) int {
		_, p, _ := net.SplitHostPort(addr)
		n, _ := strconv.Atoi(p)
		return n
	}
	free := port(closedPort(t))
	r := startRelay(t, mailbox.RelayConfig{SMTPPort: free})
	if port(r.SMTPAddr()) != free || port(r.IMAPAddr()) == 0 || r.IMAPAddr() == r.SMTPAddr() {
		t.Errorf("relay on %s and %s, want SMTP on %d and IMAP on a bound free port", r.SMTPAddr(), r.IMAPAddr(), free)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r2, err := mailbox.StartRelay(ctx, mailbox.RelayConfig{Users: relayUsers})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r2.IMAPAddr(), 100*time.Millisecond)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the relay still listens after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestImports: the package uses the standard library, emersion's mail libraries and bbolt (the
// relay's store, with what bbolt needs) only, and no other sealpost package (DESIGN.md section 2;
// the module's deps test checks the latter too).
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if p != "github.com/sealpost/sealpost/mailbox" && !strings.HasPrefix(p, "github.com/emersion/") &&
			!strings.HasPrefix(p, "go.etcd.io/bbolt") && !strings.HasPrefix(p, "golang.org/x/sys/") {
			t.Errorf("mailbox depends on %s", p)
		}
	}
}

// TestReceiveBounds: one scan looks at a bounded number of UIDs (a big inbox of foreign mail is
// worked through in slices, without waiting in between) and one call downloads a bounded
// number of bytes.
func TestReceiveBounds(t *testing.T) {
	mailbox.SetLookPerScan(t, 8)
	r := startRelay(t, mailbox.RelayConfig{})
	inject := fixtures.SMTPInjector(r.SMTPAddr(), "mx@elsewhere.test")
	b := newTransport(t, r, bob, func(c *mailbox.Config) { c.PollInterval = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 30 {
		inject(t, bob, crlf("From: x@elsewhere.test\nTo: "+bob+"\nSubject: "+strconv.Itoa(i)+"\n\nhi\n"))
	}
	pkg := fixtures.Package(50)
	raw, _ := mailbox.ComposeMail(alice, bob, pkg, time.Now())
	inject(t, bob, raw)
	for _, wait := range []time.Duration{0, time.Hour} {
		msgs, cur, err := b.Receive(ctx, mailbox.Cursor{}, wait, 0)
		if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Package, pkg) || cur.LastUID != 31 {
			t.Fatalf("Receive(wait=%v) behind 30 foreign mails = %d messages, cursor %+v, %v; want the package and LastUID 31", wait, len(msgs), cur, err)
		}
	}
	// A wait that is over (here before the first scan ends) stops after that scan, with the
	// cursor past the 8 mails it looked at; the next call goes on from there.
	msgs, cur, err := b.Receive(ctx, mailbox.Cursor{}, time.Nanosecond, 0)
	if err != nil || len(msgs) != 0 || cur.LastUID != 8 {
		t.Fatalf("Receive(wait=1ns) behind 30 foreign mails = %d messages, cursor %+v, %v; want none and LastUID 8", len(msgs), cur, err)
	}
	if msgs, cur, err = b.Receive(ctx, cur, 0, 0); err != nil || len(msgs) != 1 || cur.LastUID != 31 {
		t.Fatalf("Receive(wait=0) from LastUID 8 = %d messages, cursor %+v, %v; want the package and LastUID 31", len(msgs), cur, err)
	}

	// 5 mails of about 40 KiB with a 64 KiB cap: at most 128 KiB per call.
	c := newTransport(t, r, alice, nil)
	for range 5 {
		raw, _ := mailbox.ComposeMail(bob, alice, fixtures.Package(30<<10), time.Now())
		inject(t, alice, raw)
	}
	var sizes []int
	cur = mailbox.Cursor{}
	for range 3 {
		msgs, next, err := c.Receive(ctx, cur, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(msgs))
		cur = next
	}
	if fmt.Sprint(sizes) != "[3 2 0]" {
		t.Errorf("5 mails of 40 KiB came back as %v, want [3 2 0]", sizes)
	}
}

// TestConcurrentFirstAcks: several connections acknowledging at once on a fresh mailbox all
// create (or find) the processed folder; CREATE's "already exists" race is not an error.
func TestConcurrentFirstAcks(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	inject := fixtures.SMTPInjector(r.SMTPAddr(), "mx@elsewhere.test")
	const n = 4
	for range 2 * n {
		raw, _ := mailbox.ComposeMail(alice, bob, fixtures.Package(20), time.Now())
		inject(t, bob, raw)
	}
	ctx := context.Background()
	trs := make([]*mailbox.IMAPSMTP, n)
	var msgs []mailbox.Message
	for i := range trs {
		trs[i] = newTransport(t, r, bob, nil)
		m, _, err := trs[i].Receive(ctx, mailbox.Cursor{}, 0, 0)
		if err != nil || len(m) != 2*n {
			t.Fatalf("Receive = %d, %v", len(m), err)
		}
		msgs = m
	}
	errs := make(chan error, 2*n)
	for i, tr := range trs {
		go func() {
			errs <- tr.Ack(ctx, msgs[i])
			errs <- tr.Reject(ctx, msgs[i+n], "test")
		}()
	}
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Errorf("concurrent first Ack/Reject: %v", err)
		}
	}
	inspect := fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
	if p, j := len(inspect(t, bob, "sealpost/processed")), len(inspect(t, bob, "sealpost/rejected")); p != n || j != n {
		t.Errorf("processed %d, rejected %d; want %d each", p, j, n)
	}
}
