package mailbox_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// scriptedMail is one mail of a scriptedIMAP server, in every folder.
type scriptedMail struct {
	uid   uint32
	claim int64  // its RFC822.SIZE
	body  []byte // its BODY[] (may be shared between mails)
	// endless, when set, announces BODY[] with this size and then streams "x" until the
	// client closes the connection (or hostileBound is reached).
	endless int64
}

// scriptedIMAP is an IMAP server on loopback that answers the few commands the client sends
// (LIST, SELECT, EXAMINE, NOOP, UID SEARCH, UID FETCH, LOGOUT) from a fixed list of mails,
// and may lie about their sizes. Every folder holds the same mails.
type scriptedIMAP struct {
	ln    net.Listener
	mails []scriptedMail
	mu    sync.Mutex
	conns []net.Conn
	n     int64 // bytes sent, over all connections
	done  sync.WaitGroup
}

func startScriptedIMAP(t *testing.T, mails []scriptedMail) *scriptedIMAP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedIMAP{ln: ln, mails: mails}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.done.Add(1)
			go func() {
				defer s.done.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		s.abort()
		s.done.Wait()
	})
	return s
}

func (s *scriptedIMAP) addr() string { return s.ln.Addr().String() }

// abort closes the listener and every connection.
func (s *scriptedIMAP) abort() {
	s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

// Write counts what goes out and fails past hostileBound.
func (s *scriptedIMAP) write(c net.Conn, p []byte) error {
	s.mu.Lock()
	over := s.n >= hostileBound
	s.mu.Unlock()
	if over {
		return errBound
	}
	n, err := c.Write(p)
	s.mu.Lock()
	s.n += int64(n)
	s.mu.Unlock()
	return err
}

func (s *scriptedIMAP) serve(c net.Conn) {
	r := bufio.NewReader(c)
	out := func(format string, args ...any) error { return s.write(c, fmt.Appendf(nil, format, args...)) }
	if out("* OK [CAPABILITY IMAP4rev1] scripted\r\n") != nil {
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return
		}
		tag, verb, args := f[0], strings.ToUpper(f[1]), f[2:]
		if verb == "UID" && len(args) > 0 {
			verb, args = "UID "+strings.ToUpper(args[0]), args[1:]
		}
		switch verb {
		case "CAPABILITY":
			err = out("* CAPABILITY IMAP4rev1\r\n%s OK done\r\n", tag)
		case "LIST":
			name := strings.Trim(args[len(args)-1], `"`)
			if name == "" {
				err = out("* LIST (\\Noselect) \"/\" \"\"\r\n%s OK done\r\n", tag)
			} else {
				err = out("* LIST () \"/\" \"%s\"\r\n%s OK done\r\n", name, tag)
			}
		case "SELECT", "EXAMINE":
			mode := "READ-WRITE"
			if verb == "EXAMINE" {
				mode = "READ-ONLY"
			}
			err = out("* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT %d] ok\r\n%s OK [%s] done\r\n",
				len(s.mails), s.mails[len(s.mails)-1].uid+1, tag, mode)
		case "NOOP":
			err = out("%s OK done\r\n", tag)
		case "UID SEARCH":
			var b strings.Builder
			b.WriteString("* SEARCH")
			for _, m := range s.mails {
				b.WriteString(" " + strconv.FormatUint(uint64(m.uid), 10))
			}
			err = out("%s\r\n%s OK done\r\n", b.String(), tag)
		case "UID FETCH":
			err = s.fetch(c, tag, args[0], strings.Join(args[1:], " "))
		case "LOGOUT":
			out("* BYE bye\r\n%s OK done\r\n", tag)
			return
		default:
			err = out("%s BAD not scripted\r\n", tag)
		}
		if err != nil {
			return
		}
	}
}

