package mailbox_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/mailbox"
)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// TestThreat23OversizedOrDeepMail: an oversized mail, too many MIME parts, deep nesting or a
// huge header is rejected before the rest is parsed, with memory bounded (THREATS.md row 23).
func TestThreat23OversizedOrDeepMail(t *testing.T) {
	head := "From: " + alice + "\nTo: " + bob + "\nSubject: sealpost\nX-Sealpost: 1\nMIME-Version: 1.0\n"
	attachment := "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nU0xQSyBvaw==\n"
	// tail would be reported as malformed MIME if anyone parsed it: getting the limit's reason
	// shows that parsing stopped at the limit.
	tail := "\n--never-closed\nContent-Type: multipart/mixed; boundary=\"\n"
	parts := func(n int) string {
		s := head + "Content-Type: multipart/mixed; boundary=b\n\n"
		for range n {
			s += "--b\nContent-Type: text/plain\n\nx\n"
		}
		return s + "--b\n" + attachment + tail
	}
	nested := func(depth int, end string) string {
		s := head
		for i := range depth {
			s += fmt.Sprintf("Content-Type: multipart/mixed; boundary=n%d\n\n--n%d\n", i, i)
		}
		s += attachment
		if end != "" {
			return s + end
		}
		for i := depth - 1; i >= 0; i-- {
			s += fmt.Sprintf("--n%d--\n", i)
		}
		return s
	}
	lim := mailbox.Limits{MaxMessageBytes: 1 << 20}
	cases := []struct {
		name   string
		raw    string
		reason string
	}{
		{"fits: 7 parts + attachment", parts(7)[:len(parts(7))-len(tail)] + "--b--\n", ""},
		{"too many parts", parts(8), mailbox.ReasonTooManyParts},
		{"fits: nesting 4", nested(4, ""), ""},
		{"deep nesting", nested(5, tail), mailbox.ReasonTooDeep},
		{"oversized", head + "Content-Type: multipart/mixed; boundary=b\n\n--b\n" + attachment + strings.Repeat("QUJD\n", 1<<18) + "--b--\n", mailbox.ReasonTooLarge},
		{"huge header", head + strings.Repeat("X-Pad: "+strings.Repeat("a", 90)+"\n", 700) + "Content-Type: text/plain\n\n" + tail, mailbox.ReasonHeaderTooLarge},
		{"huge header line", head + "X-Pad: " + strings.Repeat("a", 100<<10) + "\n\n" + tail, mailbox.ReasonHeaderTooLarge},
		{"huge folded header", head + "X-Pad: a" + strings.Repeat("\n a", 40<<10) + "\n\n" + tail, mailbox.ReasonHeaderTooLarge},
		{"huge part header", head + "Content-Type: multipart/mixed; boundary=b\n\n--b\n" + strings.Repeat("X-Pad: "+strings.Repeat("b", 90)+"\n", 700) + attachment + tail, mailbox.ReasonHeaderTooLarge},
		{"part headers add up", head + "Content-Type: multipart/mixed; boundary=b\n\n" +
			strings.Repeat("--b\n"+strings.Repeat("X-Pad: "+strings.Repeat("c", 90)+"\n", 95)+"Content-Type: text/plain\n\nx\n", 7) + "--b\n" + attachment + tail, mailbox.ReasonHeaderTooLarge},
		{"header never ends", head + strings.Repeat("X-Pad: "+strings.Repeat("d", 90)+"\n", 2000), mailbox.ReasonHeaderTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, raw := range [][]byte{crlf(tc.raw), []byte(tc.raw)} {
				pkg, _, err := mailbox.ParseMail(raw, lim)
				var me *mailbox.MailError
				switch {
				case tc.reason == "" && err != nil:
					t.Fatalf("ParseMail = %v, want success", err)
				case tc.reason == "" && !bytes.Equal(pkg, []byte("SLPK ok")):
					t.Fatalf("ParseMail = package %q, want %q", pkg, "SLPK ok")
				case tc.reason != "" && (!errors.As(err, &me) || me.Reason != tc.reason || pkg != nil):
					t.Fatalf("ParseMail = %v, want a *MailError %q and no package", err, tc.reason)
				}
			}
		})
	}

	// Memory: a 100 MiB stream costs about the cap it hits, not its size. ReadMail reads the
	// top-level header first and stops at MaxHeaderBytes; the rest of a mail stops at
	// MaxMessageBytes.
	const stream = 100 << 20
	for _, tc := range []struct {
		name      string
		r         *countingReader
		reason    string
		maxRead   int64
		maxAlloc  uint64
		limitName string
	}{
		{"header bomb", &countingReader{r: repeat("X-Bomb: "+strings.Repeat("z", 70)+"\r\n", stream)}, mailbox.ReasonHeaderTooLarge,
			mailbox.DefaultMaxHeaderBytes + 4, 2 * mailbox.DefaultMaxHeaderBytes, "2 x MaxHeaderBytes"},
		{"body bomb", &countingReader{r: io.MultiReader(strings.NewReader(string(crlf(head+"Content-Type: text/plain\n\n"))), repeat(strings.Repeat("A", 76)+"\r\n", stream))}, mailbox.ReasonTooLarge,
			mailbox.DefaultMaxMessageBytes + 1, 2 * mailbox.DefaultMaxMessageBytes, "2 x MaxMessageBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			raw, err := mailbox.ReadMail(tc.r, mailbox.Limits{})
			runtime.ReadMemStats(&m1)
			var me *mailbox.MailError
			if !errors.As(err, &me) || me.Reason != tc.reason || raw != nil {
				t.Fatalf("ReadMail(100 MiB %s) = %v, want %q", tc.name, err, tc.reason)
			}
			alloc := m1.TotalAlloc - m0.TotalAlloc
			t.Logf("read %d of %d bytes, allocated %d bytes", tc.r.n, stream, alloc)
			if tc.r.n > tc.maxRead {
				t.Errorf("read %d bytes, want at most %d", tc.r.n, tc.maxRead)
			}
			if alloc >= tc.maxAlloc {
				t.Errorf("allocated %d bytes for a 100 MiB %s, want < %s (%d)", alloc, tc.name, tc.limitName, tc.maxAlloc)
			}
		})
	}

	// And ParseMail on a header bomb inside the size cap allocates nothing in proportion to it.
	t.Run("header bomb inside the cap", func(t *testing.T) {
		raw := bytes.Repeat([]byte("X-Bomb: "+strings.Repeat("y", 70)+"\r\n"), (mailbox.DefaultMaxMessageBytes-1024)/80)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		_, _, err := mailbox.ParseMail(raw, mailbox.Limits{})
		runtime.ReadMemStats(&m1)
		var me *mailbox.MailError
		if !errors.As(err, &me) || me.Reason != mailbox.ReasonHeaderTooLarge {
			t.Fatalf("ParseMail = %v, want %q", err, mailbox.ReasonHeaderTooLarge)
		}
		if alloc := m1.TotalAlloc - m0.TotalAlloc; alloc >= 2*mailbox.DefaultMaxHeaderBytes {
			t.Errorf("allocated %d bytes for a %d-byte header bomb, want < 2 x MaxHeaderBytes", alloc, len(raw))
		}
	})
}

// countingReader counts what is read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// repeat streams unit over and over up to total bytes without holding them.
func repeat(unit string, total int64) io.Reader {
	return &repeater{unit: []byte(unit), left: total}
}

type repeater struct {
	unit []byte
	off  int
	left int64
}

func (r *repeater) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		k := copy(p[n:], r.unit[r.off:])
		if int64(k) > r.left {
			k = int(r.left)
		}
		n += k
		r.left -= int64(k)
		r.off = (r.off + k) % len(r.unit)
	}
	return n, nil
}
