package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// Fault tests of two nodes on the real Dovecot + Postfix of scripts/mailserver. They are skipped
// unless SEALPOST_MAILSERVER_ENV names its env file:
//
//	scripts/mailserver start
//	SEALPOST_MAILSERVER_ENV=/var/tmp/sealpost-mail/mailserver.env go test -count=1 -run TestReal -v ./node/
//	scripts/mailserver stop
//
// Both nodes reach the servers over STARTTLS (IMAP on the plain port, SMTP on submission),
// trusting the servers' CA. Each test starts from empty inboxes for alice and bob.

const (
	realAlice = "alice@sealpost.test"
	realBob   = "bob@sealpost.test"
)

// realLab is two nodes, alice (controller) and bob (agent), on the real servers.
type realLab struct {
	t       testing.TB
	ctx     context.Context
	ms      *fixtures.MailServer
	alice   *Node
	bob     *Node
	bobLog  *logRecorder
	counter string // the counting script appends a line here per run
	script  string // the counting script (allowed for alice)
	bobRun  context.CancelFunc
	bobEnd  chan struct{}
}

// realOpts adjusts one lab.
type realOpts struct {
	bobCommandTimeout time.Duration // bob's mailbox CommandTimeout (default 10s)
	bobRetryAfter     time.Duration // bob's RetryAfter, which bounds one mailbox wait (default 1s)
	aliceRetryAfter   time.Duration // alice's RetryAfter (default 1 min: no retransmissions)
	aliceTimeout      time.Duration // alice's mailbox CommandTimeout (default 10s)
	allow             []string      // more programs bob allows alice
	poll              time.Duration // > 0: both nodes poll at this interval, IDLE off (as on a server without IDLE)
	life              time.Duration // how long the lab's context lasts (default 90s; benchmarks need longer)
}

func newRealLab(t testing.TB, o realOpts) *realLab {
	t.Helper()
	ms := fixtures.RealMailServer(t)
	if o.life == 0 {
		o.life = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.life)
	t.Cleanup(cancel)
	if o.bobCommandTimeout == 0 {
		o.bobCommandTimeout = 10 * time.Second
	}
	if o.bobRetryAfter == 0 {
		o.bobRetryAfter = time.Second
	}
	if o.aliceRetryAfter == 0 {
		o.aliceRetryAfter = time.Minute
	}
	if o.aliceTimeout == 0 {
		o.aliceTimeout = 10 * time.Second
	}
	ms.DeleteAndRecreateInbox(t, realAlice)
	ms.DeleteAndRecreateInbox(t, realBob)
	l := &realLab{t: t, ctx: ctx, ms: ms, bobLog: &logRecorder{}}
	dir := t.TempDir()
	l.counter = filepath.Join(dir, "runs")
	l.script = filepath.Join(dir, "count")
	if err := os.WriteFile(l.script, []byte("#!/bin/sh\necho ran >> "+l.counter+"\necho counted\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	l.alice = l.open(realAlice, filepath.Join(dir, "alice"), o.aliceTimeout, o.aliceRetryAfter, o.poll, nil)
	l.bob = l.open(realBob, filepath.Join(dir, "bob"), o.bobCommandTimeout, o.bobRetryAfter, o.poll, slog.New(l.bobLog))
	l.pair(append([]string{"echo", l.script}, o.allow...))
	return l
}

// open opens a node for addr; poll > 0 turns IDLE off and polls at that interval.
func (l *realLab) open(addr, dir string, timeout, retry, poll time.Duration, logger *slog.Logger) *Node {
	l.t.Helper()
	tr, err := mailbox.New(mailbox.Config{
		Address: addr, IMAPAddr: l.ms.IMAPPlain, SMTPAddr: l.ms.SMTPStartTLS,
		Username: addr, Password: l.ms.Users[addr], TLS: mailbox.TLSStartTLS, CAFile: l.ms.CAFile,
		CommandTimeout: timeout, DialTimeout: 5 * time.Second, Logger: logger,
		PollInterval: poll, DisableIDLE: poll > 0,
	})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { tr.Close() })
	n, err := Init(Options{Dir: dir, Transport: tr, RetryAfter: retry, Logger: logger},
		MailConfig{Address: addr, IMAP: l.ms.IMAPPlain, SMTP: l.ms.SMTPStartTLS, Login: addr, TLS: "starttls", CAFile: l.ms.CAFile, PollInterval: poll})
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { n.Close() })
	return n
}

