package mailbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// tokenAuthority is the relay's token check for the tests: which access tokens log in whom,
// and which tokens it was shown.
type tokenAuthority struct {
	mu    sync.Mutex
	valid map[string]string // token -> user
	seen  []string
}

func newTokenAuthority(valid map[string]string) *tokenAuthority {
	return &tokenAuthority{valid: valid}
}

func (a *tokenAuthority) check(user, token string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, token)
	return a.valid[token] == user
}

func (a *tokenAuthority) shown() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.seen)
}

// tokenQueue is a token helper: it hands out the tokens given, one per call, repeating the
// last, and counts the calls.
type tokenQueue struct {
	mu     sync.Mutex
	tokens []string
	calls  int
}

func (q *tokenQueue) source(context.Context) (string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.calls++
	return q.tokens[min(q.calls, len(q.tokens))-1], nil
}

func (q *tokenQueue) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.calls
}

var oauthMechs = []mailbox.AuthMechanism{mailbox.AuthXOAUTH2, mailbox.AuthOAuthBearer}

// oauthTransport is a transport for user on r that logs in with mech and tokens from src.
func oauthTransport(t *testing.T, r *mailbox.Relay, user string, mech mailbox.AuthMechanism, src mailbox.SecretSource) *mailbox.IMAPSMTP {
	return newTransport(t, r, user, func(c *mailbox.Config) {
		c.Password, c.Secret, c.Auth = "", src, mech
	})
}

// TestOAuthTokenLogin: with XOAUTH2 and OAUTHBEARER the token helper is asked at each login
// (IMAP and SMTP), the token logs in to both servers, and mail goes through.
func TestOAuthTokenLogin(t *testing.T) {
	for _, mech := range oauthMechs {
		t.Run(string(mech), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			auth := newTokenAuthority(map[string]string{"ya29.alice-Token_1~x+y/z=": alice, "bob.tok": bob})
			r := startRelay(t, mailbox.RelayConfig{Tokens: auth.check})
			q := &tokenQueue{tokens: []string{"ya29.alice-Token_1~x+y/z="}}
			tr := oauthTransport(t, r, alice, mech, q.source)
			if err := tr.Verify(ctx); err != nil {
				t.Fatalf("Verify with %s: %v", mech, err)
			}
			if q.count() != 2 {
				t.Errorf("token helper asked %d times; want 2 (one IMAP, one SMTP login)", q.count())
			}
			bobTr := oauthTransport(t, r, bob, mech, mailbox.StaticSecret("bob.tok"))
			pkg := fixtures.Package(100)
			if err := tr.Send(ctx, bob, pkg); err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs, _, err := bobTr.Receive(ctx, mailbox.Cursor{}, 5*time.Second, 0)
			if err != nil || len(msgs) != 1 || string(msgs[0].Package) != string(pkg) {
				t.Fatalf("Receive = %d messages, %v; want the package", len(msgs), err)
			}
		})
	}
}

// TestOAuthRefreshedToken: a token the server refuses (expired since the helper cached it)
// makes the transport ask the helper again within the same login, and the fresh token logs
// in; the refused one is not offered again.
func TestOAuthRefreshedToken(t *testing.T) {
	for _, mech := range oauthMechs {
		t.Run(string(mech), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			auth := newTokenAuthority(map[string]string{"fresh1": alice, "fresh2": alice})
			r := startRelay(t, mailbox.RelayConfig{Tokens: auth.check})
			// IMAP gets stale then fresh1; SMTP stale again, then fresh2.
			q := &tokenQueue{tokens: []string{"stale", "fresh1", "stale", "fresh2"}}
			tr := oauthTransport(t, r, alice, mech, q.source)
			if err := tr.Verify(ctx); err != nil {
				t.Fatalf("Verify with a stale token first: %v", err)
			}
			if want := []string{"stale", "fresh1", "stale", "fresh2"}; !slices.Equal(auth.shown(), want) {
				t.Errorf("the server was shown %q; want %q", auth.shown(), want)
			}
			if err := tr.Send(ctx, bob, fixtures.Package(10)); err != nil {
				t.Fatalf("Send after the refresh: %v", err)
			}
		})
	}
}

