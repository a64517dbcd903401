package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sealpost/sealpost/mailbox"
)

// TestOAuth2TokenCommand: a node whose settings name an OAuth2 token command logs in with the
// token it prints, by XOAUTH2 and by OAUTHBEARER; a refused token is fetched again once (a
// helper that refreshes it on the second call gets in); one refused for good is an auth error
// that counts towards giving up.
func TestOAuth2TokenCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	relay, err := mailbox.StartRelay(ctx, mailbox.RelayConfig{
		Users:  map[string]string{"alice@example.test": "pw-a"},
		Tokens: func(user, token string) bool { return user == "alice@example.test" && token == "fresh-token" },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	dir := t.TempDir()
	// The helper prints a stale token on its first call and the fresh one after, as a token
	// cache whose entry expired does.
	calls := filepath.Join(dir, "calls")
	helper := filepath.Join(dir, "token")
	os.WriteFile(helper, []byte("#!/bin/sh\nif [ -e "+calls+" ]; then echo fresh-token; else touch "+calls+"; echo stale-token; fi\n"), 0o755)
	refused := filepath.Join(dir, "refused")
	os.WriteFile(refused, []byte("#!/bin/sh\necho not-a-token\n"), 0o755)

	for _, mech := range []string{"xoauth2", "oauthbearer"} {
		os.Remove(calls)
		cfg := MailConfig{Address: "alice@example.test", IMAP: relay.IMAPAddr(), SMTP: relay.SMTPAddr(), Login: "alice@example.test",
			TLS: "none", AllowPlaintextAuth: true, OAuth2TokenCommand: helper, OAuth2Mechanism: mech}
		if err := CheckMail(ctx, cfg, nil); err != nil {
			t.Fatalf("%s with a token refreshed after a refusal: %v", mech, err)
		}
		cfg.OAuth2TokenCommand = refused
		err := CheckMail(ctx, cfg, nil)
		if !errors.Is(err, mailbox.ErrAuthFailed) || classify(err) != ProblemLogin {
			t.Fatalf("%s with a refused token = %v (%s); want an auth failure", mech, err, classify(err))
		}
	}
}

// TestPasswordCommand: the password comes from a command run at every login.
func TestPasswordCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	relay, err := mailbox.StartRelay(ctx, mailbox.RelayConfig{Users: map[string]string{"alice@example.test": "pw-a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	cfg := MailConfig{Address: "alice@example.test", IMAP: relay.IMAPAddr(), SMTP: relay.SMTPAddr(), Login: "alice@example.test",
		TLS: "none", AllowPlaintextAuth: true, PasswordCommand: "echo pw-a"}
	if err := CheckMail(ctx, cfg, nil); err != nil {
		t.Fatalf("password from a command: %v", err)
	}
	cfg.PasswordCommand = "echo no >&2; exit 3"
	if err := CheckMail(ctx, cfg, nil); !errors.Is(err, mailbox.ErrNoSecret) {
		t.Fatalf("a failing password command = %v; want mailbox.ErrNoSecret", err)
	}
	cfg.PasswordCommand, cfg.PasswordFile = "", filepath.Join(t.TempDir(), "missing")
	if err := CheckMail(ctx, cfg, nil); !errors.Is(err, ErrSecretUnavailable) {
		t.Fatalf("a missing password file = %v; want ErrSecretUnavailable", err)
	}
}
