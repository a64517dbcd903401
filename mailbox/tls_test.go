package mailbox_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// testCA is an in-memory CA and a server certificate for 127.0.0.1, ::1 and localhost.
type testCA struct {
	pool   *x509.CertPool
	pem    []byte
	server *tls.Config
}

func newTestCA(t testing.TB) *testCA {
	t.Helper()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey, leafKey := key(), key()
	now := time.Now()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sealpost test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &testCA{
		pool: pool,
		pem:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		server: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}},
			MinVersion:   tls.VersionTLS12,
		},
	}
}

// tlsTransport is a transport for user on a TLS relay.
func tlsTransport(t *testing.T, r *mailbox.Relay, user string, mode mailbox.TLSMode, edit func(*mailbox.Config)) *mailbox.IMAPSMTP {
	return newTransport(t, r, user, func(c *mailbox.Config) {
		c.TLS, c.AllowPlaintextAuth = mode, false
		if edit != nil {
			edit(c)
		}
	})
}

func TestTLSRoundTrip(t *testing.T) {
	ca := newTestCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []mailbox.TLSMode{mailbox.TLSImplicit, mailbox.TLSStartTLS} {
		// The relay refuses authentication without TLS when TLS is configured, so success
		// shows that both IMAP and SMTP ran encrypted.
		r := startRelay(t, mailbox.RelayConfig{TLS: ca.server, ImplicitTLS: mode == mailbox.TLSImplicit})
		for name, edit := range map[string]func(*mailbox.Config){
			"RootCAs": func(c *mailbox.Config) { c.RootCAs = ca.pool },
			"CAFile":  func(c *mailbox.Config) { c.CAFile = caFile },
		} {
			t.Run(string(mode)+"/"+name, func(t *testing.T) {
				a := tlsTransport(t, r, alice, mode, edit)
				b := tlsTransport(t, r, bob, mode, edit)
				ctx := context.Background()
				pkg := fixtures.Package(500)
				if err := a.Send(ctx, bob, pkg); err != nil {
					t.Fatalf("Send over %s: %v", mode, err)
				}
				msgs, _, err := b.Receive(ctx, mailbox.Cursor{}, 0, 0)
				if err != nil || len(msgs) != 1 || !bytes.Equal(msgs[0].Package, pkg) {
					t.Fatalf("Receive over %s = %d messages, %v; want the package", mode, len(msgs), err)
				}
				if err := b.Ack(ctx, msgs[0]); err != nil {
					t.Fatalf("Ack: %v", err)
				}
			})
		}
	}
}

func TestTLSFailuresSayWhatToDo(t *testing.T) {
	ca, other := newTestCA(t), newTestCA(t)
	for _, mode := range []mailbox.TLSMode{mailbox.TLSImplicit, mailbox.TLSStartTLS} {
		r := startRelay(t, mailbox.RelayConfig{TLS: ca.server, ImplicitTLS: mode == mailbox.TLSImplicit})
		for _, tc := range []struct {
			name string
			edit func(*mailbox.Config)
			want error
			hint string // what the message must tell the user
		}{
			{"unknown CA", func(c *mailbox.Config) { c.RootCAs = other.pool }, mailbox.ErrCertificateUntrusted, "--ca-file"},
			{"wrong name", func(c *mailbox.Config) { c.RootCAs = ca.pool; c.ServerName = "mail.wrong.test" }, mailbox.ErrCertificateName, "name"},
		} {
			t.Run(string(mode)+"/"+tc.name, func(t *testing.T) {
				tr := tlsTransport(t, r, bob, mode, func(c *mailbox.Config) { tc.edit(c); c.CommandTimeout = 2 * time.Second })
				ctx := context.Background()
				_, _, err := tr.Receive(ctx, mailbox.Cursor{}, 0, 0)
				// The message is the user interface here, so this test does read it.
				if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.hint) {
					t.Errorf("Receive = %v, want %v mentioning %q", err, tc.want, tc.hint)
				}
				err = tr.Send(ctx, alice, fixtures.Package(10))
				var se *mailbox.SendError
				if !errors.As(err, &se) || !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.hint) {
					t.Errorf("Send = %v, want a SendError wrapping %v mentioning %q", err, tc.want, tc.hint)
				} else if !se.Temporary {
					t.Errorf("Send = %v: a configuration problem must not be permanent (the outbox would drop the mail)", err)
				}
			})
		}
	}
}

func TestPlaintextCredentialsRefused(t *testing.T) {
	base := mailbox.Config{Address: bob, Username: bob, Password: "pw", TLS: mailbox.TLSNone}
	for _, tc := range []struct {
		name       string
		imap, smtp string
		allow      bool
		ok         bool
	}{
		{"non-loopback", "192.0.2.10:143", "192.0.2.10:25", false, false},
		{"non-loopback with consent", "192.0.2.10:143", "192.0.2.10:25", true, false},
		{"one server non-loopback", "127.0.0.1:143", "mail.example.org:25", true, false},
		{"loopback without consent", "127.0.0.1:143", "127.0.0.1:25", false, false},
		{"loopback with consent", "127.0.0.1:143", "[::1]:25", true, true},
		{"localhost with consent", "localhost:143", "localhost:25", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.IMAPAddr, cfg.SMTPAddr, cfg.AllowPlaintextAuth = tc.imap, tc.smtp, tc.allow
			tr, err := mailbox.New(cfg)
			if tc.ok {
				if err != nil {
					t.Fatalf("New = %v, want success", err)
				}
				tr.Close()
				return
			}
			if !errors.Is(err, mailbox.ErrPlaintextCredentials) || !errors.Is(err, mailbox.ErrConfig) {
				t.Fatalf("New = %v, want ErrConfig and ErrPlaintextCredentials", err)
			}
			if tr != nil {
				t.Fatalf("New returned a transport with the error")
			}
		})
	}
	// No credentials, no TLS: a loopback test server that needs no login is fine.
	if _, err := mailbox.New(mailbox.Config{Address: bob, IMAPAddr: "192.0.2.10:143", SMTPAddr: "192.0.2.10:25", TLS: mailbox.TLSNone}); err != nil {
		t.Errorf("New without credentials = %v", err)
	}
}
