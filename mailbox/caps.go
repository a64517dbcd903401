package mailbox

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
)

// Caps on what a mail server may send at once (THREATS.md row 35). go-imap keeps a response
// line, and net/textproto (under go-smtp) a multi-line reply, in memory until it ends, and the
// watchdog notices only silence: a server that streams an endless line grows the heap without
// bound. Every connection the libraries read from is therefore a cappedConn, which follows just
// enough of the framing to count, and closes the connection at the first byte past a cap.
const (
	// maxIMAPLine caps one IMAP response outside its literals, all its lines together (a line
	// break inside a quoted string does not end it for go-imap), and the plaintext exchange
	// before STARTTLS.
	maxIMAPLine = 64 << 10
	// maxIMAPSearch caps a SEARCH or ESEARCH response, which lists every matching UID on one
	// line (about 8 bytes a UID: 1M mails). Past maxIMAPLine it may go on only with UIDs in
	// ascending order (go-imap inserts each one into a sorted set: a descending list would
	// cost quadratic time) and with nothing but digits and separators.
	maxIMAPSearch = 8 << 20
	// maxSMTPLine caps one SMTP reply line, CRLF included: RFC 5321's text-line limit, twice its
	// 512-byte reply-line limit, and below go-smtp's own 2000.
	maxSMTPLine = 1000
	// maxSMTPReply caps one SMTP reply, all its lines together.
	maxSMTPReply = 64 << 10
)

// The literals of one IMAP FETCH response together may be as large as the mail cap
// (Config.MaxMessageBytes), since a body arrives as one; a literal in any other response counts
// towards maxIMAPLine. A literal announced larger than that is not read at all: in a FETCH
// response its announcement is passed on and the connection closed at its first byte, so that
// the fetch learns which mail it was and can return that one as too large (a server may claim
// an RFC822.SIZE below the cap and send a body above it: THREATS.md row 30); elsewhere the
// connection is closed at the announcement.

// ErrServerTooLong means a mail server sent more in one line, reply or literal than a cap
// allows; the connection was closed at the cap. Every such error is a *TooLongError.
var ErrServerTooLong = errors.New("mailbox: mail server sent more than a cap allows")

// TooLongError says which server broke which cap. It matches ErrServerTooLong.
type TooLongError struct {
	Server string // "IMAP" or "SMTP"
	Addr   string // the server's host:port
	// What was too long: "response" (an IMAP response outside its literals), "literal" (an
	// IMAP literal, by its announced size), "reply line" or "reply" (SMTP), or "STARTTLS
	// exchange" (the plaintext before TLS).
	What string
	Cap  int64 // the cap, in bytes
	Size int64 // a literal's announced size; 0 otherwise (the rest was never read)
}

func (e *TooLongError) Error() string {
	if e.Size > 0 {
		return fmt.Sprintf("%s server %s announced a %s of %d bytes, over the cap of %d; connection closed without reading it", e.Server, e.Addr, e.What, e.Size, e.Cap)
	}
	return fmt.Sprintf("%s server %s sent a %s longer than the cap of %d bytes; connection closed", e.Server, e.Addr, e.What, e.Cap)
}

// Is makes errors.Is(err, ErrServerTooLong) true.
func (e *TooLongError) Is(target error) bool { return target == ErrServerTooLong }

// framer follows a server's byte stream. scan takes the next bytes and returns how many of them
// are within the caps; when it returns an error, p[n] is the first byte past a cap, and the
// framer must not be used again.
type framer interface {
	scan(p []byte) (n int, err *TooLongError)
}

// cappedConn is a net.Conn whose reads pass through a framer. At the first byte past a cap it
// closes drop (the TCP connection, so that a TLS layer in between cannot block the close), and
// that read and every later one return the *TooLongError.
type cappedConn struct {
	net.Conn
	drop         io.Closer
	server, addr string
	f            framer
	pre          []byte // read before the connection: a stand-in greeting after STARTTLS
	failed       atomic.Pointer[TooLongError]
}

