package mailbox

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message"
)

// The mail format (docs/PROTOCOL.md section 17). A sealpost mail is
//
//	Date: <now, UTC>
//	From: <our address>
//	To: <peer address>
//	Message-Id: <32 random hex digits@our domain>
//	Subject: sealpost
//	Mime-Version: 1.0
//	X-Sealpost: 1
//	Content-Type: multipart/mixed; boundary=sealpost-<24 random hex digits>
//
//	--sealpost-<random>
//	Content-Type: application/octet-stream; name=sealpost.bin
//	Content-Disposition: attachment; filename=sealpost.bin
//	Content-Transfer-Encoding: base64
//
//	<the package, base64 in lines of 76>
//	--sealpost-<random>--
//
// No header names a command, host or user beyond the two addresses the mail system needs. On
// receipt, X-Sealpost: 1 marks the mail as ours; it must then hold exactly one
// application/octet-stream part, base64, whose bytes start with "SLPK". text/* parts (a footer
// a provider adds) are ignored; anything else is an error.

// Magic is how every sealpost package starts.
const Magic = "SLPK"

const (
	DefaultMaxHeaderBytes = 64 << 10
	DefaultMaxParts       = 8
	DefaultMaxDepth       = 4
	subject               = "sealpost"
	attachmentName        = "sealpost.bin"
)

// Limits bound what ReadMail and ParseMail accept. Zero fields take the defaults.
type Limits struct {
	MaxMessageBytes int64 // the raw mail (default 24 MiB)
	MaxHeaderBytes  int   // every header line together: the top level's and all parts' (default 64 KiB)
	MaxParts        int   // MIME parts below the top level (default 8)
	MaxDepth        int   // multipart nesting below the top level (default 4)
}

