package mailbox

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
)

// Connection diagnostics: the commonest setup mistakes show up as a server that says the wrong
// thing first. An implicit-TLS client that reaches a plaintext port reads a greeting where a
// TLS record should be (crypto/tls reports its first five bytes); a plaintext or STARTTLS
// client that reaches an implicit-TLS port hears nothing (the server waits for a TLS hello) or
// a TLS record; a client that reaches the other protocol's port reads the other greeting
// ("220 " on the IMAP connection, "* OK" on the SMTP one). Those failures come back as a
// *WrongServerError that names what was found, so that the CLI can say what to change.

// Found is what a server sent first, as far as a client can tell from its first bytes.
type Found int

const (
	FoundOther   Found = iota // bytes that are no greeting this client knows
	FoundNothing              // not a byte before the connection ended or went silent
	FoundIMAP                 // an IMAP greeting: "* OK", "* PREAUTH" or "* BYE"
	FoundSMTP                 // an SMTP greeting or reply: three digits, then a space, '-' or line end
	FoundTLS                  // a TLS record (handshake or alert)
)

func (f Found) String() string {
	switch f {
	case FoundNothing:
		return "nothing"
	case FoundIMAP:
		return "an IMAP greeting"
	case FoundSMTP:
		return "an SMTP greeting"
	case FoundTLS:
		return "TLS"
	}
	return "something else"
}

// greetingPeek is how many first bytes classifyGreeting looks at: as many as crypto/tls keeps of
// a record that does not look like TLS (tls.RecordHeaderError.RecordHeader).
const greetingPeek = 5

// classifyGreeting says what the first bytes a server sent are. It looks at the first
// greetingPeek bytes only.
func classifyGreeting(b []byte) Found {
	if len(b) > greetingPeek {
		b = b[:greetingPeek]
	}
	switch {
	case len(b) == 0:
		return FoundNothing
	case len(b) >= 2 && b[0] >= 0x14 && b[0] <= 0x17 && b[1] == 0x03:
		// content type change_cipher_spec, alert, handshake or application data; version 3.x
		return FoundTLS
	case len(b) >= 3 && b[0] == '*' && b[1] == ' ':
		w := strings.ToUpper(string(b[2:]))
		for _, s := range []string{"OK", "PREAUTH", "BYE"} {
			if strings.HasPrefix(s, w) || strings.HasPrefix(w, s) {
				return FoundIMAP
			}
		}
	case len(b) >= 4 && b[0] >= '1' && b[0] <= '5' && isDigit(b[1]) && isDigit(b[2]) && (b[3] == ' ' || b[3] == '-' || b[3] == '\r' || b[3] == '\n'):
		return FoundSMTP
	}
	return FoundOther
}

// WrongServerError means the server at Addr did not begin as the protocol (Server) and TLS mode
// (TLS) of the connection expect: Found says what it sent instead. Typical causes: --tls
// implicit against a STARTTLS or plaintext port (Found is the right protocol's greeting), a
// plaintext or STARTTLS connection to an implicit-TLS port (FoundNothing or FoundTLS), the IMAP
// and SMTP addresses swapped (Found is the other protocol's greeting). Its message says which
// and what to try; Swapped and Suggest give the same as data.
type WrongServerError struct {
	Server string  // "IMAP" or "SMTP": what the connection was for
	Addr   string  // host:port as configured
	TLS    TLSMode // how the client connected
	Found  Found
	Err    error // what failed underneath (a TLS handshake error, a greeting parse error, ...)
}

// Swapped reports whether the server greeted as the other protocol: the IMAP and SMTP
// addresses are probably swapped.
func (e *WrongServerError) Swapped() bool {
	return (e.Server == "IMAP" && e.Found == FoundSMTP) || (e.Server == "SMTP" && e.Found == FoundIMAP)
}

