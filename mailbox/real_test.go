package mailbox_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// The tests here run against a real Dovecot + Postfix on loopback, started by
// `scripts/mailserver start`; they are skipped unless SEALPOST_MAILSERVER_ENV names its env file
// (and fail without it in CI). Run them with
//
//	scripts/mailserver install && scripts/mailserver start
//	SEALPOST_MAILSERVER_ENV=/var/tmp/sealpost-mail/mailserver.env go test -count=1 -run Real ./mailbox/
//	scripts/mailserver stop

// realMode is one way of reaching the servers: which ports, and how they are protected.
type realMode struct {
	name       string
	tls        mailbox.TLSMode
	imap, smtp string
}

func realModes(ms *fixtures.MailServer) []realMode {
	return []realMode{
		{"STARTTLS", mailbox.TLSStartTLS, ms.IMAPPlain, ms.SMTPStartTLS},
		{"ImplicitTLS", mailbox.TLSImplicit, ms.IMAPS, ms.SMTPS},
		{"PlainLoopback", mailbox.TLSNone, ms.IMAPPlain, ms.SMTPPlain},
	}
}

// realTransport returns a transport for user over mode, trusting the servers' CA.
func realTransport(t testing.TB, ms *fixtures.MailServer, mode realMode, user string, edit func(*mailbox.Config)) *mailbox.IMAPSMTP {
	t.Helper()
	cfg := mailbox.Config{
		Address: user, IMAPAddr: mode.imap, SMTPAddr: mode.smtp,
		Username: user, Password: ms.Users[user],
		TLS:             mode.tls,
		MaxMessageBytes: contractCap, CommandTimeout: 10 * time.Second,
	}
	if mode.tls == mailbox.TLSNone {
		cfg.AllowPlaintextAuth = true
	} else {
		cfg.CAFile = ms.CAFile
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

// realDelimiter asks Dovecot for its hierarchy delimiter (LIST "" "").
func realDelimiter(t testing.TB, ms *fixtures.MailServer, user string) string {
	t.Helper()
	c, err := imapclient.DialInsecure(ms.IMAPPlain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, ms.Users[user]).Wait(); err != nil {
		t.Fatal(err)
	}
	l, err := c.List("", "", nil).Collect()
	if err != nil || len(l) != 1 || l[0].Delim == 0 {
		t.Fatalf("LIST \"\" \"\" = %v, %v; want the delimiter", l, err)
	}
	return string(l[0].Delim)
}

// TestContractRealServers runs the shared Transport contract against Dovecot + Postfix, once per
// TLS mode: STARTTLS on both, implicit TLS on both, and no TLS (loopback, explicit consent).
// Mail is injected as an MX would hand it over: unauthenticated SMTP to Postfix's plain port,
// waiting until Postfix has delivered it to Dovecot over LMTP.
func TestContractRealServers(t *testing.T) {
	ms := fixtures.RealMailServer(t)
	users := ms.Addresses()
	from, to := users[0], users[1]
	delim := realDelimiter(t, ms, to)
	for _, mode := range realModes(ms) {
		t.Run(mode.name, func(t *testing.T) {
			// The contract's foreign mail stays in the inbox (that is the point) and has fixed
			// Message-IDs: start from an empty inbox so that each is found exactly once.
			ms.DeleteAndRecreateInbox(t, to)
			fixtures.RunTransportContract(t, fixtures.ContractEnv{
				New: func(t *testing.T, user string) mailbox.Transport {
					return realTransport(t, ms, mode, user, nil)
				},
				Users:             []string{from, to},
				Inject:            ms.Injector("mx@elsewhere.test"),
				Inspect:           fixtures.IMAPInspector(ms.IMAPPlain, ms.Users, nil),
				ProcessedFolder:   "sealpost" + delim + "processed",
				RejectedFolder:    "sealpost" + delim + "rejected",
				MaxMessageBytes:   contractCap,
				WakeBound:         3 * time.Second, // Dovecot delays IDLE notifications by about 0.5 s
				UnorderedDelivery: true,            // Postfix's queue may reorder separate submissions
			})
		})
	}
}

// TestRealTLSFailures: a certificate from an unknown CA and one for another name fail with the
// errors that tell the user what to do, for IMAP and SMTP, over both TLS modes; a Send failure of
// this kind is temporary (a configuration problem must not make the outbox drop the mail).
func TestRealTLSFailures(t *testing.T) {
	ms := fixtures.RealMailServer(t)
	users := ms.Addresses()
	other := newTestCA(t) // a CA that signed nothing the servers present
	for _, mode := range realModes(ms)[:2] {
		for _, tc := range []struct {
			name string
			edit func(*mailbox.Config)
			want error
		}{
			{"unknown CA", func(c *mailbox.Config) { c.CAFile, c.RootCAs = "", other.pool }, mailbox.ErrCertificateUntrusted},
			{"system roots only", func(c *mailbox.Config) { c.CAFile = "" }, mailbox.ErrCertificateUntrusted},
			{"wrong name", func(c *mailbox.Config) { c.ServerName = "mail.wrong.test" }, mailbox.ErrCertificateName},
		} {
			t.Run(mode.name+"/"+tc.name, func(t *testing.T) {
				tr := realTransport(t, ms, mode, users[1], func(c *mailbox.Config) {
					tc.edit(c)
					c.CommandTimeout = 3 * time.Second
				})
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, _, err := tr.Receive(ctx, mailbox.Cursor{}, 0, 0); !errors.Is(err, tc.want) {
					t.Errorf("Receive = %v, want %v", err, tc.want)
				}
				err := tr.Send(ctx, users[0], fixtures.Package(10))
				var se *mailbox.SendError
				if !errors.As(err, &se) || !errors.Is(err, tc.want) {
					t.Errorf("Send = %v, want a SendError wrapping %v", err, tc.want)
				} else if !se.Temporary {
					t.Errorf("Send = %v: want a temporary error", err)
				}
			})
		}
	}
}

// TestRealLatency measures, and bounds loosely, what the contract's WakeBound stands for on the
// real servers: how long Postfix takes to hand a mail to Dovecot, how long a Receive waiting in
// IDLE takes to see a mail APPENDed by another client, and how long one poll takes.
func TestRealLatency(t *testing.T) {
	ms := fixtures.RealMailServer(t)
	users := ms.Addresses()
	from, to := users[0], users[1]
	mode := realModes(ms)[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	appendMail := fixtures.IMAPAppendInjector(ms.IMAPPlain, ms.Users, nil)
	const rounds = 5

	var smtpLat []time.Duration
	for range rounds {
		raw, err := mailbox.ComposeMail(from, to, fixtures.Package(100), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		id := ms.SubmitRaw(t, "mx@elsewhere.test", to, raw)
		ms.WaitDelivered(t, id, to)
		smtpLat = append(smtpLat, time.Since(start))
	}

	b := realTransport(t, ms, mode, to, nil)
	drain := func() mailbox.Cursor {
		for {
			msgs, cur, err := b.Receive(ctx, mailbox.Cursor{}, 0, 100)
			if err != nil {
				t.Fatalf("Receive: %v", err)
			}
			if len(msgs) == 0 {
				return cur
			}
			for _, m := range msgs {
				if err := b.Reject(ctx, m, "latency test"); err != nil {
					t.Fatalf("Reject: %v", err)
				}
			}
		}
	}
	var idleLat, pollLat []time.Duration
	for range rounds {
		cur := drain()
		pkg := fixtures.Package(100)
		raw, err := mailbox.ComposeMail(from, to, pkg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			msgs []mailbox.Message
			err  error
			at   time.Time
		}
		done := make(chan result, 1)
		go func() {
			msgs, _, err := b.Receive(ctx, cur, time.Hour, 0)
			done <- result{msgs, err, time.Now()}
		}()
		time.Sleep(300 * time.Millisecond) // let it settle into IDLE
		appendMail(t, to, raw)
		appended := time.Now()
		r := <-done
		if r.err != nil || len(r.msgs) != 1 || !bytes.Equal(r.msgs[0].Package, pkg) {
			t.Fatalf("Receive(wait) = %d messages, %v; want the one appended", len(r.msgs), r.err)
		}
		idleLat = append(idleLat, r.at.Sub(appended))

		cur = drain()
		appendMail(t, to, raw)
		start := time.Now()
		msgs, _, err := b.Receive(ctx, cur, 0, 0)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("Receive(no wait) right after another session's APPEND = %d messages, %v; want the new mail", len(msgs), err)
		}
		pollLat = append(pollLat, time.Since(start))
	}
	drain()
	summary := func(d []time.Duration) string {
		s := slices.Clone(d)
		slices.Sort(s)
		return "min " + s[0].Round(time.Millisecond/10).String() + ", median " + s[len(s)/2].Round(time.Millisecond/10).String() +
			", max " + s[len(s)-1].Round(time.Millisecond/10).String()
	}
	t.Logf("Postfix SMTP accept to Dovecot INBOX: %s", summary(smtpLat))
	t.Logf("IDLE push after an APPEND by another session: %s", summary(idleLat))
	t.Logf("Receive(no wait) finding one new sealpost mail: %s", summary(pollLat))
	if slices.Max(idleLat) > 3*time.Second {
		t.Errorf("IDLE push took up to %s; the contract's WakeBound for the real servers is 3s", slices.Max(idleLat))
	}
}
