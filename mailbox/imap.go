package mailbox

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-message/textproto"
)

// imapConn is one authenticated IMAP connection and what is known about it.
type imapConn struct {
	raw         *watchedConn
	capped      *cappedConn // what the client reads from: raw or TLS over it, under the caps
	c           *imapclient.Client
	caps        imap.CapSet
	processed   string // folder names in the server's hierarchy
	rejected    string
	selected    string
	readOnly    bool // selected was opened with EXAMINE (Processed): select it again to write
	uidValidity uint32
	folders     map[string]bool // known to exist
	idle        *imapclient.IdleCommand
}

func (c *imapConn) close() {
	c.raw.Close()
	c.c.Close()
}

// endIdle stops a running IDLE and waits for the server's answer. No other command may be sent
// while IDLE runs (the client holds its encoder lock).
func (c *imapConn) endIdle() error {
	if c.idle == nil {
		return nil
	}
	idle := c.idle
	c.idle = nil
	if err := idle.Close(); err != nil {
		return fmt.Errorf("end IDLE: %w", err)
	}
	if err := idle.Wait(); err != nil {
		return fmt.Errorf("end IDLE: %w", err)
	}
	return nil
}

// headerFields are fetched for every new mail to tell sealpost's from the rest, and this node's
// from other nodes' of a shared mailbox (To, plus.go).
var headerFields = []string{"X-Sealpost", "Content-Type", "From", "To"}

// connect dials, secures, authenticates and selects the inbox, all under one watchdog.
func (t *IMAPSMTP) connect(ctx context.Context) (*imapConn, error) {
	s := t.s
	d := net.Dialer{Timeout: s.DialTimeout}
	nc, err := d.DialContext(ctx, "tcp", s.IMAPAddr)
	if err != nil {
		return nil, fmt.Errorf("connect to IMAP server %s: %w", s.IMAPAddr, err)
	}
	raw := newWatchedConn(nc)
	w := raw.watch(ctx, s.CommandTimeout)
	c, err := t.setup(ctx, raw)
	timedOut, cancelled := w.stop()
	if err == nil && (timedOut || cancelled) {
		err = errors.New("connection closed")
	}
	if err != nil {
		raw.Close()
		var tooLong error
		if c != nil {
			if c.c != nil {
				c.c.Close()
			}
			tooLong = c.capped.tooLong()
		}
		switch {
		case cancelled && ctx.Err() != nil:
			err = ctx.Err()
		case tooLong != nil:
			err = tooLong
		case timedOut:
			err = keepDiagnosis(err, fmt.Errorf("%w (silent for %s)", ErrTimeout, s.CommandTimeout))
		}
		return nil, fmt.Errorf("connect to IMAP server %s: %w", s.IMAPAddr, err)
	}
	s.log.Debug(fmt.Sprintf("IMAP connected to %s (IDLE %v, MOVE %v, UIDPLUS %v)", s.IMAPAddr, c.caps.Has(imap.CapIdle), c.caps.Has(imap.CapMove), c.caps.Has(imap.CapUIDPlus)), "op", "connect", "mailbox", s.Inbox)
	return c, nil
}