// pair pairs alice and bob by code and lets bob allow alice the given programs.
func (l *realLab) pair(allow []string) {
	l.t.Helper()
	added, err := l.alice.AddPeer(l.ctx, PeerSpec{Name: "bob", Address: realBob})
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Address: realAlice, Code: added.GeneratedCode, Allow: allow}); err != nil {
		l.t.Fatal(err)
	}
	l.poll("pairing", 20*time.Second, func() bool {
		l.alice.Pump(l.ctx, true, 300*time.Millisecond)
		l.bob.Pump(l.ctx, true, 300*time.Millisecond)
		a, _ := l.alice.Peers(l.ctx)
		b, _ := l.bob.Peers(l.ctx)
		return len(a) == 1 && a[0].Status == "paired" && len(b) == 1 && b[0].Status == "paired"
	})
}

// poll calls cond until it holds or d passes (then the test fails).
func (l *realLab) poll(what string, d time.Duration, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			l.t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *realLab) serveBob() {
	ctx, cancel := context.WithCancel(l.ctx)
	l.bobRun, l.bobEnd = cancel, make(chan struct{})
	go func() { defer close(l.bobEnd); l.bob.Serve(ctx, false) }()
	l.t.Cleanup(l.stopBob)
}

func (l *realLab) stopBob() {
	if l.bobRun != nil {
		l.bobRun()
		<-l.bobEnd
		l.bobRun = nil
	}
}

func (l *realLab) runs() int {
	b, _ := os.ReadFile(l.counter)
	return strings.Count(string(b), "ran\n")
}

// submit submits argv to bob; a send failure leaves the command in alice's outbox (ok here).
func (l *realLab) submit(argv ...string) session.CommandID {
	l.t.Helper()
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: argv}})
	if errors.Is(err, ErrNotMailed) {
		l.t.Logf("submit %v: %v (kept in alice's outbox)", argv, err)
	} else if err != nil {
		l.t.Fatalf("submit %v: %v", argv, err)
	}
	return id
}

// wait waits (alice reading her own mailbox) for id's final result.
func (l *realLab) wait(id session.CommandID, d time.Duration) Result {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(l.ctx, d)
	defer cancel()
	r, err := l.alice.Wait(ctx, id, nil)
	if err != nil {
		l.t.Fatalf("wait for %s: %v (result %+v)", id, err, r)
	}
	return r
}

// run runs argv on bob (bob must be serving) and wants it done.
func (l *realLab) run(argv ...string) Result {
	l.t.Helper()
	r := l.wait(l.submit(argv...), 20*time.Second)
	if r.Status != StatusDone || r.ExitCode != 0 {
		l.t.Fatalf("run %v: %+v", argv, r)
	}
	return r
}

func outbox(t testing.TB, n *Node) []keystore.OutboxItem {
	t.Helper()
	var items []keystore.OutboxItem
	if err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		items, err = tx.Outbox()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return items
}

// flushNow sends n's whole outbox at once, not waiting out the backoff.
func flushNow(t testing.TB, ctx context.Context, n *Node) error {
	t.Helper()
	for _, it := range outbox(t, n) {
		it.NextAttempt = time.Time{}
		if err := n.store.Update(func(tx *keystore.Tx) error { return tx.PutOutbox(it) }); err != nil {
			t.Fatal(err)
		}
	}
	return n.Flush(ctx)
}

