package mailbox

import (
	"crypto/subtle"
	"encoding/json"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"
)

// How the relay's users log in, on both servers: SASL PLAIN with their password, and, when
// RelayConfig.Tokens is set, SASL XOAUTH2 and OAUTHBEARER with an access token that Tokens
// accepts for them. (IMAP LOGIN with the password works too.) A refused token gets the error
// challenge both mechanisms define, {"status":"invalid_token",...}, and after the client's
// answer to it a refusal: IMAP NO, SMTP 535.

// mechanisms are the SASL mechanisms the relay offers.
func (r *Relay) mechanisms() []string {
	if r.tokens == nil {
		return []string{sasl.Plain}
	}
	return []string{sasl.Plain, xoauth2, sasl.OAuthBearer}
}

// saslServer returns the server side of mech; ok runs with the user's name (as Users spells
// it) when the login succeeds. refused and unknown are the protocol's errors for a failed
// login and an unknown mechanism.
func (r *Relay) saslServer(mech string, refused, unknown error, ok func(name string)) (sasl.Server, error) {
	switch {
	case mech == sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return refused
			}
			_, name := r.user(username)
			if name == "" || subtle.ConstantTimeCompare([]byte(password), []byte(r.users[name])) != 1 {
				return refused
			}
			ok(name)
			return nil
		}), nil
	case r.tokens != nil && mech == xoauth2:
		return &tokenServer{refused: refused, check: func(ir []byte) bool {
			user, token, err := parseXOAUTH2(ir)
			return err == nil && r.token(user, token, ok)
		}}, nil
	case r.tokens != nil && mech == sasl.OAuthBearer:
		var good bool
		inner := sasl.NewOAuthBearerServer(func(o sasl.OAuthBearerOptions) *sasl.OAuthBearerError {
			if good = r.token(o.Username, o.Token, ok); !good {
				return &sasl.OAuthBearerError{Status: "invalid_token", Schemes: "bearer"}
			}
			return nil
		})
		return &tokenServer{refused: refused, check: func(ir []byte) bool {
			// go-sasl's server parses the response (and sends its own challenge for a
			// malformed one); what it answers is replaced by ours below.
			_, done, err := inner.Next(ir)
			return err == nil && done && good
		}}, nil
	}
	return nil, unknown
}

// token checks a user's access token with RelayConfig.Tokens.
func (r *Relay) token(user, token string, ok func(name string)) bool {
	_, name := r.user(user)
	if name == "" || token == "" || !r.tokens(name, token) {
		return false
	}
	ok(name)
	return true
}

// tokenServer is the exchange both OAuth2 mechanisms share: an initial response (asked for
// with an empty challenge when the client sent none), then success, or an error challenge,
// the client's answer to it (anything: XOAUTH2 clients send an empty one, OAUTHBEARER "\x01";
// go-sasl's own server would panic on an empty one) and the refusal.
type tokenServer struct {
	refused error
	check   func(initial []byte) bool
	step    int
}

// tokenRefusal is the error challenge for a refused token (RFC 7628 3.2.2; Google's XOAUTH2
// sends the same shape).
var tokenRefusal, _ = json.Marshal(oauthError{Status: "invalid_token", Schemes: "bearer", Scope: "mail"})

func (s *tokenServer) Next(resp []byte) ([]byte, bool, error) {
	s.step++
	switch {
	case s.step == 1 && resp == nil:
		s.step = 0
		return []byte{}, false, nil
	case s.step == 1:
		if s.check(resp) {
			return nil, true, nil
		}
		return tokenRefusal, false, nil
	default:
		return nil, true, s.refused
	}
}

var _ imapserver.SessionSASL = (*relayIMAPSession)(nil)

func (s *relayIMAPSession) AuthenticateMechanisms() []string { return s.r.mechanisms() }

func (s *relayIMAPSession) Authenticate(mech string) (sasl.Server, error) {
	return s.r.saslServer(mech, imapserver.ErrAuthFailed,
		&imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"},
		func(name string) { s.memSession = newMemSession(s.r.mem[strings.ToLower(name)]) })
}