func (t *IMAPSMTP) setup(ctx context.Context, raw *watchedConn) (_ *imapConn, err error) {
	greeted := false // for diagnose: a failure before the greeting may be a wrong port or TLS mode
	s := t.s
	opts := &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			// Runs on the client's reader goroutine: only signal, never block or call the client.
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					signal(t.wake)
				}
			},
		},
	}
	// The client reads through a cappedConn above TLS (see caps.go and starttls.go).
	c := &imapConn{raw: raw, folders: map[string]bool{}}
	capped := func(nc net.Conn, pre string) *cappedConn {
		c.capped = newCappedConn(nc, raw, "IMAP", s.IMAPAddr, newIMAPFramer(s.MaxMessageBytes), pre)
		return c.capped
	}
	var client *imapclient.Client
	empty := &emptyResponse{}
	switch s.TLS {
	case TLSImplicit:
		conf := s.imapTLS.Clone()
		conf.NextProtos = []string{"imap"}
		tc := tls.Client(raw, conf)
		if err := tc.HandshakeContext(ctx); err != nil {
			return c, diagnose(tlsError(err, s.IMAPAddr), "IMAP", s.IMAPAddr, s.TLS, nil)
		}
		client = imapclient.New(empty.wrap(capped(tc, "")), opts)
	case TLSStartTLS:
		fb := &firstBytes{Conn: raw} // for diagnose
		tc, err := imapStartTLS(ctx, capped(fb, ""), raw, s.imapTLS)
		if err != nil {
			return c, diagnose(fmt.Errorf("STARTTLS: %w", tlsError(err, s.IMAPAddr)), "IMAP", s.IMAPAddr, s.TLS, fb.first())
		}
		client = imapclient.New(empty.wrap(capped(tc, imapStandIn)), opts)
	default:
		fb := &firstBytes{Conn: raw}
		client = imapclient.New(empty.wrap(capped(fb, "")), opts)
		defer func() {
			if err != nil && !greeted {
				err = diagnose(err, "IMAP", s.IMAPAddr, s.TLS, fb.first())
			}
		}()
	}
	c.c = client
	if err := client.WaitGreeting(); err != nil {
		return c, err
	}
	greeted = true
	if s.hasCredentials() {
		if s.TLS == TLSNone && !(s.AllowPlaintextAuth && isLoopbackConn(raw.Conn)) {
			return c, fmt.Errorf("%w: the IMAP connection to %s is not encrypted; use --tls implicit or starttls", ErrPlaintextCredentials, s.IMAPAddr)
		}
		if err := s.authenticate(ctx, imapAuth{client, s.IMAPAddr, empty}, 1); err != nil {
			return c, err
		}
	}
	if c.caps = client.Caps(); c.caps == nil {
		return c, errors.New("no capabilities from the server")
	}
	list, err := client.List("", "", nil).Collect()
	if err != nil {
		return c, fmt.Errorf("hierarchy delimiter: %w", err)
	}
	delim := "-" // a flat server: sealpost-processed
	if len(list) > 0 && list[0].Delim != 0 {
		delim = string(list[0].Delim)
	}
	c.processed, c.rejected = s.ProcessedFolder, s.RejectedFolder
	if s.defaultProcessed {
		c.processed = strings.ReplaceAll(c.processed, "/", delim)
	}
	if s.defaultRejected {
		c.rejected = strings.ReplaceAll(c.rejected, "/", delim)
	}
	if err := c.selectFolder(s.Inbox); err != nil {
		return c, err
	}
	return c, nil
}

func (c *imapConn) selectFolder(name string) error {
	if c.selected == name && !c.readOnly {
		return nil
	}
	data, err := c.c.Select(name, nil).Wait()
	if err != nil {
		c.selected = ""
		return fmt.Errorf("select %s: %w", name, err)
	}
	c.selected, c.uidValidity, c.readOnly = name, data.UIDValidity, false
	return nil
}