// fetch answers UID FETCH set items: the marker headers and size, or BODY[].
func (s *scriptedIMAP) fetch(c net.Conn, tag, set, items string) error {
	bodies := strings.Contains(items, "BODY.PEEK[]")
	for i, m := range s.mails {
		if !inUIDSet(set, m.uid) {
			continue
		}
		var err error
		switch {
		case !bodies:
			hdr := "X-Sealpost: 1\r\nContent-Type: multipart/mixed; boundary=b\r\nFrom: <" + alice + ">\r\n\r\n"
			err = s.write(c, fmt.Appendf(nil, "* %d FETCH (UID %d RFC822.SIZE %d BODY[HEADER.FIELDS (X-Sealpost Content-Type From)] {%d}\r\n%s)\r\n",
				i+1, m.uid, m.claim, len(hdr), hdr))
		case m.endless > 0:
			if err := s.write(c, fmt.Appendf(nil, "* %d FETCH (UID %d BODY[] {%d}\r\n", i+1, m.uid, m.endless)); err != nil {
				return err
			}
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			for s.write(c, chunk) == nil {
			}
			return errBound
		default:
			err = s.write(c, fmt.Appendf(nil, "* %d FETCH (UID %d BODY[] {%d}\r\n", i+1, m.uid, len(m.body)))
			if err == nil {
				err = s.write(c, m.body)
			}
			if err == nil {
				err = s.write(c, []byte(")\r\n"))
			}
		}
		if err != nil {
			return err
		}
	}
	return s.write(c, []byte(tag+" OK done\r\n"))
}

// inUIDSet reports whether uid is in an IMAP set such as "1:3,7,9:*".
func inUIDSet(set string, uid uint32) bool {
	num := func(s string) uint64 {
		if s == "*" {
			return 1<<32 - 1
		}
		n, _ := strconv.ParseUint(s, 10, 32)
		return n
	}
	for _, r := range strings.Split(set, ",") {
		lo, hi, ok := strings.Cut(r, ":")
		if !ok {
			hi = lo
		}
		a, b := num(lo), num(hi)
		if a > b {
			a, b = b, a
		}
		if uint64(uid) >= a && uint64(uid) <= b {
			return true
		}
	}
	return false
}

