package mailbox

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"

	"github.com/emersion/go-smtp"
)

// STARTTLS is done here, not by go-imap or go-smtp: both wrap their own TLS client around the
// connection they were given, so a capped connection handed to them would sit under TLS and
// see only ciphertext. Here the plaintext exchange runs over a cappedConn, the TLS client is
// made over the TCP connection, and the library gets a cappedConn over TLS. Since the library
// waits for a greeting on a new connection and the server's came before STARTTLS, that
// connection starts with a stand-in greeting (imapStandIn, smtpStandIn) that no server sent;
// the library reads the server's capabilities anew over TLS, as RFC 9051 and RFC 3207 require.
//
// Data the server sends after its answer to STARTTLS and before the TLS handshake is refused:
// it would be plaintext injected into the encrypted session (the STARTTLS injection attacks).

const (
	imapStandIn = "* OK [sealpost] TLS established\r\n"
	smtpStandIn = "220 sealpost TLS established\r\n"
)

// errInjected is a server that sent more plaintext after accepting STARTTLS.
var errInjected = errors.New("the server sent data after accepting STARTTLS, before TLS; refusing it")

// imapStartTLS reads the greeting over pc, asks for STARTTLS (RFC 9051 section 6.2.1) and
// returns the TLS client over raw, its handshake done.
func imapStartTLS(ctx context.Context, pc *cappedConn, raw net.Conn, conf *tls.Config) (*tls.Conn, error) {
	// The whole plaintext exchange within one line cap; each line is capped by pc anyway.
	lr := &io.LimitedReader{R: pc, N: maxIMAPLine}
	br := bufio.NewReader(lr)
	readLine := func() (string, error) {
		line, err := br.ReadString('\n')
		if err != nil && lr.N <= 0 {
			tl := &TooLongError{Server: "IMAP", Addr: pc.addr, What: "STARTTLS exchange", Cap: maxIMAPLine}
			pc.failed.Store(tl)
			return "", tl
		}
		return line, err
	}
	line, err := readLine()
	if err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	switch status(line, "*") {
	case "OK":
	case "PREAUTH":
		return nil, errors.New("the server sent PREAUTH on the unencrypted connection: STARTTLS is not possible")
	default:
		return nil, fmt.Errorf("greeting: %q", short(line))
	}
	const tag = "S1"
	if _, err := io.WriteString(raw, tag+" STARTTLS\r\n"); err != nil {
		return nil, fmt.Errorf("STARTTLS: %w", err)
	}
	for {
		if line, err = readLine(); err != nil {
			return nil, fmt.Errorf("STARTTLS: %w", err)
		}
		if s := status(line, tag); s == "OK" {
			break
		} else if s != "" {
			return nil, fmt.Errorf("STARTTLS refused: %q", short(line))
		}
		// Untagged data before the answer: not needed.
	}
	if br.Buffered() > 0 {
		return nil, errInjected
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}

// status returns the upper-cased status word of an IMAP response with the given tag ("*" for
// untagged), or "" when the line has another tag.
func status(line, tag string) string {
	rest, ok := strings.CutPrefix(line, tag+" ")
	if !ok {
		return ""
	}
	w, _, _ := strings.Cut(strings.TrimRight(rest, "\r\n"), " ")
	return strings.ToUpper(w)
}

// short bounds what of a server's line goes into an error message.
func short(s string) string {
	s = strings.TrimRight(s, "\r\n")
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

// smtpStartTLS reads the greeting over pc, says EHLO, asks for STARTTLS (RFC 3207) and returns
// the TLS client over raw, its handshake done. Replies other than the expected one are returned
// as *smtp.SMTPError, as go-smtp would.
func smtpStartTLS(ctx context.Context, pc *cappedConn, raw net.Conn, conf *tls.Config, helo string) (*tls.Conn, error) {
	tp := textproto.NewReader(bufio.NewReader(pc))
	expect := func(code int) (string, error) {
		_, msg, err := tp.ReadResponse(code)
		var te *textproto.Error
		if errors.As(err, &te) {
			return "", &smtp.SMTPError{Code: te.Code, Message: te.Msg}
		}
		return msg, err
	}
	send := func(cmd string) error {
		_, err := io.WriteString(raw, cmd+"\r\n")
		return err
	}
	if _, err := expect(220); err != nil {
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := send("EHLO " + helo); err != nil {
		return nil, err
	}
	msg, err := expect(250)
	if err != nil {
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	offered := false
	for _, ext := range strings.Split(msg, "\n")[1:] {
		if w, _, _ := strings.Cut(ext, " "); strings.EqualFold(w, "STARTTLS") {
			offered = true
		}
	}
	if !offered {
		return nil, errors.New("the server does not offer STARTTLS")
	}
	if err := send("STARTTLS"); err != nil {
		return nil, err
	}
	if _, err := expect(220); err != nil {
		return nil, err
	}
	if tp.R.Buffered() > 0 {
		return nil, errInjected
	}
	tc := tls.Client(raw, conf)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, err
	}
	return tc, nil
}