// Receive implements Transport.
//
// Besides max, one call returns no more whole mails than 2 x MaxMessageBytes together (at least
// one), by the sizes the server claims, and reads no body much larger than claimed (see
// allowance); one scan looks at no more than lookPerScan new UIDs; a Receive that found nothing
// in a scan with more to look at scans on at once (the cursor moves over the foreign mail). A
// body announced over the cap ends the call early (see fetchBodies).
func (t *IMAPSMTP) Receive(ctx context.Context, after Cursor, wait time.Duration, max int) ([]Message, Cursor, error) {
	if max <= 0 {
		max = 100
	}
	t.recvMu.Lock()
	defer t.recvMu.Unlock()
	var waitEnd <-chan time.Time // the end of the wait; only the select below watches it
	if wait > 0 {
		end := time.NewTimer(wait)
		defer end.Stop()
		waitEnd = end.C
	}
	cur := after
	for {
		// While mail is expected (Expect), the wait polls instead of idling (eager.go).
		_, eager := t.eager(time.Now())
		msgs, next, more, closed, err := t.receiveOnce(ctx, cur, max, wait > 0 && !eager)
		cur = next
		if err != nil || len(msgs) > 0 {
			return msgs, cur, err
		}
		if more {
			if err := ctx.Err(); err != nil {
				return nil, cur, err
			}
			select {
			case <-waitEnd:
				// The wait is over while working through foreign mail: the caller gets the
				// cursor past what was looked at, and its turn (wait 0 scans to the end).
				return nil, cur, nil
			default:
			}
			continue
		}
		if wait <= 0 {
			return nil, cur, nil
		}
		idle := closed != nil
		if !idle {
			closed = make(chan struct{}) // never fires
		}
		// Wait until the next scan is due: new mail, another call's kick, the poll or IDLE
		// re-issue timer. Eager polls that find nothing new wait on without a scan.
	waiting:
		for {
			bound := t.s.PollInterval
			if idle {
				bound = t.s.idleReissue
			}
			d, eager := t.eager(time.Now())
			eager = eager && !idle // an IDLE under way is ended by Expect's kick first
			if eager {
				bound = min(bound, d)
			}
			if f := onWait.Load(); f != nil {
				(*f)(idle, eager)
			}
			timer := time.NewTimer(bound)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, cur, ctx.Err()
			case <-waitEnd:
				// The wait is over. An IDLE left running is ended by the next call, under the
				// command timeout, like any other command.
				timer.Stop()
				return nil, cur, nil
			case <-t.wake:
				if idle {
					t.count(func(s *Stats) { s.IdleWakeups++ })
				}
			case <-timer.C:
				if !eager {
					t.count(func(s *Stats) { s.PollWakeups++ })
					break waiting
				}
				if _, still := t.eager(time.Now()); !still {
					break waiting // no mail expected any more: scan once, then IDLE
				}
				if err := t.noop(ctx); err != nil {
					return nil, cur, err
				}
				select {
				case <-t.wake: // the NOOP reported new mail
					break waiting
				default:
					continue waiting
				}
			case <-closed:
				// The connection died while idling; the next round reconnects, after the backoff
				// (a server that drops every IDLE must not make this a busy loop).
				t.mu.Lock()
				t.failed()
				t.mu.Unlock()
			case <-t.kick:
			}
			timer.Stop()
			break
		}
	}
}

// receiveOnce scans once. When it finds nothing, has nothing more to look at and wait is set,
// it leaves the connection in IDLE (where the server has it) and returns the channel that
// closes if the connection dies.
func (t *IMAPSMTP) receiveOnce(ctx context.Context, after Cursor, max int, wait bool) (msgs []Message, cur Cursor, more bool, closed <-chan struct{}, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	drain(t.kick)
	c, err := t.ensure(ctx)
	if err != nil {
		return nil, after, false, nil, fmt.Errorf("receive: %w", err)
	}
	// New mail signalled from here on is looked at by this scan or wakes the next wait.
	drain(t.wake)
	cur = after
	err = t.do(ctx, "receive", func(c *imapConn) error {
		if err := c.endIdle(); err != nil {
			return err
		}
		synced := c.selected != t.s.Inbox // a SELECT shows the folder as it is now
		if err := c.selectFolder(t.s.Inbox); err != nil {
			return err
		}
		if !synced {
			// Dovecot answers a search from the session's view of the folder, which takes in
			// mail delivered by others only at a sync point (NOOP, IDLE, the end of a
			// command): sync first, or new mail waits for the next call.
			if err := c.c.Noop().Wait(); err != nil {
				return fmt.Errorf("noop: %w", err)
			}
		}
		var err error
		msgs, cur, more, err = t.scan(c, after, max)
		return err
	})
	if err != nil {
		return nil, after, false, nil, err
	}
	if len(msgs) > 0 || more || !wait || t.s.DisableIDLE || !c.caps.Has(imap.CapIdle) {
		return msgs, cur, more, nil, nil
	}
	err = t.do(ctx, "idle", func(c *imapConn) error {
		idle, err := c.c.Idle()
		if err != nil {
			return fmt.Errorf("start IDLE: %w", err)
		}
		c.idle = idle
		return nil
	})
	if err != nil {
		return nil, cur, false, nil, err
	}
	return nil, cur, false, c.c.Closed(), nil
}

// lookPerScan bounds how many new UIDs one scan looks at (a variable for tests).
var lookPerScan = 1024

// head is what the header fetch tells about one mail.
type head struct {
	size     int64
	sealpost bool
	ctype    string
	from     string
	to       []string
}