func (l Limits) withDefaults() Limits {
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxParts <= 0 {
		l.MaxParts = DefaultMaxParts
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Reasons a MailError gives; callers and tests compare MailError.Reason with them.
const (
	ReasonTooLarge       = "mail too large"
	ReasonHeaderTooLarge = "header too large"
	ReasonTooManyParts   = "too many MIME parts"
	ReasonTooDeep        = "MIME nesting too deep"
	ReasonMalformed      = "malformed MIME"
	ReasonNotSealpost    = "no X-Sealpost: 1 header"
	ReasonNoAttachment   = "no attachment"
	ReasonAttachments    = "more than one attachment"
	ReasonUnexpectedPart = "unexpected MIME part"
	ReasonEncoding       = "attachment not valid base64"
	ReasonNotPackage     = "attachment is not a sealpost package"
	ReasonAddress        = "invalid mail address"
)

// MailError is the one error type of ComposeMail, ReadMail and ParseMail: why a mail is not a
// usable sealpost mail. Reason is one of the Reason constants; Detail says more, for logs.
type MailError struct {
	Reason string
	Detail string
}

func (e *MailError) Error() string {
	if e.Detail == "" {
		return "sealpost mail: " + e.Reason
	}
	return "sealpost mail: " + e.Reason + ": " + e.Detail
}

func mailErr(reason, format string, args ...any) *MailError {
	return &MailError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// ComposeMail builds the mail that carries pkg from one address to another. now is written as
// the Date in UTC (the sender's time zone is not disclosed).
func ComposeMail(from, to string, pkg []byte, now time.Time) ([]byte, error) {
	return composeMail(from, to, pkg, now, rand.Reader)
}

func composeMail(from, to string, pkg []byte, now time.Time, rnd io.Reader) ([]byte, error) {
	domain, err := addrSpec(from)
	if err != nil {
		return nil, mailErr(ReasonAddress, "from %q: %v", from, err)
	}
	if _, err := addrSpec(to); err != nil {
		return nil, mailErr(ReasonAddress, "to %q: %v", to, err)
	}
	if !bytes.HasPrefix(pkg, []byte(Magic)) {
		return nil, mailErr(ReasonNotPackage, "it does not start with %q", Magic)
	}
	var r [28]byte
	if _, err := io.ReadFull(rnd, r[:]); err != nil {
		return nil, fmt.Errorf("compose mail: %w", err)
	}
	boundary := "sealpost-" + hex.EncodeToString(r[16:])

	// go-message writes header fields in the reverse order of Add.
	var h message.Header
	h.SetContentType("multipart/mixed", map[string]string{"boundary": boundary})
	h.Add("X-Sealpost", "1")
	h.Add("MIME-Version", "1.0")
	h.Add("Subject", subject)
	h.Add("Message-ID", "<"+hex.EncodeToString(r[:16])+"@"+domain+">")
	h.Add("To", to)
	h.Add("From", from)
	h.Add("Date", now.UTC().Format(time.RFC1123Z))

	var ph message.Header
	ph.Add("Content-Transfer-Encoding", "base64")
	ph.SetContentDisposition("attachment", map[string]string{"filename": attachmentName})
	ph.SetContentType("application/octet-stream", map[string]string{"name": attachmentName})

	var buf bytes.Buffer
	buf.Grow(len(pkg)*4/3 + len(pkg)/38 + 1024)
	w, err := message.CreateWriter(&buf, h)
	if err != nil {
		return nil, fmt.Errorf("compose mail: %w", err)
	}
	pw, err := w.CreatePart(ph)
	if err != nil {
		return nil, fmt.Errorf("compose mail: %w", err)
	}
	if _, err := pw.Write(pkg); err != nil {
		return nil, fmt.Errorf("compose mail: %w", err)
	}
	if err := pw.Close(); err != nil {
		return nil, fmt.Errorf("compose mail: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("compose mail: %w", err)
	}
	return buf.Bytes(), nil
}

// addrSpec accepts a bare address (local@domain, no display name, no angle brackets) and
// returns its domain.
func addrSpec(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty")
	}
	if len(s) > 254 {
		return "", errors.New("longer than 254 bytes")
	}
	if strings.ContainsAny(s, " \t\r\n<>") {
		return "", errors.New("want a bare address such as name@example.org")
	}
	a, err := netmail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", errors.New("want a bare address such as name@example.org")
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return "", errors.New("want a bare address such as name@example.org")
	}
	return s[at+1:], nil
}

// ReadMail reads one raw mail from r within the limits, checking the top-level header's size
// before reading further: a header bomb costs MaxHeaderBytes of memory and an oversized mail
// about MaxMessageBytes, whatever r holds. Violations are *MailError; I/O failures are not.
func ReadMail(r io.Reader, limits Limits) ([]byte, error) {
	lim := limits.withDefaults()
	first := int64(lim.MaxHeaderBytes) + 4 // room for the blank line that ends the header
	if first > lim.MaxMessageBytes+1 {
		first = lim.MaxMessageBytes + 1
	}
	head := make([]byte, first)
	n, err := io.ReadFull(r, head)
	head = head[:n]
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		if int64(n) > lim.MaxMessageBytes {
			return nil, mailErr(ReasonTooLarge, "more than %d bytes", lim.MaxMessageBytes)
		}
		return head, nil
	case err != nil:
		return nil, fmt.Errorf("read mail: %w", err)
	}
	if end := headerEnd(head); end < 0 || end > lim.MaxHeaderBytes {
		return nil, mailErr(ReasonHeaderTooLarge, "no end of header within %d bytes", lim.MaxHeaderBytes)
	}
	// The rest in chunks, so that an oversized mail costs about the cap and not the doubling
	// growth of one buffer.
	chunks := [][]byte{head}
	total := int64(n)
	for {
		size := min(1<<20, lim.MaxMessageBytes+1-total)
		if size <= 0 {
			return nil, mailErr(ReasonTooLarge, "more than %d bytes", lim.MaxMessageBytes)
		}
		buf := make([]byte, size)
		k, err := io.ReadFull(r, buf)
		chunks = append(chunks, buf[:k])
		total += int64(k)
		if total > lim.MaxMessageBytes {
			return nil, mailErr(ReasonTooLarge, "more than %d bytes", lim.MaxMessageBytes)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read mail: %w", err)
		}
	}
	if len(chunks) == 2 && len(chunks[1]) == 0 {
		return head, nil
	}
	return bytes.Join(chunks, nil), nil
}

// headerEnd returns the length of the top-level header (up to the blank line), or -1 when b
// holds no blank line.
func headerEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\n")) || bytes.HasPrefix(b, []byte("\r\n")) {
		return 0
	}
	end := -1
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		end = i + 1
	}
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 && (end < 0 || i+1 < end) {
		end = i + 1
	}
	return end
}