func newCappedConn(c net.Conn, drop io.Closer, server, addr string, f framer, pre string) *cappedConn {
	return &cappedConn{Conn: c, drop: drop, server: server, addr: addr, f: f, pre: []byte(pre)}
}

func (c *cappedConn) Read(p []byte) (int, error) {
	if e := c.failed.Load(); e != nil {
		return 0, e
	}
	var (
		n   int
		err error
	)
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	k, tl := c.f.scan(p[:n])
	if tl != nil {
		tl.Server, tl.Addr = c.server, c.addr
		c.failed.Store(tl)
		c.drop.Close()
		return k, tl
	}
	return n, err
}

// tooLong returns the cap the server broke, or nil. Safe on a nil *cappedConn and from any
// goroutine.
func (c *cappedConn) tooLong() error {
	if c == nil {
		return nil
	}
	if e := c.failed.Load(); e != nil {
		return e
	}
	return nil
}

// imapFramer follows IMAP responses (RFC 9051 section 7), as go-imap's client decodes them:
//
//   - A response ends at LF (go-imap takes a lone LF for CRLF), except inside a quoted string
//     of a data response: go-imap's quoted strings run on over line breaks.
//   - A line of a data response that ends in "{N}" (or "{N+}"), then an optional SP and CR,
//     announces a literal of N bytes, which are passed without being looked at; the response
//     goes on after them. Status responses (tagged, "+", "* OK/NO/BAD/BYE/PREAUTH") carry
//     text, never literals, and no quoted strings that go-imap reads.
//   - A status response with a response code ("* OK [...") goes on over line breaks until a
//     "]": go-imap skips an unknown code up to its "]", whatever comes between.
//   - Which kind a response is follows from its first bytes ("* 12 FETCH", "* SEARCH", ...).
//
// Misreading the stream in the strict direction (counting literal bytes as line bytes, or a
// response as unfinished) can only drop a connection early; the framer never skips bytes that
// go-imap reads as a line.
type imapFramer struct {
	line, search, literal int64 // the caps: maxIMAPLine, maxIMAPSearch, the mail cap

	left int64 // bytes of the current literal still to pass
	// over is the error for a FETCH literal announced over its cap: the announcement has passed,
	// the literal's first byte is refused.
	over *TooLongError

	// The response so far.
	n        int64 // bytes outside literals, literals of non-FETCH responses included
	lits     int64 // bytes of FETCH literals
	head     [24]byte
	nhead    int
	headDone bool // the head stops at the first line end or literal
	kindv    respKind
	code     bool // a status response whose head opens a response code
	bracket  bool // a "]" came
	quoted   bool
	escaped  bool
	ann      int   // where in a literal announcement "{N}" SP? CR? the last bytes were
	annN     int64 // N so far
	num      int64 // the number being read (search responses)
	inNum    bool
	last     int64 // the last number read
}

type respKind int

const (
	kindUnknown respKind = iota
	kindStatus           // tagged, continuation, OK/NO/BAD/BYE/PREAUTH: text, no literals
	kindFetch            // "* n FETCH": literals up to the mail cap
	kindSearch           // "* SEARCH", "* ESEARCH": may run to maxIMAPSearch
	kindData             // anything else
)

const (
	annNone   = iota
	annOpen   // "{"
	annDigits // "{1"
	annPlus   // "{1+"
	annClose  // "{1}": a literal if the line ends now, or after SP, CR
	annSP     // "{1} "
	annCR     // "{1} \r" or "{1}\r"
)

// maxAnnounced is where a literal size stops growing while it is read: far past any cap.
const maxAnnounced = 1 << 50

func newIMAPFramer(mailCap int64) *imapFramer {
	return &imapFramer{line: maxIMAPLine, search: maxIMAPSearch, literal: mailCap}
}

