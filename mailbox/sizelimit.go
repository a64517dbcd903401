package mailbox

import (
	"context"
	"errors"
)

// SizeLimiter is an optional interface of a Transport whose mail server limits the size of a
// mail. A sender that cuts data into mails (docs/PROTOCOL.md section 20, streams) asks it how
// large a mail may be, and sizes its pieces so that each mail fits (MailSize).
type SizeLimiter interface {
	// MaxMessageSize returns the largest mail, in bytes, the submission server takes, as its
	// SMTP SIZE extension (RFC 1870) advertises it in its EHLO reply; 0 when it names no limit.
	// The limit is learned at every connection; when no connection has been made yet, it
	// connects (and keeps the connection for the mails that follow). An error means it could
	// not learn it: the caller falls back to a configured limit.
	MaxMessageSize(ctx context.Context) (int64, error)
}

var _ SizeLimiter = (*IMAPSMTP)(nil)

// MaxMessageSize implements SizeLimiter.
func (t *IMAPSMTP) MaxMessageSize(ctx context.Context) (int64, error) {
	if v := t.smtpSize.Load(); v > 0 {
		return v - 1, nil
	}
	if t.shut.Load() {
		return 0, ErrClosed
	}
	select {
	case t.smtpSlots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-t.smtpSlots }()
	if v := t.smtpSize.Load(); v > 0 { // learned while this call waited for a slot
		return v - 1, nil
	}
	sc, err := t.dialSMTP(ctx)
	if err != nil {
		return 0, err
	}
	t.keepSMTP(sc)
	if v := t.smtpSize.Load(); v > 0 {
		return v - 1, nil
	}
	return 0, errors.New("the SMTP server's greeting was not read") // not reached: greet learns it
}

// learnSize records the SIZE the server advertised in its EHLO reply (0: none).
func (t *IMAPSMTP) learnSize(max int, ok bool) {
	if !ok || max < 0 {
		max = 0
	}
	t.smtpSize.Store(int64(max) + 1)
}

// Mail size: ComposeMail writes a package as base64 in lines of 76 characters and CRLF (57
// bytes a line) inside a multipart mail whose headers (From, To, Date, Message-ID, Subject,
// X-Sealpost, MIME headers of the mail and of its one part, two boundaries) take less than
// mailHeaderBytes beside the two addresses.
const mailHeaderBytes = 1024

// MailSize bounds the size of the mail ComposeMail makes of a package of pkgLen bytes from one
// address to another: the exact base64 lines plus a bound of the headers. It is what a sender
// compares with a server's limit (SizeLimiter).
func MailSize(from, to string, pkgLen int) int64 {
	lines := (int64(pkgLen) + 56) / 57
	return lines*78 + mailHeaderBytes + int64(len(from)) + int64(len(to))
}