// scriptedTransport is a transport on srv with the mail cap of threat35MailCap.
func scriptedTransport(t *testing.T, srv *scriptedIMAP) *mailbox.IMAPSMTP {
	tr, err := mailbox.New(mailbox.Config{
		Address: bob, IMAPAddr: srv.addr(), SMTPAddr: srv.addr(), TLS: mailbox.TLSNone,
		MaxMessageBytes: threat35MailCap, CommandTimeout: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	mailbox.SetBackoff(tr, time.Millisecond, time.Millisecond)
	t.Cleanup(func() { tr.Close() })
	return tr
}

func composeFor(t *testing.T, pkg []byte) []byte {
	t.Helper()
	raw, err := mailbox.ComposeMail(alice, bob, pkg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// tooLarge reports whether err is a MailError that says the mail is too large.
func tooLarge(err error) bool {
	var me *mailbox.MailError
	return errors.As(err, &me) && me.Reason == mailbox.ReasonTooLarge
}

// fetchHeapBound is what a call may hold at its peak against the servers below: their mails
// are about the 1 MiB cap each, so a call that kept every body it was sent would hold tens of
// MiB; one that reads no more than 2 x the cap stays well below this.
const fetchHeapBound = 16 << 20

// TestThreat35BodyLargerThanClaimed: the byte budget of a call is counted with the sizes the
// server claims (RFC822.SIZE); a server that claims 1000 bytes for 64 sealpost mails and then
// sends nearly a whole cap's worth for each must not make Receive or Processed hold them all
// (THREATS.md row 35). A body larger than its claim (beyond a small margin) is not read: that
// mail comes back with a too-large Err, so that the caller rejects it. A body only slightly
// larger than claimed (a server leaving trace headers out of RFC822.SIZE) is read.
func TestThreat35BodyLargerThanClaimed(t *testing.T) {
	big := composeFor(t, fixtures.Package(700<<10)) // about 0.95 MiB, under the 1 MiB cap
	if len(big) > threat35MailCap || len(big) < threat35MailCap*9/10 {
		t.Fatalf("the lying mail has %d bytes; want just under the cap %d", len(big), threat35MailCap)
	}
	first, last, near := fixtures.Package(100), fixtures.Package(200), fixtures.Package(300)
	rawFirst, rawLast, rawNear := composeFor(t, first), composeFor(t, last), composeFor(t, near)
	mails := []scriptedMail{{uid: 1, claim: int64(len(rawFirst)), body: rawFirst}}
	for uid := uint32(2); uid <= 65; uid++ {
		mails = append(mails, scriptedMail{uid: uid, claim: 1000, body: big})
	}
	mails = append(mails,
		scriptedMail{uid: 66, claim: int64(len(rawLast)), body: rawLast},
		scriptedMail{uid: 67, claim: int64(len(rawNear)) - 40, body: rawNear}, // under-counted a little
	)
	srv := startScriptedIMAP(t, mails)
	tr := scriptedTransport(t, srv)
	ctx := context.Background()

	check := func(call string, msgs []mailbox.Message, err error, peak uint64, good map[uint32][]byte) {
		t.Helper()
		t.Logf("%s: peak heap %.1f MiB, %d messages, %v", call, float64(peak)/(1<<20), len(msgs), err)
		if err != nil || len(msgs) != len(mails) {
			t.Fatalf("%s = %d messages, %v; want %d", call, len(msgs), err, len(mails))
		}
		for _, m := range msgs {
			if want, ok := good[m.UID]; ok {
				if m.Err != nil || !bytes.Equal(m.Package, want) {
					t.Errorf("%s: UID %d: Err %v, package of %d bytes; want its package", call, m.UID, m.Err, len(m.Package))
				}
			} else if !tooLarge(m.Err) || m.Package != nil {
				t.Errorf("%s: UID %d (claims 1000 bytes, sends %d): Err %v, package of %d bytes; want too large", call, m.UID, len(big), m.Err, len(m.Package))
			}
		}
		if peak >= fetchHeapBound {
			t.Errorf("%s: peak heap %d bytes, want < %d", call, peak, fetchHeapBound)
		}
	}
	good := map[uint32][]byte{1: first, 66: last, 67: near}

	var (
		msgs []mailbox.Message
		err  error
	)
	peak := peakHeap(srv.abort, func() { msgs, _, err = tr.Receive(ctx, mailbox.Cursor{}, 0, 0) })
	check("Receive", msgs, err, peak, good)

	peak = peakHeap(srv.abort, func() { msgs, err = tr.Processed(ctx, mailbox.MaxProcessed) })
	check("Processed", msgs, err, peak, good)
}

// TestThreat30BodyOverCapUnderClaim: a sealpost mail whose RFC822.SIZE is under the cap and
// whose body is announced over it (servers get RFC822.SIZE wrong) ends the connection at the
// cap (THREATS.md row 35), but must not hold up the inbox (row 30): within two calls Receive
// returns the good mails around it, and that one with a too-large Err, so that the caller
// rejects it; no call fails, and memory stays bounded.
func TestThreat30BodyOverCapUnderClaim(t *testing.T) {
	before, after := fixtures.Package(100), fixtures.Package(200)
	rawBefore, rawAfter := composeFor(t, before), composeFor(t, after)
	srv := startScriptedIMAP(t, []scriptedMail{
		{uid: 1, claim: int64(len(rawBefore)), body: rawBefore},
		{uid: 2, claim: 5000, endless: threat35MailCap + 1},
		{uid: 3, claim: int64(len(rawAfter)), body: rawAfter},
	})
	tr := scriptedTransport(t, srv)
	ctx := context.Background()
	var (
		got  = map[uint32]mailbox.Message{}
		cur  mailbox.Cursor
		peak uint64
	)
	for call := 1; call <= 2 && len(got) < 3; call++ {
		var (
			msgs []mailbox.Message
			err  error
		)
		p := peakHeap(srv.abort, func() { msgs, cur, err = tr.Receive(ctx, cur, 0, 0) })
		peak = max(peak, p)
		t.Logf("Receive #%d: %d messages, cursor %d, peak heap %.1f MiB, %v", call, len(msgs), cur.LastUID, float64(p)/(1<<20), err)
		if err != nil {
			t.Fatalf("Receive #%d = %v; want the mails, the one over the cap with Err", call, err)
		}
		for _, m := range msgs {
			got[m.UID] = m
		}
	}
	if m, ok := got[1]; !ok || m.Err != nil || !bytes.Equal(m.Package, before) {
		t.Errorf("UID 1 = %v, %+v; want its package", ok, m.Err)
	}
	if m, ok := got[2]; !ok || !tooLarge(m.Err) {
		t.Errorf("UID 2 (claims 5000, announces %d) = %v, %+v; want a too-large Err", threat35MailCap+1, ok, m.Err)
	}
	if m, ok := got[3]; !ok || m.Err != nil || !bytes.Equal(m.Package, after) {
		t.Errorf("UID 3 = %v, %+v; want its package", ok, m.Err)
	}
	if cur.LastUID != 3 {
		t.Errorf("cursor at %d, want past UID 3", cur.LastUID)
	}
	if peak >= fetchHeapBound {
		t.Errorf("peak heap %d bytes, want < %d", peak, fetchHeapBound)
	}
}
