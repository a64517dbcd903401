package mailbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

const processedFolder = "sealpost/processed"

// appendMail puts raw mails into a folder of user's mailbox as another mail client would,
// creating the folder when missing, each with the given flags.
func appendMail(t *testing.T, r *mailbox.Relay, user, folder string, flags []imap.Flag, raws ...[]byte) {
	t.Helper()
	c := relayClient(t, r, user)
	if err := c.Create(folder, nil).Wait(); err != nil {
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
			t.Fatalf("create %s: %v", folder, err)
		}
	}
	for _, raw := range raws {
		w := c.Append(folder, int64(len(raw)), &imap.AppendOptions{Flags: flags})
		if _, err := w.Write(raw); err != nil {
			t.Fatalf("append: %v", err)
		}
		if err := w.Close(); err != nil {
			t.Fatalf("append: %v", err)
		}
		if _, err := w.Wait(); err != nil {
			t.Fatalf("append: %v", err)
		}
	}
}

// relayClient is a plain IMAP client logged in as user, closed when the test ends.
func relayClient(t *testing.T, r *mailbox.Relay, user string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(r.IMAPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, r.Users()[user]).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func compose(t *testing.T, pkg []byte) []byte {
	t.Helper()
	raw, err := mailbox.ComposeMail(alice, bob, pkg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestProcessedChangesNothing: Processed (THREATS.md row 31's witness) reads the processed folder
// without changing anything: on a fresh mailbox it finds no folder and creates none; on a full
// one it opens the folder with EXAMINE, fetches with BODY.PEEK only, stores, copies, moves and
// expunges nothing, and the mail and its flags are as before. It returns the sealpost mail
// newest first, unusable mail with Err as Receive does (an oversize one not downloaded), and
// skips foreign mail and mail flagged \Deleted.
func TestProcessedChangesNothing(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	proxy := newFreezeProxy(t, r.IMAPAddr())
	b := newTransport(t, r, bob, func(c *mailbox.Config) { c.IMAPAddr = proxy.addr() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	got, err := b.Processed(ctx, 10)
	if err != nil || len(got) != 0 {
		t.Fatalf("Processed(10) on a fresh mailbox = %d messages, %v; want none, nil", len(got), err)
	}
	if cmds := proxy.commands(); count(cmds, "CREATE") != 0 || count(cmds, "EXAMINE") != 0 || count(cmds, "SELECT") != 1 {
		t.Errorf("Processed on a fresh mailbox sent %q; want the login's SELECT of the inbox, then a LIST, nothing created", cmds)
	}
	if l, err := relayClient(t, r, bob).List("", processedFolder, nil).Collect(); err != nil || len(l) != 0 {
		t.Fatalf("LIST %s after Processed = %d folders, %v; want none", processedFolder, len(l), err)
	}

	old, last := fixtures.Package(60), fixtures.Package(70)
	corrupt := crlf("From: " + alice + "\nTo: " + bob + "\nSubject: sealpost\nX-Sealpost: 1\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nTk9QRSBub3QgYSBwYWNrYWdl\n--b--\n")
	oversize := compose(t, fixtures.Package(contractCap))
	foreign := crlf("From: friend@elsewhere.test\nTo: " + bob + "\nSubject: filed here by hand\n\nhi\n")
	appendMail(t, r, bob, processedFolder, nil, compose(t, old), foreign)
	appendMail(t, r, bob, processedFolder, []imap.Flag{imap.FlagDeleted}, compose(t, fixtures.Package(80)))
	appendMail(t, r, bob, processedFolder, nil, oversize, corrupt)
	appendMail(t, r, bob, processedFolder, []imap.Flag{imap.FlagFlagged}, compose(t, last))
	inspect := fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
	before := inspect(t, bob, processedFolder)
	inboxBefore := inspect(t, bob, "INBOX")
	bodyBytes := b.Stats().BodyBytes
	proxy.commands()

	got, err = b.Processed(ctx, 10)
	if err != nil || len(got) != 4 {
		t.Fatalf("Processed(10) = %d messages, %v; want 4 (foreign and deleted mail skipped)", len(got), err)
	}
	reason := func(err error) string {
		if me := (*mailbox.MailError)(nil); errors.As(err, &me) {
			return me.Reason
		}
		return fmt.Sprint(err)
	}
	for i, want := range []struct {
		at     int // in before, by UID: old, foreign, deleted, oversize, corrupt, last
		pkg    []byte
		reason string
	}{{5, last, ""}, {4, nil, mailbox.ReasonNotPackage}, {3, nil, mailbox.ReasonTooLarge}, {0, old, ""}} {
		m := got[i]
		if want.reason == "" && (m.Err != nil || !bytes.Equal(m.Package, want.pkg)) || want.reason != "" && (reason(m.Err) != want.reason || m.Package != nil) {
			t.Errorf("message %d: package of %d bytes, Err %v; want %d bytes, reason %q", i, len(m.Package), m.Err, len(want.pkg), want.reason)
		}
		if m.Mailbox != processedFolder || m.UID != before[want.at].UID {
			t.Errorf("message %d is %s/%d, want %s/%d", i, m.Mailbox, m.UID, processedFolder, before[want.at].UID)
		}
	}
	if d := b.Stats().BodyBytes - bodyBytes; d >= int64(len(oversize)) {
		t.Errorf("%d body bytes fetched: the oversize mail was downloaded", d)
	}
	cmds := proxy.commands()
	t.Logf("Processed sent %q", cmds)
	for verb, want := range map[string]int{
		"EXAMINE": 1, "SELECT": 0, "CREATE": 0, "STORE": 0, "UID STORE": 0, "UID COPY": 0, "UID MOVE": 0,
		"EXPUNGE": 0, "UID EXPUNGE": 0, "UID SEARCH": 1,
	} {
		if got := count(cmds, verb); got != want {
			t.Errorf("%d %s commands, want %d", got, verb, want)
		}
	}
	peeks := 0
	for _, c := range cmds {
		u := strings.ToUpper(c)
		if strings.Contains(u, "BODY[") {
			t.Errorf("%q fetches without PEEK", c)
		}
		if strings.Contains(u, "BODY.PEEK[]") {
			peeks++
		}
	}
	if peeks != 1 {
		t.Errorf("%d fetches of whole mails, want 1 (BODY.PEEK[])", peeks)
	}
	if after := inspect(t, bob, processedFolder); fmt.Sprint(flagsOf(after)) != fmt.Sprint(flagsOf(before)) {
		t.Errorf("processed folder after Processed: %v; before: %v", flagsOf(after), flagsOf(before))
	}
	if after := inspect(t, bob, "INBOX"); fmt.Sprint(flagsOf(after)) != fmt.Sprint(flagsOf(inboxBefore)) {
		t.Errorf("inbox after Processed: %v; before: %v", flagsOf(after), flagsOf(inboxBefore))
	}
}

// flagsOf lists UID and sorted flags of each mail.
func flagsOf(l []fixtures.StoredMail) []string {
	var out []string
	for _, m := range l {
		flags := make([]string, len(m.Flags))
		for i, f := range m.Flags {
			flags[i] = string(f)
		}
		slices.Sort(flags)
		out = append(out, fmt.Sprintf("%d:%s", m.UID, strings.Join(flags, ",")))
	}
	return out
}

// TestProcessedBounds: one call returns at most MaxProcessed messages, looks at no more than the
// folder's newest lookPerScan mails, and downloads no more than 2 x MaxMessageBytes (at least
// one mail); what it drops is the oldest.
func TestProcessedBounds(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	b := newTransport(t, r, bob, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var pkgs [][]byte
	for range mailbox.MaxProcessed + 5 {
		p := fixtures.Package(20)
		pkgs = append(pkgs, p)
		appendMail(t, r, bob, processedFolder, nil, compose(t, p))
	}
	newestFirst := func(n int) [][]byte {
		l := slices.Clone(pkgs[len(pkgs)-n:])
		slices.Reverse(l)
		return l
	}
	check := func(call string, got []mailbox.Message, err error, want [][]byte) {
		t.Helper()
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s = %d messages, %v; want %d", call, len(got), err, len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i].Package, want[i]) {
				t.Fatalf("%s: message %d is not the %d-th newest", call, i, i+1)
			}
		}
	}
	for _, n := range []int{1, 7, mailbox.MaxProcessed, mailbox.MaxProcessed + 1, 1 << 20} {
		got, err := b.Processed(ctx, n)
		check(fmt.Sprintf("Processed(%d)", n), got, err, newestFirst(min(n, mailbox.MaxProcessed)))
	}
	for _, n := range []int{0, -1} {
		if got, err := b.Processed(ctx, n); err != nil || len(got) != 0 {
			t.Errorf("Processed(%d) = %d messages, %v; want none, nil", n, len(got), err)
		}
	}
	mailbox.SetLookPerScan(t, 8)
	got, err := b.Processed(ctx, 100)
	check("Processed(100) looking at 8 mails", got, err, newestFirst(8))

	// Mails of about 50 KiB with a 64 KiB cap: 128 KiB in one call, the newest two.
	a := newTransport(t, r, alice, nil)
	var big [][]byte
	for range 3 {
		p := fixtures.Package(36 << 10)
		big = append(big, p)
		appendMail(t, r, alice, processedFolder, nil, compose(t, p))
	}
	got, err = a.Processed(ctx, 10)
	check("Processed(10) of 3 mails of 50 KiB", got, err, [][]byte{big[2], big[1]})
}

// TestProcessedWhileReceiveWaits: Processed interrupts the IDLE of a waiting Receive on the same
// transport instead of waiting for it; the Receive goes back to waiting on the inbox (not the
// processed folder Processed left open) and is woken by new mail. A Prune afterwards selects the
// processed folder again, read-write, and deletes.
func TestProcessedWhileReceiveWaits(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	proxy := newFreezeProxy(t, r.IMAPAddr())
	a := newTransport(t, r, alice, nil)
	b := newTransport(t, r, bob, func(c *mailbox.Config) { c.IMAPAddr = proxy.addr() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pkg := fixtures.Package(30)
	if err := a.Send(ctx, bob, pkg); err != nil {
		t.Fatal(err)
	}
	first, cur, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if err != nil || len(first) != 1 {
		t.Fatalf("Receive = %d, %v", len(first), err)
	}
	if err := b.Ack(ctx, first[0]); err != nil {
		t.Fatal(err)
	}
	type result struct {
		msgs []mailbox.Message
		err  error
	}
	done := make(chan result, 1)
	proxy.commands()
	go func() {
		msgs, _, err := b.Receive(ctx, cur, time.Hour, 0)
		done <- result{msgs, err}
	}()
	proxy.waitSent(t, "IDLE\r\n")
	proxy.commands()
	start := time.Now()
	got, err := b.Processed(ctx, 5)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].Package, pkg) {
		t.Fatalf("Processed during IDLE = %d messages, %v; want the acknowledged one", len(got), err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Processed during IDLE took %s", d)
	}
	proxy.waitSent(t, "IDLE\r\n") // the Receive waits again
	select {
	case r := <-done:
		t.Fatalf("the waiting Receive returned after Processed: %d messages, %v", len(r.msgs), r.err)
	default:
	}
	next := fixtures.Package(40)
	if err := a.Send(ctx, bob, next); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		if r.err != nil || len(r.msgs) != 1 || !bytes.Equal(r.msgs[0].Package, next) {
			t.Fatalf("Receive(wait) = %d messages, %v; want the new package", len(r.msgs), r.err)
		}
		if r.msgs[0].Mailbox != "INBOX" {
			t.Errorf("the new package came from %s", r.msgs[0].Mailbox)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the waiting Receive was not woken after Processed")
	}

	if _, err := b.Processed(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Prune(ctx, time.Now().Add(48*time.Hour)); err != nil || n != 1 {
		t.Fatalf("Prune after Processed = %d, %v; want 1, nil", n, err)
	}
	if got, err := b.Processed(ctx, 5); err != nil || len(got) != 0 {
		t.Errorf("Processed after Prune = %d messages, %v; want none", len(got), err)
	}
}
