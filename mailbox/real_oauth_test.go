package mailbox_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// TestRealOAuth2: XOAUTH2 and OAUTHBEARER against Dovecot (IMAP) and Postfix (SMTP AUTH, which
// asks Dovecot), over STARTTLS and implicit TLS: the token logs in and a mail goes through; a
// refused token is followed by a fresh one in the same login; a token refused every time is an
// *AuthError. scripts/mailserver gives one user a token that Dovecot checks locally.
func TestRealOAuth2(t *testing.T) {
	ms := fixtures.RealMailServer(t)
	if ms.OAuth2User == "" || ms.OAuth2Token == "" {
		t.Skip("the mail servers' env file names no OAuth2 user: start them again with this scripts/mailserver")
	}
	user, good := ms.OAuth2User, ms.OAuth2Token
	var to string
	for _, a := range ms.Addresses() {
		if a != user {
			to = a
			break
		}
	}
	for _, mode := range realModes(ms)[:2] {
		for _, mech := range oauthMechs {
			t.Run(mode.name+"/"+string(mech), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				oauth := func(src mailbox.SecretSource) func(*mailbox.Config) {
					return func(c *mailbox.Config) { c.Password, c.Secret, c.Auth = "", src, mech }
				}
				// Stale first on both servers, then the good token.
				q := &tokenQueue{tokens: []string{"sp.stale", good, "sp.stale", good}}
				tr := realTransport(t, ms, mode, user, oauth(q.source))
				if err := tr.Verify(ctx); err != nil {
					t.Fatalf("Verify with a stale, then a fresh token: %v", err)
				}
				if q.count() != 4 {
					t.Errorf("token helper asked %d times; want 4 (a stale and a fresh token for IMAP and for SMTP)", q.count())
				}
				if err := tr.Send(ctx, to, fixtures.Package(50)); err != nil {
					t.Fatalf("Send: %v", err)
				}

				bad := &tokenQueue{tokens: []string{"sp.revoked"}}
				tr = realTransport(t, ms, mode, user, oauth(bad.source))
				_, _, err := tr.Receive(ctx, mailbox.Cursor{}, 0, 0)
				var ae *mailbox.AuthError
				var ie *imap.Error
				if !errors.As(err, &ae) || ae.Tries != 2 {
					t.Errorf("Receive with a refused token = %v; want an *AuthError after 2 tries", err)
				} else if !errors.As(ae.Err, &ie) || ie.Type != imap.StatusResponseTypeNo || ae.Detail == "" {
					// Dovecot answers NO to the refusal, BAD to a malformed answer to the error
					// challenge (go-imap's "=" for an empty one).
					t.Errorf("Receive with a refused token = %v; want Dovecot's NO after the error challenge", err)
				}
				err = tr.Send(ctx, to, fixtures.Package(50))
				if !errors.As(err, &ae) || ae.Tries != 2 {
					t.Errorf("Send with a refused token = %v; want an *AuthError after 2 tries", err)
				}
				if bad.count() != 4 {
					t.Errorf("token helper asked %d times; want 4", bad.count())
				}
			})
		}
	}
}
