package mailbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// AuthMechanism says how the transport logs in to both servers.
type AuthMechanism string

const (
	// AuthPassword logs in with a password: SASL PLAIN where the server offers it, else IMAP
	// LOGIN or SMTP AUTH LOGIN. The default.
	AuthPassword AuthMechanism = "password"
	// AuthXOAUTH2 logs in with an OAuth2 access token over SASL XOAUTH2, the mechanism Gmail and
	// Microsoft 365 document (https://developers.google.com/gmail/imap/xoauth2-protocol).
	AuthXOAUTH2 AuthMechanism = "xoauth2"
	// AuthOAuthBearer logs in with an OAuth2 access token over SASL OAUTHBEARER (RFC 7628).
	AuthOAuthBearer AuthMechanism = "oauthbearer"
)

// oauth reports whether the mechanism takes an OAuth2 access token.
func (m AuthMechanism) oauth() bool { return m == AuthXOAUTH2 || m == AuthOAuthBearer }

// A SecretSource yields the password, or with an OAuth2 AuthMechanism the access token. The
// transport asks it at every login (every IMAP and every SMTP connection it opens) and keeps no
// answer past that login, so a rotated password or a refreshed token is used from the next
// connection on, and a token the server refused is never offered again. With an OAuth2
// mechanism a refused token makes the transport ask once more within the same login (the token
// may have expired since the helper cached it) before it gives up with an *AuthError.
//
// It must return promptly or honour ctx. An error it returns reaches the caller wrapped in a
// *SecretError (errors.Is(err, ErrNoSecret)) unless it is one already or ctx has ended; an
// empty secret is such an error too. See StaticSecret, FileSecret and CommandSecret.
type SecretSource func(ctx context.Context) (string, error)

// StaticSecret is a SecretSource that always returns s.
func StaticSecret(s string) SecretSource {
	return func(context.Context) (string, error) { return s, nil }
}

var (
	// ErrAuthFailed means a server refused the login: the credentials, the token or the
	// mechanism. Trying again with the same ones will not help (unlike a network failure). Every
	// error that wraps it is an *AuthError.
	ErrAuthFailed = errors.New("mailbox: authentication failed")
	// ErrMechanismUnavailable means the server does not offer the configured login mechanism;
	// it comes inside an *AuthError.
	ErrMechanismUnavailable = errors.New("mailbox: the server does not offer this login mechanism")
	// ErrNoSecret means the password or token could not be had: its source (a command, a file)
	// failed or gave nothing usable. Every error that wraps it is a *SecretError.
	ErrNoSecret = errors.New("mailbox: no password or token")
)

// AuthError is a login a server refused (errors.Is(err, ErrAuthFailed)). A Transport's calls
// return it wrapped (Send inside a temporary *SendError, as the mail is not at fault), so use
// errors.As.
type AuthError struct {
	Server    string // "IMAP server host:port" or "SMTP server host:port"
	Mechanism string // PLAIN, LOGIN, IMAP LOGIN, XOAUTH2 or OAUTHBEARER
	User      string
	// Tries is how many logins were refused on this connection: 2 when a refreshed OAuth2
	// token was refused too.
	Tries int
	// Err is the server's answer (an *imap.Error or *smtp.SMTPError), or
	// ErrMechanismUnavailable.
	Err error
	// Detail is what the server said in an OAuth2 error challenge (the JSON's status, scheme
	// and scope), when it sent one.
	Detail string
}