// Suggest returns the TLS mode that would likely work on this port, or "" when the TLS mode
// does not look like the trouble (the port is wrong instead, or the server is no mail server).
func (e *WrongServerError) Suggest() TLSMode {
	switch {
	case e.TLS == TLSImplicit && (e.Found == FoundIMAP || e.Found == FoundSMTP):
		return TLSStartTLS // a plaintext greeting: a STARTTLS (or plaintext) port
	case e.TLS != TLSImplicit && (e.Found == FoundNothing || e.Found == FoundTLS):
		return TLSImplicit
	}
	return ""
}

func (e *WrongServerError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s server %s ", e.Server, e.Addr)
	other := map[string]string{"IMAP": "SMTP", "SMTP": "IMAP"}[e.Server]
	switch {
	case e.TLS == TLSImplicit && e.Swapped():
		fmt.Fprintf(&b, "did not start TLS and greeted as an %s server: are the IMAP and SMTP addresses swapped? (a plaintext greeting also means a STARTTLS port: then try --tls starttls)", other)
	case e.TLS == TLSImplicit && e.Suggest() == TLSStartTLS:
		b.WriteString("did not start TLS: it sent a plaintext greeting. Is this the STARTTLS port? Try --tls starttls (or the implicit-TLS port, usually " + map[string]string{"IMAP": "993", "SMTP": "465"}[e.Server] + ")")
	case e.TLS == TLSImplicit:
		fmt.Fprintf(&b, "did not start TLS and sent no %s greeting either: is this the %s port?", e.Server, e.Server)
	case e.Swapped():
		fmt.Fprintf(&b, "greeted as an %s server: are the IMAP and SMTP addresses swapped?", other)
	case e.Found == FoundTLS:
		b.WriteString("began TLS where a plaintext greeting was expected: this is an implicit-TLS port; try --tls implicit")
	case e.Found == FoundNothing:
		b.WriteString("sent no greeting: an implicit-TLS port waits silently for the client to start TLS; if this is one (usually " + map[string]string{"IMAP": "993", "SMTP": "465"}[e.Server] + "), try --tls implicit")
	default:
		fmt.Fprintf(&b, "did not greet as an %s server: is this the %s port?", e.Server, e.Server)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	return b.String()
}

func (e *WrongServerError) Unwrap() error { return e.Err }

// diagnose returns err as a *WrongServerError when first (the first bytes the server sent, as
// far as the connection read them) is not the greeting a server expects, and err unchanged when
// it is (the failure came later) or when err is nil. An implicit-TLS handshake that met a
// plaintext greeting is recognised from the handshake error itself.
func diagnose(err error, server, addr string, mode TLSMode, first []byte) error {
	if err == nil {
		return nil
	}
	var rh tls.RecordHeaderError
	if mode == TLSImplicit {
		if !errors.As(err, &rh) {
			return err
		}
		first = rh.RecordHeader[:]
	}
	found := classifyGreeting(first)
	expected := (server == "IMAP" && found == FoundIMAP) || (server == "SMTP" && found == FoundSMTP)
	if expected && mode != TLSImplicit {
		return err // it greeted as it should; the trouble came after
	}
	return &WrongServerError{Server: server, Addr: addr, TLS: mode, Found: found, Err: err}
}

// keepDiagnosis returns replacement, the error a connection reports for how it ended (a
// timeout, say), under the *WrongServerError in err if there is one: a server that sent no
// greeting is both.
func keepDiagnosis(err, replacement error) error {
	var we *WrongServerError
	if !errors.As(err, &we) {
		return replacement
	}
	d := *we
	d.Err = replacement
	return &d
}

// firstBytes is a connection that keeps a copy of the first greetingPeek bytes read through it,
// for diagnose.
type firstBytes struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
}

func (c *firstBytes) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if k := greetingPeek - len(c.buf); k > 0 {
			c.buf = append(c.buf, p[:min(k, n)]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

// first returns a copy of the bytes kept.
func (c *firstBytes) first() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.buf...)
}