// TestOAuthTokenRefused: a helper whose tokens the server always refuses gives an *AuthError
// (ErrAuthFailed) from every call, after exactly one retry with a fresh token per login.
func TestOAuthTokenRefused(t *testing.T) {
	for _, mech := range oauthMechs {
		t.Run(string(mech), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			auth := newTokenAuthority(map[string]string{"good": alice})
			r := startRelay(t, mailbox.RelayConfig{Tokens: auth.check})
			q := &tokenQueue{tokens: []string{"revoked"}}
			tr := oauthTransport(t, r, alice, mech, q.source)
			_, _, err := tr.Receive(ctx, mailbox.Cursor{}, 0, 0)
			checkAuthError(t, "Receive", err, mech, 2)
			if q.count() != 2 {
				t.Errorf("token helper asked %d times for one IMAP login; want 2", q.count())
			}
			err = tr.Send(ctx, bob, fixtures.Package(10))
			checkAuthError(t, "Send", err, mech, 2)
			var se *mailbox.SendError
			if !errors.As(err, &se) || !se.Temporary {
				t.Errorf("Send = %v; want a temporary *SendError (the mail is not at fault)", err)
			}
			if q.count() != 4 {
				t.Errorf("token helper asked %d times for an IMAP and an SMTP login; want 4", q.count())
			}
			checkAuthError(t, "Verify", tr.Verify(ctx), mech, 2)
		})
	}
}

func checkAuthError(t *testing.T, call string, err error, mech mailbox.AuthMechanism, tries int) {
	t.Helper()
	var ae *mailbox.AuthError
	if !errors.As(err, &ae) || !errors.Is(err, mailbox.ErrAuthFailed) {
		t.Fatalf("%s = %v; want an *AuthError (ErrAuthFailed)", call, err)
	}
	if ae.Tries != tries || !mechNamed(ae.Mechanism, mech) || ae.User != alice || ae.Detail == "" {
		t.Errorf("%s: AuthError %+v; want %d tries of %s as %s with the challenge's detail", call, ae, tries, mech, alice)
	}
	if errors.Is(err, mailbox.ErrNoSecret) || errors.Is(err, mailbox.ErrMechanismUnavailable) {
		t.Errorf("%s = %v: a refused token is neither a failed secret source nor a missing mechanism", call, err)
	}
}

func mechNamed(name string, mech mailbox.AuthMechanism) bool {
	return map[mailbox.AuthMechanism]string{mailbox.AuthXOAUTH2: "XOAUTH2", mailbox.AuthOAuthBearer: "OAUTHBEARER"}[mech] == name
}

// TestOAuthNotOffered: a server that does not offer the mechanism gives an *AuthError with
// ErrMechanismUnavailable, and the helper is not asked.
func TestOAuthNotOffered(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := startRelay(t, mailbox.RelayConfig{}) // no Tokens: PLAIN only
	for _, mech := range oauthMechs {
		q := &tokenQueue{tokens: []string{"tok"}}
		tr := oauthTransport(t, r, alice, mech, q.source)
		err := tr.Verify(ctx)
		if !errors.Is(err, mailbox.ErrMechanismUnavailable) || !errors.Is(err, mailbox.ErrAuthFailed) {
			t.Errorf("Verify with %s against a PLAIN-only server = %v; want ErrMechanismUnavailable in an *AuthError", mech, err)
		}
		if q.count() != 0 {
			t.Errorf("%s: token helper asked %d times; want 0", mech, q.count())
		}
	}
}

// TestSecretSourceFails: a failing helper, an empty answer or a token that is not a bearer
// token give a *SecretError (ErrNoSecret), not an authentication failure, from IMAP and SMTP.
func TestSecretSourceFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	auth := newTokenAuthority(map[string]string{"good": alice})
	r := startRelay(t, mailbox.RelayConfig{Tokens: auth.check})
	broken := errors.New("helper broke")
	for _, tc := range []struct {
		name string
		mech mailbox.AuthMechanism
		src  mailbox.SecretSource
		want error
	}{
		{"helper error", mailbox.AuthXOAUTH2, func(context.Context) (string, error) { return "", broken }, broken},
		{"empty token", mailbox.AuthOAuthBearer, mailbox.StaticSecret(""), nil},
		{"not a bearer token", mailbox.AuthXOAUTH2, mailbox.StaticSecret("two words"), nil},
		{"JSON, not a token", mailbox.AuthOAuthBearer, mailbox.StaticSecret(`{"access_token":"x"}`), nil},
		{"failing password command", mailbox.AuthPassword, mailbox.CommandSecret("exit 1", 0), nil},
	} {
		tr := oauthTransport(t, r, alice, tc.mech, tc.src)
		_, _, rerr := tr.Receive(ctx, mailbox.Cursor{}, 0, 0)
		serr := tr.Send(ctx, bob, fixtures.Package(10))
		for call, err := range map[string]error{"Receive": rerr, "Send": serr} {
			var se *mailbox.SecretError
			if !errors.As(err, &se) || !errors.Is(err, mailbox.ErrNoSecret) || errors.Is(err, mailbox.ErrAuthFailed) {
				t.Errorf("%s: %s = %v; want a *SecretError (ErrNoSecret)", tc.name, call, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("%s: %s = %v; want it to wrap the helper's error", tc.name, call, err)
			}
		}
	}
	if got := auth.shown(); len(got) != 0 {
		t.Errorf("the server was shown tokens %q; want none", got)
	}
}

