package mailbox

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzClassifyGreeting: no panic; the answer depends on the first greetingPeek bytes only (what
// crypto/tls keeps of a record that is not TLS), and only no bytes at all is FoundNothing; the
// error built from it always has a message.
func FuzzClassifyGreeting(f *testing.F) {
	for _, s := range []string{"* OK [CAPABILITY IMAP4rev1] ready\r\n", "* PREAUTH hi\r\n", "* BYE busy\r\n",
		"220 mx.example ESMTP\r\n", "220-mx.example\r\n", "421 busy\r\n", "554\r\n",
		"\x16\x03\x01\x02\x00", "\x15\x03\x03\x00\x02", "HTTP/1.1 400 Bad Request\r\n", "", "*", "* ", "2", "+OK POP3\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := classifyGreeting(b)
		head := b[:min(len(b), greetingPeek)]
		if again := classifyGreeting(head); again != got {
			t.Fatalf("classifyGreeting(%q) = %v, but of its first %d bytes %v", b, got, greetingPeek, again)
		}
		if len(b) >= greetingPeek {
			if again := classifyGreeting(append(bytes.Clone(head), "tail"...)); again != got {
				t.Fatalf("classifyGreeting(%q) = %v, with another tail %v", b, got, again)
			}
		}
		if (got == FoundNothing) != (len(b) == 0) {
			t.Fatalf("classifyGreeting(%q) = %v", b, got)
		}
		for _, mode := range []TLSMode{TLSImplicit, TLSStartTLS, TLSNone} {
			for _, server := range []string{"IMAP", "SMTP"} {
				e := &WrongServerError{Server: server, Addr: "127.0.0.1:1", TLS: mode, Found: got, Err: errors.New("x")}
				if e.Error() == "" {
					t.Fatal("empty message")
				}
			}
		}
	})
}

func TestClassifyGreeting(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Found
	}{
		{"* OK IMAP4rev1 ready\r\n", FoundIMAP},
		{"* ok\r\n", FoundIMAP},
		{"* PREAUTH\r\n", FoundIMAP},
		{"* BYE\r\n", FoundIMAP},
		{"220 mx ESMTP\r\n", FoundSMTP},
		{"220-mx\r\n", FoundSMTP},
		{"554 no\r\n", FoundSMTP},
		{"\x16\x03\x03\x00\x50", FoundTLS},
		{"\x15\x03\x01\x00\x02", FoundTLS},
		{"", FoundNothing},
		{"+OK POP3\r\n", FoundOther},
		{"* FOO\r\n", FoundOther},
		{"2200\r\n", FoundOther},
		{"HTTP/1.1 400\r\n", FoundOther},
	} {
		if got := classifyGreeting([]byte(tc.in)); got != tc.want {
			t.Errorf("classifyGreeting(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