// scan returns the sealpost mail after the cursor, oldest first: at most max messages, at most
// 2 x MaxMessageBytes of whole mails by their claimed sizes (but at least one), looking at no
// more than lookPerScan UIDs; more says that there is more to look at. When a body announced
// over the cap ends the connection, the list ends with that mail (too large), and the cursor
// stops before the first mail whose body had not come. On error nothing has moved: the cursor
// is after (in the folder's UIDVALIDITY).
func (t *IMAPSMTP) scan(c *imapConn, after Cursor, max int) (out []Message, cur Cursor, more bool, err error) {
	start := Cursor{UIDValidity: c.uidValidity, LastUID: after.LastUID}
	if after.UIDValidity != c.uidValidity {
		start.LastUID = 0
	}
	cur = start
	if cur.LastUID == ^uint32(0) {
		return nil, cur, false, nil
	}
	criteria := &imap.SearchCriteria{
		UID:     []imap.UIDSet{{imap.UIDRange{Start: imap.UID(cur.LastUID + 1), Stop: 0}}},
		NotFlag: []imap.Flag{imap.FlagDeleted},
	}
	data, err := c.c.UIDSearch(criteria, nil).Wait()
	if err != nil {
		return nil, start, false, fmt.Errorf("search: %w", err)
	}
	// "UID n:*" always matches the highest UID, even below n: keep only what is new.
	var uids []imap.UID
	for _, u := range data.AllUIDs() {
		if uint32(u) > cur.LastUID {
			uids = append(uids, u)
		}
	}
	slices.Sort(uids)
	if len(uids) > lookPerScan {
		uids, more = uids[:lookPerScan], true
	}
	var (
		budget = 2 * t.s.MaxMessageBytes
		bytes  int64
		full   bool
	)
	for len(uids) > 0 && !full {
		batch := uids[:min(len(uids), 64)]
		uids = uids[len(batch):]
		heads, err := t.fetchHeads(c, batch)
		if err != nil {
			return nil, start, false, err
		}
		var (
			want []imap.UID
			plan = map[imap.UID]planned{}
			last = cur.LastUID
		)
		for _, uid := range batch {
			h, ok := heads[uid]
			mine := ok && h.sealpost && !t.s.othersMail(h)
			download := mine && h.size <= t.s.MaxMessageBytes && plausibleType(h.ctype)
			if mine && (len(out) == max || download && len(out) > 0 && bytes+h.size > budget) {
				full = true
				break
			}
			last = uint32(uid)
			if !ok {
				continue // expunged since the search
			}
			if !h.sealpost {
				t.count(func(s *Stats) { s.ForeignSkips++ })
				continue
			}
			if t.s.othersMail(h) {
				t.count(func(s *Stats) { s.OthersSkips++ })
				continue
			}
			m, _ := t.headMessage(c, uid, h)
			if download {
				want = append(want, uid)
				plan[uid] = planned{i: len(out), claim: h.size}
				bytes += h.size
			}
			out = append(out, m)
		}
		if len(want) > 0 {
			cut, gone, err := t.fetchBodies(c, want, plan, out)
			if err != nil {
				return nil, start, false, err
			}
			if cut < len(out) {
				// The connection went down at a body over the cap: the mails from the first
				// whose body did not come are left for the next call.
				last = out[cut].UID - 1
				out = out[:cut]
			}
			if gone {
				full = true
			}
		}
		cur.LastUID = last
	}
	if full {
		more = false // messages are returned; the next call goes on from the cursor
	}
	for _, m := range out {
		if m.Err != nil {
			t.count(func(s *Stats) { s.BadSealpost++ })
			t.s.log.Debug("sealpost mail unusable", "op", "receive", "mailbox", m.Mailbox, "uid", m.UID, "err", m.Err)
		}
	}
	return out, cur, more, nil
}

// headMessage is the Message for a sealpost mail of the selected folder as far as its headers
// tell; download says whether its body is to be fetched (fetchBodies fills in the package), else
// Err says why not.
func (t *IMAPSMTP) headMessage(c *imapConn, uid imap.UID, h head) (m Message, download bool) {
	m = Message{Mailbox: c.selected, UIDValidity: c.uidValidity, UID: uint32(uid), From: h.from}
	if len(h.to) > 0 {
		m.To = h.to[0]
	}
	switch {
	case h.size > t.s.MaxMessageBytes:
		m.Err = mailErr(ReasonTooLarge, "%d bytes, the cap is %d; not downloaded", h.size, t.s.MaxMessageBytes)
	case !plausibleType(h.ctype):
		m.Err = mailErr(ReasonUnexpectedPart, "Content-Type %q; not downloaded", h.ctype)
	default:
		download = true
	}
	return m, download
}

