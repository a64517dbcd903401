package mailbox

import (
	"strings"
	"testing"
)

func TestSplitPlus(t *testing.T) {
	for _, tc := range []struct {
		in, base, detail string
		ok               bool
	}{
		{"shared+web1@example.org", "shared@example.org", "web1", true},
		{"shared+a+b@example.org", "shared@example.org", "a+b", true},
		{"shared+@example.org", "shared@example.org", "", true},
		{"shared@example.org", "shared@example.org", "", false},
		{"+web1@example.org", "+web1@example.org", "", false},
		{"web1", "web1", "", false},
		{"a+b", "a+b", "", false},
		{"", "", "", false},
	} {
		base, detail, ok := splitPlus(tc.in)
		if base != tc.base || detail != tc.detail || ok != tc.ok {
			t.Errorf("splitPlus(%q) = %q, %q, %v; want %q, %q, %v", tc.in, base, detail, ok, tc.base, tc.detail, tc.ok)
		}
	}
}

func TestOthersMail(t *testing.T) {
	web1 := "shared+web1@example.org"
	for _, tc := range []struct {
		name      string
		to        string
		own       string
		login     string
		wantOther bool
	}{
		{"own address", "shared+web1@example.org", web1, "shared@example.org", false},
		{"own address, other case", "<Shared+Web1@Example.ORG>", web1, "shared@example.org", false},
		{"own among several", "shared+web2@example.org, shared+web1@example.org", web1, "shared@example.org", false},
		{"sibling", "shared+web2@example.org", web1, "shared@example.org", true},
		{"sibling with a name", `"web2" <shared+web2@example.org>`, web1, "shared@example.org", true},
		{"the mailbox itself", "shared@example.org", web1, "shared@example.org", true},
		{"the mailbox, login not an address", "shared@example.org", web1, "shared", true},
		{"sibling of the login only", "admin+x@example.org", "web1@example.org", "admin@example.org", true},
		{"a node without detail sees a plus sibling", "shared+web1@example.org", "shared@example.org", "shared@example.org", true},
		{"an unrelated alias", "alias@example.net", web1, "shared@example.org", false},
		{"same local part, other domain", "shared+web2@example.net", web1, "shared@example.org", false},
		{"no To", "", web1, "shared@example.org", false},
		{"To that does not parse", "<<<", web1, "shared@example.org", false},
		{"single node, own address", "me@example.org", "me@example.org", "me@example.org", false},
		{"single node, forwarded from elsewhere", "old@example.net", "me@example.org", "me@example.org", false},
	} {
		got := othersMail(toAddresses(tc.to), tc.own, mailboxesOf(tc.own, tc.login))
		if got != tc.wantOther {
			t.Errorf("%s: othersMail(To %q, own %q, login %q) = %v, want %v", tc.name, tc.to, tc.own, tc.login, got, tc.wantOther)
		}
	}
}

func TestFolderDetail(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"web1", "web1"},
		{"Web_1-a", "web_1-a"},
		{"a.b", "a=2Eb"},
		{"a/b", "a=2Fb"},
		{"*%", "=2A=25"},
		{"=", "=3D"},
		{"", "="},
	} {
		if got := folderDetail(tc.in); got != tc.want {
			t.Errorf("folderDetail(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSharedFolders: a node with a plus address keeps its own processed and rejected folders;
// one without keeps the shared defaults, and folders given explicitly are kept as given.
func TestSharedFolders(t *testing.T) {
	for _, tc := range []struct {
		addr, processed, rejected string
		explicit                  bool
	}{
		{"shared+web1@example.org", "sealpost/processed/web1", "sealpost/rejected/web1", false},
		{"shared@example.org", "sealpost/processed", "sealpost/rejected", false},
		{"shared+web1@example.org", "mine/done", "mine/bad", true},
	} {
		cfg := Config{Address: tc.addr, IMAPAddr: "127.0.0.1:1", SMTPAddr: "127.0.0.1:2", Username: "shared@example.org"}
		if tc.explicit {
			cfg.ProcessedFolder, cfg.RejectedFolder = tc.processed, tc.rejected
		}
		s, err := cfg.settings()
		if err != nil {
			t.Fatal(err)
		}
		if s.ProcessedFolder != tc.processed || s.RejectedFolder != tc.rejected || s.defaultProcessed == tc.explicit {
			t.Errorf("%s (explicit %v): folders %q, %q (default %v); want %q, %q", tc.addr, tc.explicit, s.ProcessedFolder, s.RejectedFolder, s.defaultProcessed, tc.processed, tc.rejected)
		}
	}
}

// FuzzPlus: splitPlus splits without loss, folderDetail writes only folder-safe bytes and is
// injective, and a mail sent to the node's own address is never another node's.
func FuzzPlus(f *testing.F) {
	for _, s := range []string{"shared+web1@example.org", "a+b+c@d", "+@", "x@y", "a.b/c*%=@e", ""} {
		f.Add(s, "other+web2@example.org")
	}
	f.Fuzz(func(t *testing.T, addr, other string) {
		base, detail, ok := splitPlus(addr)
		if ok {
			at := strings.LastIndexByte(base, '@')
			if at <= 0 || base[:at]+"+"+detail+base[at:] != addr || strings.Contains(base[:at], "+") {
				t.Fatalf("splitPlus(%q) = %q, %q: does not rebuild the address", addr, base, detail)
			}
		} else if base != addr || detail != "" {
			t.Fatalf("splitPlus(%q) = %q, %q, false; want the address back", addr, base, detail)
		}
		fd := folderDetail(detail)
		if fd == "" || strings.Trim(fd, "abcdefghijklmnopqrstuvwxyz0123456789-_=ABCDEF") != "" {
			t.Fatalf("folderDetail(%q) = %q: unsafe bytes", detail, fd)
		}
		_, d2, _ := splitPlus(other)
		if folderDetail(d2) == fd && !strings.EqualFold(d2, detail) {
			t.Fatalf("folderDetail(%q) = folderDetail(%q) = %q", detail, d2, fd)
		}
		if othersMail([]string{other, addr}, addr, mailboxesOf(addr, other)) {
			t.Fatalf("othersMail: a mail to %q counted as another node's", addr)
		}
	})
}