// TestPasswordSources: a password from a command or a file logs in with PLAIN, asked at every
// login; a wrong one is an *AuthError after one try (no retry for passwords).
func TestPasswordSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := startRelay(t, mailbox.RelayConfig{})
	file := t.TempDir() + "/pw"
	writeFile(t, file, relayUsers[alice]+"\nsecond line ignored\n")
	for name, src := range map[string]mailbox.SecretSource{
		"command": mailbox.CommandSecret(fmt.Sprintf("printf '%%s\\n' %s", relayUsers[alice]), 0),
		"file":    mailbox.FileSecret(file),
	} {
		tr := newTransport(t, r, alice, func(c *mailbox.Config) { c.Password, c.Secret = "", src })
		if err := tr.Verify(ctx); err != nil {
			t.Errorf("Verify with a password from a %s: %v", name, err)
		}
	}
	n := 0
	wrong := func(context.Context) (string, error) { n++; return "wrong", nil }
	tr := newTransport(t, r, alice, func(c *mailbox.Config) { c.Password, c.Secret = "", wrong })
	var ae *mailbox.AuthError
	if err := tr.Verify(ctx); !errors.As(err, &ae) || ae.Tries != 1 || ae.Mechanism != "PLAIN" {
		t.Errorf("Verify with a wrong password = %v; want an *AuthError of one PLAIN try", err)
	}
	if n != 1 {
		t.Errorf("password source asked %d times; want 1 (no retry for passwords)", n)
	}
}

// TestAuthConfig: the combinations New refuses.
func TestAuthConfig(t *testing.T) {
	base := mailbox.Config{Address: alice, IMAPAddr: "127.0.0.1:1", SMTPAddr: "127.0.0.1:2", TLS: mailbox.TLSImplicit}
	for name, edit := range map[string]func(*mailbox.Config){
		"password and source":    func(c *mailbox.Config) { c.Password, c.Secret = "pw", mailbox.StaticSecret("pw") },
		"OAuth2 without a token": func(c *mailbox.Config) { c.Auth = mailbox.AuthXOAUTH2; c.Username = alice },
		"unknown mechanism":      func(c *mailbox.Config) { c.Auth = "cram-md5"; c.Password = "pw" },
		"plaintext token, remote": func(c *mailbox.Config) {
			c.TLS, c.IMAPAddr, c.Secret = mailbox.TLSNone, "192.0.2.1:143", mailbox.StaticSecret("t")
		},
	} {
		cfg := base
		edit(&cfg)
		if _, err := mailbox.New(cfg); !errors.Is(err, mailbox.ErrConfig) {
			t.Errorf("New with %s = %v; want ErrConfig", name, err)
		}
	}
}

// TestContractRelayOAuth2 runs the shared Transport contract with every login over XOAUTH2,
// then OAUTHBEARER, tokens from a command: the contract has no login case of its own, but its
// transports reconnect and log in many times, each with a token asked afresh.
func TestContractRelayOAuth2(t *testing.T) {
	tokens := map[string]string{}
	for _, u := range []string{alice, bob} {
		tokens["tok."+u[:3]] = u
	}
	for _, mech := range oauthMechs {
		t.Run(string(mech), func(t *testing.T) {
			// A relay each: the contract's foreign mail stays in the inbox.
			r := startRelay(t, mailbox.RelayConfig{Tokens: newTokenAuthority(tokens).check})
			env := relayEnv(t, r, nil)
			env.New = func(t *testing.T, user string) mailbox.Transport {
				return oauthTransport(t, r, user, mech, mailbox.CommandSecret("echo tok."+user[:3], 0))
			}
			fixtures.RunTransportContract(t, env)
		})
	}
}