// plausibleType accepts the top-level types a sealpost mail can have.
func plausibleType(ct string) bool {
	mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	return strings.HasPrefix(mt, "multipart/") || mt == "application/octet-stream"
}

// fetchHeads fetches size and the marker headers of a batch (BODY.PEEK: no \Seen).
func (t *IMAPSMTP) fetchHeads(c *imapConn, uids []imap.UID) (map[imap.UID]head, error) {
	section := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: headerFields, Peek: true}
	cmd := c.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{section}})
	defer cmd.Close()
	heads := map[imap.UID]head{}
	var total int64
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var (
			uid imap.UID
			h   head
		)
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = item.UID
			case imapclient.FetchItemDataRFC822Size:
				h.size = item.Size
			case imapclient.FetchItemDataBodySection:
				if item.Literal == nil {
					continue
				}
				b, err := io.ReadAll(io.LimitReader(item.Literal, DefaultMaxHeaderBytes))
				if err != nil {
					return nil, fmt.Errorf("fetch headers: %w", err)
				}
				total += int64(len(b))
				hdr, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(b)))
				h.sealpost = strings.TrimSpace(hdr.Get("X-Sealpost")) == "1"
				h.ctype = hdr.Get("Content-Type")
				h.from = fromAddress(hdr.Get("From"))
				h.to = toAddresses(hdr.Get("To"))
			}
		}
		if uid != 0 {
			heads[uid] = h
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, fmt.Errorf("fetch headers: %w", err)
	}
	t.count(func(s *Stats) { s.HeaderBytes += total })
	return heads, nil
}

// planned is a mail whose body a call downloads: where it is in the call's list, and the size
// the server claimed for it (RFC822.SIZE), which the call's byte budget was counted with.
type planned struct {
	i     int
	claim int64
}

// allowance is how large a body may be, at most, when the server claimed size for it: the cap,
// and the claim with a margin. Servers get RFC822.SIZE slightly wrong (hMailServer leaves out
// the Return-Path and Delivered-To it adds; a server storing bare LF may count one byte less a
// line), so a body a little larger than claimed is still read. A larger one is not: a server
// that claims 1000 bytes and sends a whole cap's worth for every mail would otherwise make one
// call hold a batch of full mails (THREATS.md row 35). Since a call downloads no more than
// 2 x MaxMessageBytes of claims (at least one mail), what it reads is bounded by
// 2 x MaxMessageBytes x 33/32 + 4 KiB a mail.
func allowance(claim, mailCap int64) int64 {
	return min(mailCap, claim+claim/32+4<<10)
}