// ParseMail extracts the package from a raw sealpost mail. It checks the size, then scans the
// MIME structure (header bytes, part count, nesting) without decoding anything, and only then
// lets go-message parse it. from is the From header's address (or its raw text, at most 256
// bytes, when it does not parse); it is informational only. Every failure is a *MailError, and
// then pkg is nil.
func ParseMail(raw []byte, limits Limits) (pkg []byte, from string, err error) {
	lim := limits.withDefaults()
	if int64(len(raw)) > lim.MaxMessageBytes {
		return nil, "", mailErr(ReasonTooLarge, "%d bytes, the cap is %d", len(raw), lim.MaxMessageBytes)
	}
	if err := scanStructure(raw, lim); err != nil {
		return nil, "", err
	}
	ent, err := message.ReadWithOptions(bytes.NewReader(raw), &message.ReadOptions{MaxHeaderBytes: int64(lim.MaxHeaderBytes) + 2})
	if err != nil && !lenient(err) || ent == nil {
		return nil, "", mailErr(ReasonMalformed, "%v", err)
	}
	if strings.TrimSpace(ent.Header.Get("X-Sealpost")) != "1" {
		return nil, "", mailErr(ReasonNotSealpost, "")
	}
	from = fromAddress(ent.Header.Get("From"))
	p := &walker{lim: lim}
	if err := p.walk(ent, 0); err != nil {
		return nil, "", err
	}
	if !p.found {
		return nil, "", mailErr(ReasonNoAttachment, "")
	}
	if !bytes.HasPrefix(p.pkg, []byte(Magic)) {
		return nil, "", mailErr(ReasonNotPackage, "it does not start with %q", Magic)
	}
	return p.pkg, from, nil
}

// lenient reports the go-message errors that still come with a usable entity: an unknown
// charset (it matters only for text, which is ignored) or transfer encoding (checked per part).
func lenient(err error) bool {
	return message.IsUnknownCharset(err) || message.IsUnknownEncoding(err)
}

func fromAddress(v string) string {
	if a, err := netmail.ParseAddress(v); err == nil {
		return a.Address
	}
	v = strings.TrimSpace(v)
	if len(v) > 256 {
		v = v[:256]
	}
	return strings.ToValidUTF8(v, "?")
}

type walker struct {
	lim   Limits
	parts int
	found bool
	pkg   []byte
}

func (p *walker) walk(e *message.Entity, depth int) error {
	if mr := e.MultipartReader(); mr != nil {
		if depth >= p.lim.MaxDepth {
			return mailErr(ReasonTooDeep, "more than %d levels", p.lim.MaxDepth)
		}
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil && !lenient(err) || part == nil {
				return mailErr(ReasonMalformed, "%v", err)
			}
			if p.parts++; p.parts > p.lim.MaxParts {
				return mailErr(ReasonTooManyParts, "more than %d", p.lim.MaxParts)
			}
			if err := p.walk(part, depth+1); err != nil {
				return err
			}
		}
	}
	mt, _, _ := e.Header.ContentType()
	switch {
	case mt == "application/octet-stream":
		if p.found {
			return mailErr(ReasonAttachments, "")
		}
		if cte := strings.TrimSpace(e.Header.Get("Content-Transfer-Encoding")); !strings.EqualFold(cte, "base64") {
			return mailErr(ReasonEncoding, "Content-Transfer-Encoding %q", cte)
		}
		b, err := io.ReadAll(io.LimitReader(e.Body, p.lim.MaxMessageBytes))
		if err != nil {
			return mailErr(ReasonEncoding, "%v", err)
		}
		p.found, p.pkg = true, b
	case strings.HasPrefix(mt, "text/"):
		// A notice or footer a provider added: ignored, never decoded.
	default:
		return mailErr(ReasonUnexpectedPart, "%q", mt)
	}
	return nil
}

