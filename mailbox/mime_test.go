package mailbox_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"net/mail"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// vector is one file of testdata/mail: "key: value" lines, a blank line, then the raw mail
// (age's test vector layout).
type vector struct {
	name, expect, reason, from string
	pkg, raw                   []byte
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "mail", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		meta, raw, ok := bytes.Cut(b, []byte("\n\n"))
		if !ok {
			t.Fatalf("%s: no blank line after the expectations", f)
		}
		v := vector{name: strings.TrimSuffix(filepath.Base(f), ".txt"), raw: raw}
		sc := bufio.NewScanner(bytes.NewReader(meta))
		for sc.Scan() {
			k, val, _ := strings.Cut(sc.Text(), ": ")
			switch k {
			case "expect":
				v.expect = val
			case "reason":
				v.reason = val
			case "from":
				v.from = val
			case "package":
				if v.pkg, err = hex.DecodeString(val); err != nil {
					t.Fatalf("%s: package: %v", f, err)
				}
			default:
				t.Fatalf("%s: unknown key %q", f, k)
			}
		}
		vs = append(vs, v)
	}
	// Fuzz seeds that go missing when a folder moves would make the fuzz target toothless.
	if len(vs) < 20 {
		t.Fatalf("found %d mail vectors in testdata/mail, want at least 20", len(vs))
	}
	return vs
}

func TestParseMailVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			pkg, from, err := mailbox.ParseMail(v.raw, mailbox.Limits{})
			switch v.expect {
			case "ok":
				if err != nil || !bytes.Equal(pkg, v.pkg) || from != v.from {
					t.Fatalf("ParseMail(%s) = %x, %q, %v; want %x, %q, nil", v.name, pkg, from, err, v.pkg, v.from)
				}
			case "reject":
				var me *mailbox.MailError
				if !errors.As(err, &me) || me.Reason != v.reason || pkg != nil || from != "" {
					t.Fatalf("ParseMail(%s) = %d bytes, %q, %v; want a *MailError %q", v.name, len(pkg), from, err, v.reason)
				}
			default:
				t.Fatalf("expect: %q", v.expect)
			}
			// ReadMail gives back the same bytes for anything within the caps.
			raw, err := mailbox.ReadMail(bytes.NewReader(v.raw), mailbox.Limits{})
			if v.reason == mailbox.ReasonHeaderTooLarge {
				var me *mailbox.MailError
				if !errors.As(err, &me) || me.Reason != v.reason {
					t.Errorf("ReadMail(%s) = %v, want %q", v.name, err, v.reason)
				}
			} else if err != nil || !bytes.Equal(raw, v.raw) {
				t.Errorf("ReadMail(%s) = %d bytes, %v; want the %d bytes back", v.name, len(raw), err, len(v.raw))
			}
		})
	}
}

func TestComposeMail(t *testing.T) {
	pkg := fixtures.Package(406)
	now := time.Date(2025, 3, 1, 12, 30, 0, 0, time.FixedZone("CET", 3600))
	raw, err := mailbox.ComposeMail(alice, bob, pkg, now)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m.Header {
		keys = append(keys, k)
	}
	want := "Content-Type Date From Message-Id Mime-Version Subject To X-Sealpost"
	if got := strings.Join(sorted(keys), " "); got != want {
		t.Errorf("header fields %q, want exactly %q", got, want)
	}
	if s := m.Header.Get("Subject"); s != "sealpost" {
		t.Errorf("Subject %q, want the opaque %q", s, "sealpost")
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(now) || !strings.HasSuffix(m.Header.Get("Date"), "+0000") {
		t.Errorf("Date %q (%v): want %v in UTC", m.Header.Get("Date"), err, now)
	}
	if id := m.Header.Get("Message-Id"); !strings.HasSuffix(id, "@relay.test>") || len(id) < 30 {
		t.Errorf("Message-Id %q: want <random@sender's domain>", id)
	}
	if m.Header.Get("X-Sealpost") != "1" || !strings.HasPrefix(m.Header.Get("Content-Type"), "multipart/mixed;") {
		t.Errorf("X-Sealpost %q, Content-Type %q", m.Header.Get("X-Sealpost"), m.Header.Get("Content-Type"))
	}
	for _, part := range []string{"Content-Type: application/octet-stream; name=sealpost.bin\r\n", "Content-Transfer-Encoding: base64\r\n", "Content-Disposition: attachment; filename=sealpost.bin\r\n"} {
		if !bytes.Contains(raw, []byte(part)) {
			t.Errorf("the part lacks %q", part)
		}
	}
	for i, line := range strings.Split(string(raw), "\r\n") {
		if len(line) > 78 {
			t.Errorf("line %d is %d bytes: %q", i, len(line), line)
		}
	}
	// Nothing about the machine or the person leaks into the mail.
	secrets := []string{}
	if h, err := os.Hostname(); err == nil && len(h) > 3 {
		secrets = append(secrets, h)
	}
	if u, err := user.Current(); err == nil && len(u.Username) > 3 {
		secrets = append(secrets, u.Username)
	}
	for _, s := range secrets {
		if bytes.Contains(raw, []byte(s)) {
			t.Errorf("the mail contains %q", s)
		}
	}
	got, from, err := mailbox.ParseMail(raw, mailbox.Limits{})
	if err != nil || !bytes.Equal(got, pkg) || from != alice {
		t.Errorf("ParseMail(ComposeMail) = %d bytes, %q, %v; want the package from %s", len(got), from, err, alice)
	}
	// Two mails of the same package share no identifier.
	raw2, _ := mailbox.ComposeMail(alice, bob, pkg, now)
	m2, _ := mail.ReadMessage(bytes.NewReader(raw2))
	if m2.Header.Get("Message-Id") == m.Header.Get("Message-Id") || bytes.Equal(raw, raw2) {
		t.Errorf("two compositions share a Message-Id or boundary")
	}
}

func sorted(l []string) []string {
	for i := range l {
		for j := i + 1; j < len(l); j++ {
			if l[j] < l[i] {
				l[i], l[j] = l[j], l[i]
			}
		}
	}
	return l
}

func TestComposeMailRejects(t *testing.T) {
	pkg := fixtures.Package(10)
	for _, tc := range []struct {
		name, from, to string
		pkg            []byte
		reason         string
	}{
		{"display name", "Alice <" + alice + ">", bob, pkg, mailbox.ReasonAddress},
		{"header injection", alice + "\r\nBcc: x@evil.example", bob, pkg, mailbox.ReasonAddress},
		{"no domain", "alice", bob, pkg, mailbox.ReasonAddress},
		{"empty to", alice, "", pkg, mailbox.ReasonAddress},
		{"angle brackets", alice, "<" + bob + ">", pkg, mailbox.ReasonAddress},
		{"not a package", alice, bob, []byte("hello"), mailbox.ReasonNotPackage},
		{"empty package", alice, bob, nil, mailbox.ReasonNotPackage},
	} {
		raw, err := mailbox.ComposeMail(tc.from, tc.to, tc.pkg, time.Now())
		var me *mailbox.MailError
		if !errors.As(err, &me) || me.Reason != tc.reason || raw != nil {
			t.Errorf("ComposeMail(%s) = %v, want a *MailError %q", tc.name, err, tc.reason)
		}
	}
}