func (e *AuthError) Error() string {
	if errors.Is(e.Err, ErrMechanismUnavailable) {
		return fmt.Sprintf("log in as %s with %s: %v", e.User, e.Mechanism, e.Err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "log in as %s with %s: %s refused it", e.User, e.Mechanism, e.Server)
	if e.Tries > 1 {
		fmt.Fprintf(&b, " %d times, with a fresh token each time", e.Tries)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " [%s]", e.Detail)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *AuthError) Is(target error) bool { return target == ErrAuthFailed }
func (e *AuthError) Unwrap() error        { return e.Err }

// SecretError is a password or token source that failed (errors.Is(err, ErrNoSecret)): a
// command that exited non-zero, timed out or printed nothing, a file that cannot be read, an
// empty secret, or a token that is not a bearer token. It never holds the secret or anything
// the command printed on its standard output.
type SecretError struct {
	Source string // what was asked, e.g. `command "pass show mail"` or `file /etc/sealpost/pw`
	// Stderr is the start of what a command wrote to its standard error, control characters
	// escaped; empty for other sources.
	Stderr string
	Err    error
}

func (e *SecretError) Error() string {
	s := fmt.Sprintf("password or token from %s: %v", e.Source, e.Err)
	if e.Stderr != "" {
		s += "; its stderr: " + e.Stderr
	}
	return s
}

func (e *SecretError) Is(target error) bool { return target == ErrNoSecret }
func (e *SecretError) Unwrap() error        { return e.Err }

// hasCredentials reports whether the configuration asks for a login.
func (c *Config) hasCredentials() bool {
	return c.Username != "" || c.Password != "" || c.Secret != nil
}

// loginUser is the user name to log in with.
func (s *settings) loginUser() string {
	if s.Username != "" {
		return s.Username
	}
	return s.Address
}

// secret asks the configured source for the password or token of one login.
func (s *settings) secret(ctx context.Context) (string, error) {
	if s.Secret == nil {
		if s.Auth.oauth() && !isBearerToken(s.Password) {
			return "", &SecretError{Source: "the configured token", Err: errNotBearer}
		}
		return s.Password, nil
	}
	const source = "the configured secret source"
	v, err := s.Secret(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
		return "", ctx.Err()
	case err != nil:
		if se := (*SecretError)(nil); errors.As(err, &se) {
			return "", err
		}
		return "", &SecretError{Source: source, Err: err}
	case v == "":
		return "", &SecretError{Source: source, Err: errors.New("it gave an empty password or token")}
	case s.Auth.oauth() && !isBearerToken(v):
		return "", &SecretError{Source: source, Err: errNotBearer}
	}
	return v, nil
}

var errNotBearer = errors.New("not an OAuth2 bearer token (RFC 6750 b64token: letters, digits, -._~+/ and trailing =)")

// imapLogin is the IMAP LOGIN command, used without SASL PLAIN (sasl.Login is SASL LOGIN).
const imapLogin = "IMAP LOGIN"

// authConn is one server's side of a login: IMAP or SMTP.
type authConn interface {
	server() string                    // "IMAP server host:port"
	offers(mech string) bool           // the server advertises this SASL mechanism
	authenticate(c sasl.Client) error  // one SASL exchange
	canLogin() bool                    // IMAP LOGIN is possible (SMTP: false)
	login(user, password string) error // IMAP LOGIN
	retryHere() bool                   // another login may follow a refusal on this connection
}

// retriesToken reports whether a refused login is tried once more with a fresh secret: with
// an OAuth2 token from a source (the token the helper had may just have expired), not with a
// password (it would only count towards the server's lockout).
func (s *settings) retriesToken() bool { return s.Auth.oauth() && s.Secret != nil }

// authenticate logs in over a, as the settings say; try is the number of this login attempt
// (2 when the caller retries on a new connection). A refusal is an *AuthError; a failing
// secret source a *SecretError; anything else (the connection failed) is returned as it is.
func (s *settings) authenticate(ctx context.Context, a authConn, try int) error {
	user := s.loginUser()
	var mech string
	switch s.Auth {
	case AuthXOAUTH2:
		mech = xoauth2
	case AuthOAuthBearer:
		mech = sasl.OAuthBearer
	default:
		switch {
		case a.offers(sasl.Plain):
			mech = sasl.Plain
		case a.canLogin():
			mech = imapLogin
		case a.offers(sasl.Login):
			mech = sasl.Login
		default:
			return &AuthError{Server: a.server(), Mechanism: "PLAIN or LOGIN", User: user,
				Err: fmt.Errorf("%w: %s offers neither AUTH PLAIN nor LOGIN", ErrMechanismUnavailable, a.server())}
		}
	}
	if s.Auth.oauth() && !a.offers(mech) {
		return &AuthError{Server: a.server(), Mechanism: mech, User: user,
			Err: fmt.Errorf("%w: %s does not advertise AUTH=%s", ErrMechanismUnavailable, a.server(), mech)}
	}
	tries := 1
	if s.retriesToken() {
		tries = 2
	}
	var ae *AuthError
	for i := try; i <= tries; i++ {
		secret, err := s.secret(ctx)
		if err != nil {
			return err
		}
		var detail string
		switch mech {
		case imapLogin:
			err = a.login(user, secret)
		case sasl.Plain:
			err = a.authenticate(sasl.NewPlainClient("", user, secret))
		case sasl.Login:
			err = a.authenticate(sasl.NewLoginClient(user, secret))
		case xoauth2:
			c := &xoauth2Client{user: user, token: secret}
			err = a.authenticate(c)
			detail = c.detail()
		case sasl.OAuthBearer:
			c := &oauthBearerClient{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{Username: user, Token: secret})}
			err = a.authenticate(c)
			detail = c.detail()
		}
		if err == nil {
			return nil
		}
		if !refusal(err) {
			return err
		}
		ae = &AuthError{Server: a.server(), Mechanism: mech, User: user, Tries: i, Err: err, Detail: detail}
		if i < tries && !a.retryHere() {
			break // the caller retries on a new connection
		}
		if i < tries {
			s.log.Info("the server refused the OAuth2 token; asking for a fresh one", "op", "login", "err", ae)
		}
	}
	return ae
}