// scanStructure walks the raw lines once, decoding nothing, and enforces the limits on header
// bytes (all headers together), parts and nesting before go-message sees the mail. It follows
// the boundaries that Content-Type headers declare, as RFC 2046 does; go-message re-checks the
// part count and depth on its own walk.
func scanStructure(raw []byte, lim Limits) error {
	var (
		headerBytes int
		inHeader    = true
		inCT        bool   // the header field being read is the first Content-Type
		seenCT      bool   // this header already had a Content-Type
		ct          []byte // its unfolded value
		stack       []string
		parts       int
	)
	endHeader := func() error {
		inHeader, inCT, seenCT = false, false, false
		mt, params, err := mime.ParseMediaType(string(ct))
		ct = ct[:0]
		if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
			return nil
		}
		if stack = append(stack, params["boundary"]); len(stack) > lim.MaxDepth {
			return mailErr(ReasonTooDeep, "more than %d levels", lim.MaxDepth)
		}
		return nil
	}
	for pos := 0; pos < len(raw); {
		var line []byte
		if inHeader {
			budget := lim.MaxHeaderBytes - headerBytes
			window := raw[pos:min(len(raw), pos+budget+1)]
			i := bytes.IndexByte(window, '\n')
			if i < 0 {
				if len(window) > budget {
					return mailErr(ReasonHeaderTooLarge, "more than %d bytes of headers", lim.MaxHeaderBytes)
				}
				i = len(window) - 1 // the mail ends inside a header
			}
			line = raw[pos : pos+i+1]
			if headerBytes += len(line); headerBytes > lim.MaxHeaderBytes {
				return mailErr(ReasonHeaderTooLarge, "more than %d bytes of headers", lim.MaxHeaderBytes)
			}
		} else {
			i := bytes.IndexByte(raw[pos:], '\n')
			if i < 0 {
				i = len(raw) - pos - 1
			}
			line = raw[pos : pos+i+1]
		}
		pos += len(line)
		content := bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))

		if inHeader {
			switch {
			case len(content) == 0:
				if err := endHeader(); err != nil {
					return err
				}
			case content[0] == ' ' || content[0] == '\t':
				if inCT {
					ct = append(ct, content...)
				}
			default:
				inCT = false
				if k, v, ok := bytes.Cut(content, []byte(":")); ok && !seenCT && strings.EqualFold(string(bytes.TrimSpace(k)), "Content-Type") {
					inCT, seenCT = true, true
					ct = append(ct[:0], v...)
				}
			}
			continue
		}
		if len(stack) == 0 || !bytes.HasPrefix(content, []byte("--")) {
			continue
		}
		t := bytes.TrimRight(content[2:], " \t")
		for i := len(stack) - 1; i >= 0; i-- {
			rest, ok := bytes.CutPrefix(t, []byte(stack[i]))
			if !ok {
				continue
			}
			if len(rest) == 0 { // a delimiter: a part's header follows
				stack = stack[:i+1]
				if parts++; parts > lim.MaxParts {
					return mailErr(ReasonTooManyParts, "more than %d", lim.MaxParts)
				}
				inHeader = true
				break
			}
			if string(rest) == "--" { // the close delimiter of this multipart
				stack = stack[:i]
				break
			}
		}
	}
	if len(stack) > 0 {
		return mailErr(ReasonMalformed, "multipart %q never closed (truncated mail?)", stack[len(stack)-1])
	}
	return nil
}