func cursorOf(t testing.TB, n *Node) keystore.Cursor {
	t.Helper()
	var c keystore.Cursor
	if err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		c, _, err = tx.Cursor(inboxCursor)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// logRecorder is a slog.Handler that keeps every record as one line of text.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", rec.Time.Format("15:04:05.000"), rec.Level, rec.Message)
	rec.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	r.mu.Lock()
	r.lines = append(r.lines, b.String())
	r.mu.Unlock()
	return nil
}

// since returns the lines recorded from index i on, and the next index.
func (r *logRecorder) since(i int) ([]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines[min(i, len(r.lines)):]...), len(r.lines)
}

// inboxMail is one mail in a user's INBOX as an IMAP client sees it.
type inboxMail struct {
	MessageID string
	Subject   string
	Flags     []imap.Flag
}

// realInbox lists the user's INBOX (plaintext LOGIN on loopback, read-only).
func realInbox(t testing.TB, ms *fixtures.MailServer, user string) []inboxMail {
	t.Helper()
	c, err := imapclient.DialInsecure(ms.IMAPPlain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, ms.Users[user]).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var set imap.SeqSet
	set.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(set, &imap.FetchOptions{Envelope: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []inboxMail
	for _, m := range msgs {
		im := inboxMail{Flags: m.Flags}
		if m.Envelope != nil {
			im.MessageID, im.Subject = m.Envelope.MessageID, m.Envelope.Subject
		}
		out = append(out, im)
	}
	return out
}

func foreignMail(to, id, subject string) []byte {
	return []byte("From: Someone <someone@elsewhere.test>\r\nTo: " + to + "\r\nSubject: " + subject +
		"\r\nMessage-ID: <" + id + ">\r\nDate: " + time.Now().Format(time.RFC1123Z) +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nJust a letter, nothing for sealpost.\r\n")
}

// TestRealDovecotRestartDuringIdle: Dovecot goes away while bob's agent waits in IDLE; a command
// alice submits meanwhile runs exactly once after Dovecot is back, and alice gets its result.
func TestRealDovecotRestartDuringIdle(t *testing.T) {
	l := newRealLab(t, realOpts{bobRetryAfter: time.Second, aliceTimeout: 3 * time.Second})
	l.serveBob()
	l.run("echo", "warm-up")
	time.Sleep(300 * time.Millisecond) // let bob settle into IDLE again

	l.ms.StopDovecot(t)
	id := l.submit(l.script)
	t.Logf("with Dovecot down, alice's outbox holds %d items (0: Postfix took the command)", len(outbox(t, l.alice)))
	l.ms.StartDovecot(t)
	l.poll("alice's outbox flushed", 10*time.Second, func() bool {
		return flushNow(t, l.ctx, l.alice) == nil && len(outbox(t, l.alice)) == 0
	})

	r := l.wait(id, 25*time.Second)
	if r.Status != StatusDone || string(r.Stdout) != "counted\n" {
		t.Fatalf("result after Dovecot's restart: %+v", r)
	}
	// A late duplicate (a retransmission, mail seen twice) would show up as a second run.
	time.Sleep(time.Second)
	if n := l.runs(); n != 1 {
		t.Fatalf("the command ran %d times, want 1", n)
	}
}

// TestRealPostfixDownOutboxKeeps: bob runs a command while Postfix is down; his answer stays in
// his outbox and leaves once Postfix is back; the command ran once.
func TestRealPostfixDownOutboxKeeps(t *testing.T) {
	l := newRealLab(t, realOpts{})
	l.serveBob()
	l.run("echo", "warm-up")
	l.stopBob()

	id := l.submit(l.script)
	l.poll("the command in bob's inbox", 10*time.Second, func() bool { return fixtures.InboxCount(t, l.ms.IMAPPlain, realBob, l.ms.Users[realBob]) > 0 })
	l.ms.StopPostfix(t)
	if _, err := l.bob.Pump(l.ctx, false, 0); err != nil {
		t.Fatalf("bob's pump with Postfix down: %v", err)
	}
	if n := l.runs(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
	items := outbox(t, l.bob)
	if len(items) != 1 || items[0].Attempts == 0 || items[0].LastError == "" {
		t.Fatalf("bob's outbox with Postfix down: %+v; want the answer, tried and kept", items)
	}
	t.Logf("kept in bob's outbox: attempt %d, next %s, %s", items[0].Attempts, items[0].NextAttempt.Sub(time.Now()).Round(time.Millisecond), items[0].LastError)
	if err := flushNow(t, l.ctx, l.bob); err == nil {
		t.Fatal("a flush with Postfix down succeeded")
	}
	if items := outbox(t, l.bob); len(items) != 1 {
		t.Fatalf("a second failure dropped the answer: %+v", items)
	}

	l.ms.StartPostfix(t)
	l.poll("bob's outbox flushed", 10*time.Second, func() bool {
		return flushNow(t, l.ctx, l.bob) == nil && len(outbox(t, l.bob)) == 0
	})
	r := l.wait(id, 15*time.Second)
	if r.Status != StatusDone || string(r.Stdout) != "counted\n" {
		t.Fatalf("result: %+v", r)
	}
	if n := l.runs(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}

// postconfSize sets the real Postfix's message_size_limit and reloads it.
func postconfSize(t *testing.T, ms *fixtures.MailServer, limit int64) {
	t.Helper()
	conf := filepath.Join(ms.Dir, "postfix")
	for _, argv := range [][]string{
		{"postconf", "-c", conf, "-e", "message_size_limit=" + strconv.FormatInt(limit, 10)},
		{"postfix", "-c", conf, "reload"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
}

// TestRealOversizeMail: bob's answer is larger than Postfix accepts. The send is refused for
// good and dropped from the outbox instead of retried forever; bob's ledger keeps the result
// without its output, which alice's retry gets: her command ends failed, saying it ran and why its
// output is missing, and it ran once.
//
// Nothing the node sends reaches the servers' 10 MiB limit: a request is at most 64 KiB
// (commands.MaxRequestSize) and a result holds at most 1 MiB of stdout and 1 MiB of stderr
// (commands.DefaultMaxOutput; the per-peer policy stored by `peer add` has no way to raise it).
// So the test lowers Postfix's message_size_limit to 512 KiB for its duration and has bob print
// 1 MiB of random bytes.
func TestRealOversizeMail(t *testing.T) {
	ms := fixtures.RealMailServer(t)
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, nil, 0o755) // `peer add --allow` wants it to exist; the content follows
	l := newRealLab(t, realOpts{aliceRetryAfter: time.Second, allow: []string{big}})
	os.WriteFile(big, []byte("#!/bin/sh\necho ran >> "+l.counter+"\nhead -c 1048576 /dev/urandom\n"), 0o755)
	l.serveBob()
	l.run("echo", "warm-up")
	l.stopBob()

	// bob's submission connection from the warm-up may still be open: its smtpd keeps
	// advertising the old SIZE, and Postfix refuses the mail at the end of DATA instead of at
	// MAIL FROM. Both are 552, a refusal for size.
	const limit = 512 << 10
	t.Cleanup(func() { postconfSize(t, ms, ms.MaxMessageBytes) })
	postconfSize(t, ms, limit)

	id := l.submit(big)
	l.poll("the command in bob's inbox", 10*time.Second, func() bool { return fixtures.InboxCount(t, ms.IMAPPlain, realBob, ms.Users[realBob]) > 0 })
	_, mark := l.bobLog.since(0)
	if _, err := l.bob.Pump(l.ctx, false, 0); err != nil {
		t.Fatalf("bob's pump: %v", err)
	}
	if n := l.runs(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
	if items := outbox(t, l.bob); len(items) != 0 {
		t.Fatalf("bob keeps %d items after a permanent refusal (attempts %d, %s); want it dropped", len(items), items[0].Attempts, items[0].LastError)
	}
	lines, _ := l.bobLog.since(mark)
	refused := ""
	for _, s := range lines {
		if strings.Contains(s, "send failed") && strings.Contains(s, "permanent=true") {
			refused = s
		}
	}
	if refused == "" {
		t.Fatalf("no permanent send failure in bob's log:\n%s", strings.Join(lines, "\n"))
	}
	t.Logf("bob: %s", refused)

	// alice hears nothing; she sends the command again (RetryAfter 1s, doubling) and bob, who
	// ran it already, must not run it again.
	l.serveBob()
	ctx, cancel := context.WithTimeout(l.ctx, 8*time.Second)
	defer cancel()
	r, err := l.alice.Wait(ctx, id, nil)
	time.Sleep(500 * time.Millisecond)
	sends := 0
	lines, _ = l.bobLog.since(mark)
	for _, s := range lines {
		if strings.Contains(s, "send failed") && strings.Contains(s, "permanent=true") {
			sends++
		}
	}
	t.Logf("after 8s: alice's result %q (%q), err %v; bob's permanently refused sends: %d; runs %d", r.Status, r.Error, err, sends, l.runs())
	if n := l.runs(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
	if items := outbox(t, l.bob); len(items) != 0 {
		t.Fatalf("bob's outbox holds %d items; a refused answer must not stay", len(items))
	}
	if r.Status != StatusFailed || !strings.Contains(strings.ToLower(r.Error), "size") {
		t.Fatalf("alice's result: status %q, error %q; want %q with an error about the size", r.Status, r.Error, StatusFailed)
	}
	if sends != 1 {
		t.Fatalf("bob's answer was refused %d times; want once (the retry gets the small answer)", sends)
	}
}

// TestRealHalfOpenConnection: Dovecot freezes (connections open, silent). Bob's agent notices
// within its CommandTimeout (2s) instead of waiting forever, although each of its mailbox waits
// (RetryAfter, 500ms) is shorter than that: the wait bounds the waiting, never a command. After
// the thaw, a command sent meanwhile runs once.
func TestRealHalfOpenConnection(t *testing.T) {
	l := newRealLab(t, realOpts{bobCommandTimeout: 2 * time.Second, bobRetryAfter: 500 * time.Millisecond, aliceTimeout: 2 * time.Second})
	l.serveBob()
	l.run("echo", "warm-up")
	time.Sleep(300 * time.Millisecond) // bob back in IDLE

	_, mark := l.bobLog.since(0)
	l.ms.FreezeDovecot(t)
	frozen := time.Now()
	noticed := ""
	defer func() {
		if t.Failed() {
			lines, _ := l.bobLog.since(mark)
			t.Logf("bob's log since the freeze:\n%s", strings.Join(lines, "\n"))
		}
	}()
	l.poll("bob's agent noticing the silent server", 10*time.Second, func() bool {
		lines, _ := l.bobLog.since(mark)
		for _, s := range lines {
			if strings.Contains(s, "; retrying op=serve") {
				noticed = s
				return true
			}
		}
		return false
	})
	t.Logf("noticed %s after the freeze: %s", time.Since(frozen).Round(time.Millisecond), noticed)

	id := l.submit(l.script) // SMTP AUTH goes through Dovecot: this likely stays in alice's outbox
	l.ms.ThawDovecot(t)
	// alice, not serving, would retry her outbox only after a whole mailbox wait (pumpWait, up to
	// 30s): send it now.
	l.poll("alice's outbox flushed after the thaw", 10*time.Second, func() bool {
		return flushNow(t, l.ctx, l.alice) == nil && len(outbox(t, l.alice)) == 0
	})
	r := l.wait(id, 15*time.Second)
	if r.Status != StatusDone || string(r.Stdout) != "counted\n" {
		t.Fatalf("result after the thaw: %+v", r)
	}
	time.Sleep(time.Second)
	if n := l.runs(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}

// TestRealForeignMailUntouched: foreign mail, already in bob's inbox and arriving while his agent
// serves, stays in INBOX without \Seen while sealpost mail around it is processed.
func TestRealForeignMailUntouched(t *testing.T) {
	l := newRealLab(t, realOpts{})
	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	before, during := "before-"+nonce+"@elsewhere.test", "during-"+nonce+"@elsewhere.test"
	l.ms.WaitDelivered(t, l.ms.SubmitRaw(t, "someone@elsewhere.test", realBob, foreignMail(realBob, before, "before")), realBob)

	l.serveBob()
	l.run("echo", "one")
	l.ms.WaitDelivered(t, l.ms.SubmitRaw(t, "someone@elsewhere.test", realBob, foreignMail(realBob, during, "during")), realBob)
	l.run(l.script)
	l.run("echo", "three")
	if n := l.runs(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
	time.Sleep(500 * time.Millisecond) // a last chance for a stray flag or move to show
	inbox := realInbox(t, l.ms, realBob)
	found := map[string]bool{}
	for _, m := range inbox {
		id := strings.Trim(m.MessageID, "<>")
		if id != before && id != during {
			t.Errorf("INBOX still holds %q (%s, flags %v); sealpost mail should have been moved", m.Subject, m.MessageID, m.Flags)
			continue
		}
		found[id] = true
		for _, f := range m.Flags {
			if f == imap.FlagSeen || f == imap.FlagDeleted {
				t.Errorf("foreign mail %s got the flag %s", id, f)
			}
		}
	}
	if !found[before] || !found[during] {
		t.Fatalf("foreign mail gone from INBOX: %+v", inbox)
	}
}

// TestRealUIDValidityChange: bob's INBOX is deleted and recreated (UIDs restart, new
// UIDVALIDITY) and the mail of an earlier command comes back into it. Bob's agent reads the new
// inbox from UID 1 and runs nothing again; a new command works.
//
// Bob's agent is stopped while the INBOX is recreated: doveadm rebuilds the INBOX's index under
// the sessions that have it selected, and with the agent's session open Dovecot at times refused
// the recreate or the APPEND that follows ("Mailbox was deleted under us"), on the code of before
// this test's change as well. What the agent must do, read a new UIDVALIDITY from UID 1 and run
// nothing twice, is the same whether it finds the change at its next poll or at its next start.
func TestRealUIDValidityChange(t *testing.T) {
	l := newRealLab(t, realOpts{})
	l.serveBob()
	l.run(l.script)
	old := cursorOf(t, l.bob)
	l.stopBob()

	l.ms.DeleteAndRecreateInbox(t, realBob)
	pw := l.ms.Users[realBob]
	n := fixtures.ReinjectProcessed(t, l.ms.IMAPPlain, realBob, pw, 5)
	if n == 0 {
		t.Fatal("nothing re-injected")
	}
	l.serveBob()
	// The INBOX can look empty before bob's agent saw the new UIDVALIDITY: wait for both.
	l.poll("bob reading the recreated inbox and the re-injected mail", 20*time.Second, func() bool {
		return cursorOf(t, l.bob).UIDValidity != old.UIDValidity && fixtures.InboxCount(t, l.ms.IMAPPlain, realBob, pw) == 0
	})
	t.Logf("re-injected %d mails; bob's cursor %+v -> %+v", n, old, cursorOf(t, l.bob))
	if n := l.runs(); n != 1 {
		t.Fatalf("the counting command ran %d times after its mail came back, want 1", n)
	}
	if r := l.run("echo", "after"); string(r.Stdout) != "after\n" {
		t.Fatalf("after the recreate: %+v", r)
	}
	if n := l.runs(); n != 1 {
		t.Fatalf("ran %d times, want 1", n)
	}
}