// fetchBodies downloads whole sealpost mails (BODY.PEEK[]) and parses them into out, where plan
// says (every UID of uids is in plan). A body larger than its allowance is not read: that mail
// gets a too-large Err, as one whose claim is over the cap does.
//
// A body announced over the cap ends the connection: the framer (caps.go) lets its
// announcement through, so that it reaches this code with its UID, and refuses its first byte;
// this code closes the connection at once. That mail gets a too-large Err, and gone is true:
// the call must send no more commands (the next call reconnects). The mails whose bodies had
// not come by then stay unread: out[cut:] are to be dropped (cut is len(out) when every body
// came). Were the connection error returned instead, one mail whose RFC822.SIZE is below the
// cap and whose body is above it would fail every call and hold up the inbox for good
// (THREATS.md row 30). When nothing before cut is left, the cap error is returned.
func (t *IMAPSMTP) fetchBodies(c *imapConn, uids []imap.UID, plan map[imap.UID]planned, out []Message) (cut int, gone bool, err error) {
	mailCap := t.s.MaxMessageBytes
	lim := Limits{MaxMessageBytes: mailCap}
	cmd := c.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
	defer cmd.Close()
	got := map[imap.UID]bool{}
	var (
		total int64
		over  *TooLongError // the body over the cap that ended the connection
	)
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		var (
			uid     imap.UID
			raw     []byte
			readErr error
			seen    bool
		)
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch item := item.(type) {
			case imapclient.FetchItemDataUID:
				uid = item.UID
			case imapclient.FetchItemDataBodySection:
				if item.Literal == nil {
					continue
				}
				seen = true
				// go-imap hands over a literal only once it knows the UID (it needs it to match
				// the answer to this command), and streams it: what is not read here it reads
				// and discards (8 KiB at a time), never holding it.
				size, claim := item.Literal.Size(), plan[uid].claim
				switch {
				case size > mailCap:
					readErr = mailErr(ReasonTooLarge, "%d bytes, the cap is %d; not downloaded", size, mailCap)
					if over == nil {
						over = &TooLongError{Server: "IMAP", Addr: t.s.IMAPAddr, What: "literal", Cap: mailCap, Size: size}
					}
					// The framer refuses its first byte; close now rather than wait for it.
					c.raw.Close()
					continue
				case size > allowance(claim, mailCap):
					readErr = mailErr(ReasonTooLarge, "%d bytes where the server said %d; not downloaded", size, claim)
					continue // the client discards it
				}
				b, err := ReadMail(item.Literal, lim)
				var me *MailError
				if err != nil && !errors.As(err, &me) {
					return 0, false, fmt.Errorf("fetch mail: %w", err)
				}
				raw, readErr = b, err
				total += int64(len(b))
			}
		}
		p, ok := plan[uid]
		if !ok || !seen {
			continue
		}
		got[uid] = true
		m := &out[p.i]
		if readErr != nil {
			m.Err = readErr
			continue
		}
		pkg, from, err := ParseMail(raw, lim)
		if err != nil {
			m.Err = err
			continue
		}
		m.Package = pkg
		if from != "" {
			m.From = from
		}
	}
	closeErr := cmd.Close()
	t.count(func(s *Stats) { s.BodyBytes += total })
	if gone = over != nil; gone {
		c.c.Close() // the next call sees it closed and reconnects
	} else if closeErr != nil {
		return 0, false, fmt.Errorf("fetch mail: %w", closeErr)
	}
	cut = len(out)
	for _, uid := range uids {
		if got[uid] {
			continue
		}
		if !gone {
			// Expunged meanwhile, or a server answer the client could not match (it needs the UID
			// before the literal). Either way do not hand out a half-read message.
			return 0, false, fmt.Errorf("fetch mail: no body for UID %d", uid)
		}
		cut = min(cut, plan[uid].i)
	}
	if cut == 0 {
		return 0, true, fmt.Errorf("fetch mail: %w", over)
	}
	return cut, gone, nil
}

// Ack implements Transport.
func (t *IMAPSMTP) Ack(ctx context.Context, ms ...Message) error {
	if len(ms) == 0 {
		return nil
	}
	return t.moveAside(ctx, ms, "ack", false)
}

// Reject implements Transport. The reason is logged, never written to the mail.
func (t *IMAPSMTP) Reject(ctx context.Context, m Message, reason string) error {
	t.s.log.Info("moving rejected mail aside", "op", "reject", "mailbox", m.Mailbox, "uid", m.UID, "err", reason)
	return t.moveAside(ctx, []Message{m}, "reject", true)
}

// Prune implements Transport: one SELECT of the processed folder, one UID SEARCH BEFORE, then
// UID STORE \Deleted and UID EXPUNGE of exactly the found set (UIDPLUS), else STORE and a bare
// EXPUNGE, which in this folder, written only by Ack, can remove nothing else of consequence.
func (t *IMAPSMTP) Prune(ctx context.Context, before time.Time) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.ensure(ctx)
	if err != nil {
		return 0, fmt.Errorf("prune: %w", err)
	}
	if c.idle != nil {
		signal(t.kick) // the waiting Receive resumes once we are done
	}
	var n int
	err = t.do(ctx, "prune", func(c *imapConn) error {
		if err := c.endIdle(); err != nil {
			return err
		}
		if err := c.ensureFolder(c.processed); err != nil {
			return err
		}
		if err := c.selectFolder(c.processed); err != nil {
			return err
		}
		// Mail flagged \Deleted by an earlier Prune cut off before its EXPUNGE is found again,
		// and flagged again, so that it goes this time.
		found, err := c.c.UIDSearch(&imap.SearchCriteria{Before: before}, nil).Wait()
		if err != nil {
			return fmt.Errorf("search %s: %w", c.processed, err)
		}
		uids := found.AllUIDs()
		if len(uids) == 0 {
			return nil
		}
		set := imap.UIDSetNum(uids...)
		if err := c.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			return fmt.Errorf("flag %d messages of %s deleted: %w", len(uids), c.processed, err)
		}
		if c.caps.Has(imap.CapUIDPlus) {
			err = c.c.UIDExpunge(set).Close()
		} else {
			err = c.c.Expunge().Close()
		}
		if err != nil {
			return fmt.Errorf("expunge %d messages of %s: %w", len(uids), c.processed, err)
		}
		n = len(uids)
		return nil
	})
	if err == nil && n > 0 {
		t.s.log.Info("deleted old processed mail", "op", "prune", "mailbox", c.processed, "count", n, "before", before.Format(time.DateOnly))
	}
	return n, err
}