func (f *imapFramer) scan(p []byte) (int, *TooLongError) {
	i := 0
	for i < len(p) {
		if f.over != nil {
			return i, f.over
		}
		if f.left > 0 {
			k := int(min(f.left, int64(len(p)-i)))
			f.left -= int64(k)
			i += k
			continue
		}
		if err := f.byte(p[i]); err != nil {
			return i, err
		}
		i++
	}
	return i, nil
}

func (f *imapFramer) byte(b byte) *TooLongError {
	f.n++
	if !f.headDone && f.nhead < len(f.head) {
		f.head[f.nhead] = b
		f.nhead++
	}
	isDigit := b >= '0' && b <= '9'
	if isDigit {
		f.num = min(f.num*10+int64(b-'0'), maxAnnounced)
		f.inNum = true
	} else if f.inNum {
		if f.n > f.line && f.num <= f.last {
			return &TooLongError{What: "response", Cap: f.line} // past the line cap, UIDs must ascend
		}
		f.last, f.num, f.inNum = f.num, 0, false
	}
	if f.n > f.line {
		switch {
		case f.kind() != kindSearch || !(isDigit || b == ' ' || b == ',' || b == ':' || b == '\r' || b == '\n'):
			return &TooLongError{What: "response", Cap: f.line}
		case f.n > f.search:
			return &TooLongError{What: "response", Cap: f.search}
		}
	}
	if b == ']' {
		f.bracket = true
	}
	if f.quoted {
		switch {
		case f.escaped:
			f.escaped = false
		case b == '\\':
			f.escaped = true
		case b == '"':
			f.quoted = false
		}
		if b != '\n' {
			return nil
		}
		f.headDone = true
		if f.kind() != kindStatus {
			return nil // go-imap is still in the quoted string
		}
	}
	switch b {
	case '\n':
		f.headDone = true
		switch kind := f.kind(); {
		case kind == kindStatus && f.code && !f.bracket:
			// go-imap is still skipping the response code
		case kind != kindStatus && f.ann >= annClose:
			return f.openLiteral()
		default:
			f.endResponse()
		}
	case '"':
		f.quoted, f.ann = true, annNone
	default:
		f.announce(b)
	}
	return nil
}

// announce follows a literal announcement: "{" digits ["+"] "}" [SP] [CR], then LF.
func (f *imapFramer) announce(b byte) {
	switch {
	case (f.ann == annOpen || f.ann == annDigits) && b >= '0' && b <= '9':
		f.annN = min(f.annN*10+int64(b-'0'), maxAnnounced)
		f.ann = annDigits
	case f.ann == annDigits && b == '+':
		f.ann = annPlus
	case (f.ann == annDigits || f.ann == annPlus) && b == '}':
		f.ann = annClose
	case f.ann == annClose && b == ' ':
		f.ann = annSP
	case (f.ann == annClose || f.ann == annSP) && b == '\r':
		f.ann = annCR
	case b == '{':
		f.ann, f.annN = annOpen, 0
	default:
		f.ann = annNone
	}
}

// openLiteral checks an announced literal against its cap and starts passing it.
func (f *imapFramer) openLiteral() *TooLongError {
	size := f.annN
	f.ann, f.annN = annNone, 0
	if f.kind() == kindFetch {
		if size > f.literal-f.lits {
			f.over = &TooLongError{What: "literal", Cap: f.literal, Size: size}
			return nil
		}
		f.lits += size
	} else {
		if size > f.line-f.n {
			return &TooLongError{What: "literal", Cap: f.line, Size: size}
		}
		f.n += size
	}
	f.left = size
	return nil
}

func (f *imapFramer) endResponse() {
	*f = imapFramer{line: f.line, search: f.search, literal: f.literal}
}

// kind classifies the response by its head. It is final once the head is (a line end, a
// literal, or 24 bytes); before that it may still change.
func (f *imapFramer) kind() respKind {
	if f.kindv != kindUnknown {
		return f.kindv
	}
	k, code := classify(f.head[:f.nhead])
	if f.headDone || f.nhead == len(f.head) {
		f.kindv, f.code = k, code
	}
	return k
}