// refusal reports whether err is a server's refusal of a login, rather than a broken
// connection or a server that cannot check logins just now. IMAP: a tagged NO or BAD, except
// [UNAVAILABLE]; SMTP: a 5xx reply (535, 534 and the like; a 4xx such as 454 is temporary).
func refusal(err error) bool {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return (ie.Type == imap.StatusResponseTypeNo || ie.Type == imap.StatusResponseTypeBad) && ie.Code != imap.ResponseCodeUnavailable
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code >= 500 && se.Code < 600
	}
	return false
}

// imapAuth is the IMAP side of a login.
type imapAuth struct {
	c     *imapclient.Client
	addr  string
	empty *emptyResponse
}

// emptyResponse sits between go-imap's client and the connection to send an empty SASL
// response as the empty line IMAP wants (RFC 9051 6.2.2: a base64 string, which may be
// empty). go-imap writes "=", which RFC 4959 defines for an empty initial response only:
// Dovecot answers it with BAD "Invalid base64 data" instead of the NO that says the token was
// refused. Armed by the XOAUTH2 client just before it answers an error challenge; it then
// rewrites that one write (go-imap flushes the response line in one write).
type emptyResponse struct {
	net.Conn
	armed atomic.Bool
}

func (e *emptyResponse) wrap(c net.Conn) net.Conn {
	e.Conn = c
	return e
}

func (e *emptyResponse) arm() { e.armed.Store(true) }

func (e *emptyResponse) Write(p []byte) (int, error) {
	if e.armed.CompareAndSwap(true, false) && string(p) == "=\r\n" {
		if _, err := e.Conn.Write([]byte("\r\n")); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return e.Conn.Write(p)
}

func (a imapAuth) server() string          { return "IMAP server " + a.addr }
func (a imapAuth) offers(mech string) bool { return a.c.Caps().Has(imap.AuthCap(mech)) }
func (a imapAuth) canLogin() bool          { return !a.c.Caps().Has(imap.CapLoginDisabled) }
func (a imapAuth) retryHere() bool         { return true }

// authenticate runs AUTHENTICATE, with the initial response on the command line where the
// server offers SASL-IR (go-imap does that).
func (a imapAuth) authenticate(c sasl.Client) error {
	if x, ok := c.(*xoauth2Client); ok {
		x.onEmpty = a.empty.arm
	}
	return a.c.Authenticate(c)
}
func (a imapAuth) login(user, password string) error {
	return a.c.Login(user, password).Wait()
}

// smtpAuth is the SMTP side of a login.
type smtpAuth struct {
	c    *smtp.Client
	addr string
}

func (a smtpAuth) server() string                    { return "SMTP server " + a.addr }
func (a smtpAuth) offers(mech string) bool           { return a.c.SupportsAuth(mech) }
func (a smtpAuth) canLogin() bool                    { return false }
func (a smtpAuth) retryHere() bool                   { return false }
func (a smtpAuth) authenticate(c sasl.Client) error  { return a.c.Auth(c) }
func (a smtpAuth) login(user, password string) error { return errors.New("SMTP has no LOGIN command") }
