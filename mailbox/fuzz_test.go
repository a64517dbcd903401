package mailbox_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/mailbox"
)

// FuzzParseMail: no panic; an error is a *MailError and comes with nothing else; a success
// re-composes into a mail that parses back to the same package. Seeds: testdata/mail (plus
// testdata/fuzz/FuzzParseMail, where crashers are kept).
func FuzzParseMail(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.raw)
	}
	lim := mailbox.Limits{MaxMessageBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, raw []byte) {
		pkg, from, err := mailbox.ParseMail(raw, lim)
		if err != nil {
			var me *mailbox.MailError
			if !errors.As(err, &me) || pkg != nil || from != "" {
				t.Fatalf("ParseMail = %d bytes, %q, %v: an error must be a *MailError with no result", len(pkg), from, err)
			}
			return
		}
		again, err := mailbox.ComposeMail("a@example.org", "b@example.org", pkg, time.Unix(0, 0))
		if err != nil {
			t.Fatalf("ComposeMail of a parsed package: %v", err)
		}
		back, _, err := mailbox.ParseMail(again, mailbox.Limits{MaxMessageBytes: 4 << 20})
		if err != nil || !bytes.Equal(back, pkg) {
			t.Fatalf("ParseMail(ComposeMail(pkg)) = %d bytes, %v; want the %d-byte package", len(back), err, len(pkg))
		}
		// ReadMail agrees that the mail is within the caps.
		if r, err := mailbox.ReadMail(bytes.NewReader(raw), lim); err != nil || !bytes.Equal(r, raw) {
			t.Fatalf("ReadMail of a mail ParseMail accepted = %v", err)
		}
	})
}
