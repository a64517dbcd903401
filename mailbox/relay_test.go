package mailbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

const (
	alice = "alice@relay.test"
	bob   = "bob@relay.test"
	// contractCap is the received-mail cap of the transports in the contract runs.
	contractCap = 64 << 10
)

var relayUsers = map[string]string{alice: "alice-pw", bob: "bob-pw"}

// startRelay starts an embedded relay for the test.
func startRelay(t testing.TB, cfg mailbox.RelayConfig) *mailbox.Relay {
	t.Helper()
	if cfg.Users == nil {
		cfg.Users = relayUsers
	}
	r, err := mailbox.StartRelay(context.Background(), cfg)
	if err != nil {
		t.Fatalf("StartRelay: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// relayKind is a relay advertising the capabilities of a kind of server: a full one (MOVE and
// UIDPLUS), or an older one with only the capabilities listed.
type relayKind struct {
	name string
	caps []imap.Cap // with full unset: all it advertises besides IMAP4rev1
	full bool
}

// relayKinds are the servers the moving code is tried on: with MOVE, with UIDPLUS but no MOVE
// (COPY + STORE + UID EXPUNGE), and with neither (COPY + STORE, no expunge).
var relayKinds = []relayKind{{"MOVE", nil, true}, {"UIDPLUS", []imap.Cap{imap.CapUIDPlus}, false}, {"IMAP4rev1only", nil, false}}

func (k relayKind) start(t testing.TB) *mailbox.Relay {
	t.Helper()
	cfg := mailbox.RelayConfig{}
	if !k.full {
		mailbox.SetRelayCaps(&cfg, k.caps...)
	}
	return startRelay(t, cfg)
}

// newTransport returns a plaintext loopback transport for user on the relay.
func newTransport(t testing.TB, r *mailbox.Relay, user string, edit func(*mailbox.Config)) *mailbox.IMAPSMTP {
	t.Helper()
	cfg := mailbox.Config{
		Address: user, IMAPAddr: r.IMAPAddr(), SMTPAddr: r.SMTPAddr(),
		Username: user, Password: r.Users()[user],
		TLS: mailbox.TLSNone, AllowPlaintextAuth: true,
		MaxMessageBytes: contractCap, CommandTimeout: 5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	tr, err := mailbox.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func relayEnv(t *testing.T, r *mailbox.Relay, edit func(*mailbox.Config)) fixtures.ContractEnv {
	return fixtures.ContractEnv{
		New: func(t *testing.T, user string) mailbox.Transport {
			return newTransport(t, r, user, edit)
		},
		Users:           r.Addresses(),
		Inject:          fixtures.SMTPInjector(r.SMTPAddr(), "mx@elsewhere.test"),
		Inspect:         fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil),
		MaxMessageBytes: contractCap,
		WakeBound:       2 * time.Second,
	}
}

// TestContractRelay runs the shared Transport contract against the embedded relay with IDLE.
func TestContractRelay(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	fixtures.RunTransportContract(t, relayEnv(t, r, nil))
}

// TestContractRelayPolling runs it again with IDLE disabled: the polling path.
func TestContractRelayPolling(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	fixtures.RunTransportContract(t, relayEnv(t, r, func(c *mailbox.Config) {
		c.DisableIDLE = true
		c.PollInterval = 50 * time.Millisecond
	}))
}

// TestContractRelayOlderServers runs the contract against servers without MOVE: with UIDPLUS
// (COPY + STORE + UID EXPUNGE of one UID) and without (COPY + flag, no expunge).
func TestContractRelayOlderServers(t *testing.T) {
	for _, k := range relayKinds {
		if k.full {
			continue // TestContractRelay
		}
		t.Run(k.name, func(t *testing.T) {
			fixtures.RunTransportContract(t, relayEnv(t, k.start(t), nil))
		})
	}
}

// TestThreat29ForeignMailUntouched: mail in the mailbox that is not sealpost's is left untouched
// (THREATS.md row 29): never returned, never downloaded beyond its marker headers, never
// flagged, moved or expunged, whatever the server offers (MOVE; UIDPLUS only; neither), and the
// user's own flags on it (including \Deleted) survive our acknowledgements.
func TestThreat29ForeignMailUntouched(t *testing.T) {
	big := crlf("From: photos@elsewhere.test\nTo: " + bob + "\nSubject: holiday\nMessage-ID: <big@elsewhere.test>\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=p\n\n--p\nContent-Type: image/jpeg\nContent-Transfer-Encoding: base64\n\n" +
		strings.Repeat(strings.Repeat("QUJD", 19)+"\n", 4000) + "--p--\n")
	foreign := []struct {
		name  string
		raw   []byte
		flags []imap.Flag // set by the user's own mail client before sealpost runs
	}{
		{"plain", crlf("From: friend@elsewhere.test\nTo: " + bob + "\nSubject: hi\nMessage-ID: <f1@elsewhere.test>\n\nhello\n"), nil},
		{"html", crlf("From: shop@elsewhere.test\nTo: " + bob + "\nSubject: offer\nMessage-ID: <f2@elsewhere.test>\nMIME-Version: 1.0\nContent-Type: text/html; charset=x-unknown\n\n<p>buy</p>\n"), nil},
		{"attachment", crlf("From: boss@elsewhere.test\nTo: " + bob + "\nSubject: report\nMessage-ID: <f3@elsewhere.test>\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: application/pdf; name=r.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQ=\n--b--\n"), nil},
		{"marker 0", crlf("From: x@elsewhere.test\nTo: " + bob + "\nSubject: s\nX-Sealpost: 0\nMessage-ID: <f4@elsewhere.test>\n\nbody\n"), nil},
		{"marker in body", crlf("From: x@elsewhere.test\nTo: " + bob + "\nSubject: s\nMessage-ID: <f5@elsewhere.test>\n\nX-Sealpost: 1\n"), nil},
		{"oversized", big, nil},
		{"flagged by the user", crlf("From: mum@elsewhere.test\nTo: " + bob + "\nSubject: call me\nMessage-ID: <f6@elsewhere.test>\n\n!\n"), []imap.Flag{imap.FlagFlagged}},
		{"deleted by the user", crlf("From: spam@elsewhere.test\nTo: " + bob + "\nSubject: win\nMessage-ID: <f7@elsewhere.test>\n\n$$$\n"), []imap.Flag{imap.FlagDeleted}},
	}
	for _, k := range relayKinds {
		t.Run(k.name, func(t *testing.T) {
			r := k.start(t)
			inject := fixtures.SMTPInjector(r.SMTPAddr(), "mx@elsewhere.test")
			inspect := fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
			flag := fixtures.IMAPFlagger(r.IMAPAddr(), r.Users(), nil)
			a, b := newTransport(t, r, alice, nil), newTransport(t, r, bob, nil)
			ctx := context.Background()

			var pkgs [][]byte
			for i, f := range foreign {
				inject(t, bob, f.raw)
				if i%3 == 0 {
					p := fixtures.Package(120)
					if err := a.Send(ctx, bob, p); err != nil {
						t.Fatalf("Send: %v", err)
					}
					pkgs = append(pkgs, p)
				}
			}
			before := inspect(t, bob, "INBOX")
			for _, f := range foreign {
				if len(f.flags) > 0 {
					flag(t, bob, "INBOX", uidOf(t, before, f.raw), f.flags...)
				}
			}
			before = inspect(t, bob, "INBOX")

			msgs, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
			if err != nil {
				t.Fatalf("Receive: %v", err)
			}
			if len(msgs) != len(pkgs) {
				t.Fatalf("Receive returned %d messages, want the %d sealpost ones", len(msgs), len(pkgs))
			}
			for i, m := range msgs {
				if !bytes.Equal(m.Package, pkgs[i]) {
					t.Fatalf("message %d is not sealpost package %d", i, i)
				}
				if i%2 == 0 {
					err = b.Ack(ctx, m)
				} else {
					err = b.Reject(ctx, m, "test")
				}
				if err != nil {
					t.Fatalf("Ack/Reject: %v", err)
				}
			}
			if more, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0); err != nil || len(more) != 0 {
				t.Fatalf("Receive(zero cursor) = %d messages, %v; want none", len(more), err)
			}

			after := inspect(t, bob, "INBOX")
			for _, f := range foreign {
				uid := uidOf(t, before, f.raw)
				was, now := find(before, uid), find(after, uid)
				if now == nil {
					t.Errorf("%s: gone from the inbox", f.name)
					continue
				}
				if !bytes.Equal(now.Raw, f.raw) {
					t.Errorf("%s: content changed", f.name)
				}
				if fmt.Sprint(now.Flags) != fmt.Sprint(was.Flags) {
					t.Errorf("%s: flags %v, were %v", f.name, now.Flags, was.Flags)
				}
			}
			st := b.Stats()
			var sealpostBytes int64
			for _, folder := range []string{"sealpost/processed", "sealpost/rejected"} {
				for _, m := range inspect(t, bob, folder) {
					sealpostBytes += int64(len(m.Raw))
				}
			}
			if st.BodyBytes != sealpostBytes {
				t.Errorf("downloaded %d body bytes, want exactly the %d of the sealpost mail", st.BodyBytes, sealpostBytes)
			}
			if st.HeaderBytes > int64(len(foreign)+len(pkgs))*300 {
				t.Errorf("fetched %d header bytes for %d mails: more than the marker headers", st.HeaderBytes, len(foreign)+len(pkgs))
			}
		})
	}
}

func uidOf(t *testing.T, l []fixtures.StoredMail, raw []byte) uint32 {
	t.Helper()
	for _, m := range l {
		if bytes.Equal(m.Raw, raw) {
			return m.UID
		}
	}
	t.Fatalf("mail not found in the inbox")
	return 0
}

func find(l []fixtures.StoredMail, uid uint32) *fixtures.StoredMail {
	for i := range l {
		if l[i].UID == uid {
			return &l[i]
		}
	}
	return nil
}

// TestThreat15SpoofedFrom: a valid package in a mail with spoofed From, Reply-To and Sender
// (THREATS.md row 15, the mailbox layer's part): the package comes through intact, From is
// reported as written, for information only, and the transport sends nothing anywhere. Identity
// is decided by the engine from the sealed sender id.
func TestThreat15SpoofedFrom(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	inject := fixtures.SMTPInjector(r.SMTPAddr(), "forger@evil.example")
	b := newTransport(t, r, bob, nil)
	ctx := context.Background()
	pkg := fixtures.Package(333)
	for _, spoof := range []string{alice, "ceo@bank.example", "Alice <" + alice + ">"} {
		raw, err := mailbox.ComposeMail("forger@evil.example", bob, pkg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		raw = bytes.Replace(raw, []byte("From: forger@evil.example\r\n"),
			[]byte("From: "+spoof+"\r\nReply-To: attacker@evil.example\r\nSender: "+alice+"\r\n"), 1)
		inject(t, bob, raw)
		msgs, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("Receive = %d messages, %v; want 1", len(msgs), err)
		}
		m := msgs[0]
		want := spoof
		if i := strings.IndexByte(spoof, '<'); i >= 0 {
			want = strings.TrimSuffix(spoof[i+1:], ">")
		}
		if m.Err != nil || !bytes.Equal(m.Package, pkg) || m.From != want {
			t.Errorf("spoofed From %q: From %q, package intact %v, err %v; want %q, true, nil", spoof, m.From, bytes.Equal(m.Package, pkg), m.Err, want)
		}
		if err := b.Ack(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Sent != 0 {
		t.Errorf("the receiving transport sent %d mails", st.Sent)
	}
	inspect := fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
	if n := len(inspect(t, alice, "INBOX")); n != 0 {
		t.Errorf("%d mails reached the impersonated user", n)
	}
}

// TestRelayExamineIsReadOnly: a folder opened with EXAMINE cannot be changed on the relay, as on
// Dovecot (RFC 3501 6.3.2): STORE, EXPUNGE and MOVE are refused and a FETCH of BODY[] sets no
// \Seen. A client that writes where it only examined fails here too.
func TestRelayExamineIsReadOnly(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{})
	appendMail(t, r, bob, "INBOX", nil, crlf("From: x@elsewhere.test\nTo: "+bob+"\nSubject: s\n\nhi\n"))
	appendMail(t, r, bob, "Elsewhere", nil) // a folder to move to
	c := relayClient(t, r, bob)
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	one := imap.SeqSetNum(1)
	if _, err := c.Fetch(one, &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatalf("FETCH BODY[] after EXAMINE: %v", err)
	}
	for name, err := range map[string]error{
		"STORE":   c.Store(one, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(),
		"EXPUNGE": c.Expunge().Close(),
		"MOVE":    func() error { _, err := c.Move(one, "Elsewhere").Wait(); return err }(),
	} {
		if ie := (*imap.Error)(nil); !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo {
			t.Errorf("%s after EXAMINE = %v, want NO", name, err)
		}
	}
	inspect := fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
	if l := inspect(t, bob, "INBOX"); len(l) != 1 || len(l[0].Flags) != 0 {
		t.Fatalf("INBOX after the refused changes: %v; want one mail without flags", flagsOf(l))
	}
	// SELECT makes it writable again.
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(one, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatalf("STORE after SELECT: %v", err)
	}
}