// originFolder is the messages of one batch that come from one folder, in the order first seen.
type originFolder struct {
	name string
	msgs []Message // no (UIDVALIDITY, UID) twice
}

// byFolder groups messages by the folder they were read from (the inbox when unset), folders in
// the order first seen, and drops repeats of the same message.
func byFolder(ms []Message, inbox string) []originFolder {
	type key struct {
		folder        string
		validity, uid uint32
	}
	var out []originFolder
	index := map[string]int{}
	seen := map[key]bool{}
	for _, m := range ms {
		folder := m.Mailbox
		if folder == "" {
			folder = inbox
		}
		k := key{folder, m.UIDValidity, m.UID}
		if seen[k] {
			continue
		}
		seen[k] = true
		i, ok := index[folder]
		if !ok {
			i = len(out)
			index[folder] = i
			out = append(out, originFolder{name: folder})
		}
		out[i].msgs = append(out[i].msgs, m)
	}
	return out
}

// moveAside moves messages to the processed or the rejected folder, in one exchange: for each
// folder of origin one SELECT (none when it is the selected one), then move with one existence
// check and one move of the set. Messages whose UIDVALIDITY is not their folder's are left where
// they are; the rest are moved all the same, and the result is then an error wrapping
// ErrStaleMessage (which does not drop the connection) that names the stale UIDs.
func (t *IMAPSMTP) moveAside(ctx context.Context, ms []Message, op string, rejected bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.ensure(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if c.idle != nil {
		signal(t.kick) // the waiting Receive resumes once we are done
	}
	folders := byFolder(ms, t.s.Inbox)
	return t.do(ctx, op, func(c *imapConn) error {
		if err := c.endIdle(); err != nil {
			return err
		}
		dest := c.processed
		if rejected {
			dest = c.rejected
		}
		var stale []string
		for _, f := range folders {
			if err := c.selectFolder(f.name); err != nil {
				return err
			}
			var (
				uids []imap.UID
				old  = map[uint32][]imap.UID{} // stale UIDs by the UIDVALIDITY they were read under
				olds []uint32                  // those UIDVALIDITYs, in the order first seen
			)
			for _, m := range f.msgs {
				if m.UIDValidity == c.uidValidity {
					uids = append(uids, imap.UID(m.UID))
					continue
				}
				if _, ok := old[m.UIDValidity]; !ok {
					olds = append(olds, m.UIDValidity)
				}
				old[m.UIDValidity] = append(old[m.UIDValidity], imap.UID(m.UID))
			}
			for _, v := range olds {
				verb := "was"
				if len(old[v]) > 1 {
					verb = "were"
				}
				stale = append(stale, fmt.Sprintf("%s of %s %s read under UIDVALIDITY %d, the folder now has %d", uidLabel(old[v]), f.name, verb, v, c.uidValidity))
			}
			if len(uids) == 0 {
				continue
			}
			if err := c.ensureFolder(dest); err != nil {
				return err
			}
			if err := t.move(c, uids, dest); err != nil {
				return err
			}
		}
		if len(stale) > 0 {
			return fmt.Errorf("%w: %s", ErrStaleMessage, strings.Join(stale, "; "))
		}
		return nil
	})
}

// uidLabel names UIDs in messages: "UID 7", "UIDs 3:5,9".
func uidLabel(uids []imap.UID) string {
	if len(uids) == 1 {
		return fmt.Sprintf("UID %d", uids[0])
	}
	return "UIDs " + imap.UIDSetNum(uids...).String()
}

// move moves the given UIDs of the selected folder to dest, whatever their number, with one
// UID FETCH and one UID MOVE (or UID COPY + UID STORE + UID EXPUNGE). The FETCH checks first
// which UIDs are still there, and only those are named in the move: a UID MOVE or COPY of a
// missing UID is legal IMAP, but imapmemserver then answers with an empty COPYUID that
// imapclient cannot parse, which kills the connection. A UID that is gone, or flagged \Deleted
// (an earlier fallback move copied and flagged it), is skipped without an error.
func (t *IMAPSMTP) move(c *imapConn, uids []imap.UID, dest string) error {
	slices.Sort(uids)
	uids = slices.Compact(uids)
	msgs, err := c.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		return fmt.Errorf("check %s: %w", uidLabel(uids), err)
	}
	present := make(map[imap.UID]bool, len(msgs))
	deleted := map[imap.UID]bool{}
	for _, b := range msgs {
		present[b.UID] = true
		if slices.Contains(b.Flags, imap.FlagDeleted) {
			deleted[b.UID] = true
		}
	}
	var todo, gone []imap.UID
	for _, uid := range uids {
		switch {
		case !present[uid]:
			gone = append(gone, uid)
		case !deleted[uid]:
			todo = append(todo, uid)
		}
	}
	if len(gone) > 0 {
		t.s.log.Debug("messages already gone", "op", "move", "mailbox", c.selected, "uids", imap.UIDSetNum(gone...).String())
	}
	if len(todo) == 0 {
		return nil
	}
	set := imap.UIDSetNum(todo...)
	what := uidLabel(todo)
	if c.caps.Has(imap.CapMove) {
		if _, err := c.c.Move(set, dest).Wait(); err != nil {
			return fmt.Errorf("move %s to %s: %w", what, dest, err)
		}
		return nil
	}
	// No MOVE. go-imap's own fallback ignores the COPY result and expunges the whole folder when
	// UIDPLUS is missing; this one checks each step and never runs a bare EXPUNGE.
	if _, err := c.c.Copy(set, dest).Wait(); err != nil {
		return fmt.Errorf("copy %s to %s: %w", what, dest, err)
	}
	flags := []imap.Flag{imap.FlagDeleted}
	uidplus := c.caps.Has(imap.CapUIDPlus)
	if !uidplus {
		flags = append(flags, imap.FlagSeen)
	}
	if err := c.c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: flags}, nil).Close(); err != nil {
		return fmt.Errorf("flag %s deleted: %w", what, err)
	}
	if !uidplus {
		// Without UIDPLUS an EXPUNGE would remove every \Deleted message, the user's too: leave
		// the copies flagged; Receive skips \Deleted mail.
		return nil
	}
	if err := c.c.UIDExpunge(set).Close(); err != nil {
		return fmt.Errorf("expunge %s: %w", what, err)
	}
	return nil
}

// ensureFolder creates a folder once per connection when it is missing, tolerating a
// concurrent creation by another client.
func (c *imapConn) ensureFolder(name string) error {
	if c.folders[name] {
		return nil
	}
	ok, err := c.listed(name)
	if err != nil {
		return err
	}
	if !ok {
		if err := c.c.Create(name, nil).Wait(); err != nil {
			var ie *imap.Error
			if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeAlreadyExists {
				// Perhaps another client created it between our LIST and CREATE.
				if again, lerr := c.listed(name); lerr != nil || !again {
					return fmt.Errorf("create %s: %w", name, err)
				}
			}
		}
		// Subscribed so that mail clients show it; a refusal does not matter.
		_ = c.c.Subscribe(name).Wait()
	}
	c.folders[name] = true
	return nil
}

// listed reports whether a LIST names the folder.
func (c *imapConn) listed(name string) (bool, error) {
	l, err := c.c.List("", name, nil).Collect()
	if err != nil {
		return false, fmt.Errorf("list %s: %w", name, err)
	}
	return slices.ContainsFunc(l, func(d *imap.ListData) bool { return d.Mailbox == name }), nil
}