// classify tells the kind of a response from its head, and whether the head opens a response
// code (a status word, SP, "[").
func classify(h []byte) (kind respKind, code bool) {
	if len(h) == 0 {
		return kindUnknown, false
	}
	word := func(h []byte) (w string, rest []byte) {
		i := 0
		for i < len(h) && h[i] != ' ' && h[i] != '(' && h[i] != '[' && h[i] != '\r' && h[i] != '\n' {
			i++
		}
		return upper(h[:i]), h[i:]
	}
	opens := func(rest []byte) bool {
		w, rest := word(rest)
		switch w {
		case "OK", "NO", "BAD", "BYE", "PREAUTH":
			return len(rest) >= 2 && rest[0] == ' ' && rest[1] == '['
		}
		return false
	}
	switch {
	case h[0] == '+':
		return kindStatus, false // a continuation request: text
	case h[0] != '*':
		// A tagged response: always a status.
		_, rest := word(h)
		return kindStatus, len(rest) > 0 && rest[0] == ' ' && opens(rest[1:])
	case len(h) < 2 || h[1] != ' ':
		return kindData, false // go-imap refuses it
	}
	w, rest := word(h[2:])
	if w != "" && isDigit(w[0]) && len(rest) > 0 && rest[0] == ' ' {
		if t, _ := word(rest[1:]); t == "FETCH" {
			return kindFetch, false
		}
		return kindData, false
	}
	switch w {
	case "OK", "NO", "BAD", "BYE", "PREAUTH":
		return kindStatus, opens(h[2:])
	case "SEARCH", "ESEARCH":
		return kindSearch, false
	}
	return kindData, false
}

func upper(b []byte) string {
	s := []byte(string(b))
	for i, c := range s {
		if c >= 'a' && c <= 'z' {
			s[i] = c - 'a' + 'A'
		}
	}
	return string(s)
}

// smtpFramer follows SMTP replies (RFC 5321 section 4.2) as net/textproto reads them for
// go-smtp: a reply whose first line is "NNN-" goes on until a line "NNN " with the same valid
// code; any other line (a different code, a malformed line) only continues it. A reply whose
// first line is not "NNN-" is that one line.
type smtpFramer struct {
	line, reply   int64
	nline, nreply int64
	head          [4]byte
	nhead         int
	multi         bool    // in a multi-line reply
	code          [3]byte // its first line's code
	valid         bool    // that code is one a line can end the reply with
}

func newSMTPFramer() *smtpFramer { return &smtpFramer{line: maxSMTPLine, reply: maxSMTPReply} }

func (f *smtpFramer) scan(p []byte) (int, *TooLongError) {
	for i, b := range p {
		f.nline++
		f.nreply++
		if f.nline > f.line {
			return i, &TooLongError{What: "reply line", Cap: f.line}
		}
		if f.nreply > f.reply {
			return i, &TooLongError{What: "reply", Cap: f.reply}
		}
		if f.nhead < len(f.head) {
			f.head[f.nhead] = b
			f.nhead++
		}
		if b != '\n' {
			continue
		}
		// textproto's parseCodeLine: at least 4 bytes, the 4th SP or "-", a code of 100 or more.
		sep := byte(0)
		if f.nhead == 4 {
			sep = f.head[3]
		}
		code := [3]byte(f.head[:3])
		valid := f.nhead == 4 && code[0] >= '1' && code[0] <= '9' && isDigit(code[1]) && isDigit(code[2])
		switch {
		case !f.multi && sep == '-':
			f.multi, f.code, f.valid = true, code, valid
		case !f.multi, f.valid && valid && sep == ' ' && code == f.code:
			f.multi, f.nreply = false, 0
		}
		f.nline, f.nhead = 0, 0
	}
	return len(p), nil
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }
