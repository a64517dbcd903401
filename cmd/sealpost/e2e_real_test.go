package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
)

// The CLI on the real Dovecot + Postfix of scripts/mailserver. Skipped unless
// SEALPOST_MAILSERVER_ENV names its env file:
//
//	SEALPOST_MAILSERVER_ENV=/var/tmp/sealpost-mail/mailserver.env go test -count=1 -run Real -v ./cmd/sealpost/

const (
	realAlice = "alice@sealpost.test"
	realBob   = "bob@sealpost.test"
	realCarol = "carol@sealpost.test"
)

// TestRealEndToEndCLI runs the end-to-end scenario of TestEndToEndCLI on the real servers, with
// both TLS modes going through the CLI's --ca-file: alice uses STARTTLS (IMAP on the plain port,
// SMTP submission), bob implicit TLS (IMAPS, SMTPS). Both start from empty inboxes.
func TestRealEndToEndCLI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	ms := fixtures.RealMailServer(t)
	ms.DeleteAndRecreateInbox(t, realAlice)
	ms.DeleteAndRecreateInbox(t, realBob)
	start := time.Now()
	runEndToEndCLI(t, cliScenario{
		env: []string{"PW_ALICE=" + ms.Users[realAlice], "PW_BOB=" + ms.Users[realBob]},
		alice: cliNode{addr: realAlice, init: []string{"--imap", ms.IMAPPlain, "--smtp", ms.SMTPStartTLS,
			"--login", realAlice, "--password-env", "PW_ALICE", "--tls", "starttls", "--ca-file", ms.CAFile}},
		bob: cliNode{addr: realBob, init: []string{"--imap", ms.IMAPS, "--smtp", ms.SMTPS,
			"--login", realBob, "--password-env", "PW_BOB", "--tls", "implicit", "--ca-file", ms.CAFile}},
		// Dovecot allows plaintext login on its plain port (loopback only).
		bobIMAP: ms.IMAPPlain, bobPassword: ms.Users[realBob],
	})
	t.Logf("scenario took %v", time.Since(start).Round(time.Millisecond))
}

// TestRealCLIWrongCA: with a --ca-file that holds a CA that did not sign the servers'
// certificate, `init` refuses to store the settings, and stored anyway (--no-check) they fail on
// the first connection, for IMAP (`agent --once`) and SMTP (`peer add`, which mails the pairing)
// over both TLS modes; each time the message says the certificate could not be verified and
// points at --ca-file. `sealpost init` with the right CA file works.
func TestRealCLIWrongCA(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	ms := fixtures.RealMailServer(t)
	wrongCA := filepath.Join(t.TempDir(), "other-ca.pem")
	if err := os.WriteFile(wrongCA, newCAPEM(t), 0o644); err != nil {
		t.Fatal(err)
	}
	// carol: alice's and bob's mailboxes stay untouched. Nothing logs in with the wrong CA; with
	// the right one `agent --once` reads carol's (emptied) inbox.
	ms.DeleteAndRecreateInbox(t, realCarol)
	env := []string{"PW_CAROL=" + ms.Users[realCarol]}
	for _, mode := range []struct{ name, imap, smtp string }{
		{"starttls", ms.IMAPPlain, ms.SMTPStartTLS},
		{"implicit", ms.IMAPS, ms.SMTPS},
	} {
		t.Run(mode.name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "carol-wrong")
			initWith := func(state, caFile string, more ...string) result {
				t.Helper()
				return sp(t, env, append([]string{"--state", state, "init", "--address", realCarol, "--imap", mode.imap, "--smtp", mode.smtp,
					"--password-env", "PW_CAROL", "--tls", mode.name, "--ca-file", caFile}, more...)...)
			}
			// The message is the user interface here, so this test reads it.
			wantAdvice := func(what string, r result, server string) {
				t.Helper()
				if r.code == 0 {
					t.Fatalf("%s with the wrong CA succeeded:\n%s", what, r.stdout)
				}
				t.Logf("%s with the wrong CA: exit %d: %s", what, r.code, strings.TrimSpace(r.stderr))
				for _, want := range []string{server, "could not be verified", "--ca-file"} {
					if !strings.Contains(r.stderr, want) {
						t.Errorf("%s with the wrong CA: exit %d, stderr %q; want it to mention %q", what, r.code, r.stderr, want)
					}
				}
			}
			// init logs in first (IMAP, then SMTP) and stores nothing that does not work.
			wantAdvice("init", initWith(state, wrongCA), mode.imap)
			if _, err := os.Stat(filepath.Join(state, "state.db")); err == nil {
				t.Fatal("init stored settings it could not log in with")
			}
			// Stored anyway (--no-check), they fail where they are used, with the same advice.
			mustOK(t, initWith(state, wrongCA, "--no-check"), "init --no-check --ca-file "+wrongCA)
			wantAdvice("agent --once", sp(t, env, "--state", state, "agent", "--once"), mode.imap)
			wantAdvice("peer add", sp(t, env, "--state", state, "peer", "add", "alice", "--address", realAlice,
				"--fingerprint", strings.Repeat("0000-", 7)+"0000"), mode.smtp)

			// The same settings with the servers' CA work. (A fresh state: the pairing mail queued
			// above would go out to alice.)
			good := filepath.Join(t.TempDir(), "carol-good")
			mustOK(t, initWith(good, ms.CAFile), "init --ca-file "+ms.CAFile)
			mustOK(t, sp(t, env, "--state", good, "agent", "--once"), "agent --once with the servers' CA")
		})
	}
}

// newCAPEM returns the PEM certificate of a freshly generated CA that signed nothing.
func newCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sealpost wrong test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
