package mailbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-sasl"
)

// SASL XOAUTH2 is Google's and Microsoft's OAuth2 mechanism, older than OAUTHBEARER (RFC 7628)
// and still the one both document for IMAP and SMTP
// (https://developers.google.com/gmail/imap/xoauth2-protocol). go-sasl has no XOAUTH2, so it
// is here: the client (for the transport) and the server's parser (for the relay).
//
// The client's initial response is
//
//	"user=" user "\x01auth=Bearer " token "\x01\x01"
//
// On success the server answers OK (IMAP) or 235 (SMTP). On failure it first sends a challenge,
// a JSON object such as {"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}
// (base64 on the wire), to which the client answers with an empty response; then the server
// refuses (NO, 535). OAUTHBEARER's failure is the same except that the client answers "\x01".

const xoauth2 = "XOAUTH2"

// maxOAuthError caps the error challenge the client reads; Google's is about 100 bytes.
const maxOAuthError = 4 << 10

// marshalXOAUTH2 is the client's initial response.
func marshalXOAUTH2(user, token string) []byte {
	return []byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

// errXOAUTH2 is every failure of parseXOAUTH2.
var errXOAUTH2 = errors.New("malformed XOAUTH2 initial response")

// parseXOAUTH2 reads a client's initial response. Only the canonical form is accepted (the one
// marshalXOAUTH2 writes, with a non-empty user without control characters and an RFC 6750
// b64token), so parseXOAUTH2(marshalXOAUTH2(u, t)) gives u and t back and nothing else parses.
func parseXOAUTH2(b []byte) (user, token string, err error) {
	rest, ok := bytes.CutPrefix(b, []byte("user="))
	if !ok {
		return "", "", errXOAUTH2
	}
	u, rest, ok := bytes.Cut(rest, []byte("\x01auth=Bearer "))
	if !ok {
		return "", "", errXOAUTH2
	}
	tok, ok := bytes.CutSuffix(rest, []byte("\x01\x01"))
	if !ok || len(u) == 0 || bytes.ContainsFunc(u, isControl) || !isBearerToken(string(tok)) {
		return "", "", errXOAUTH2
	}
	return string(u), string(tok), nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// isBearerToken reports whether s is an RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" ) *"=". Google's, Microsoft's and Fastmail's access tokens are.
func isBearerToken(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}

// oauthError is the JSON error challenge of XOAUTH2 and OAUTHBEARER (RFC 7628 3.2.2).
type oauthError struct {
	Status  string `json:"status"`
	Schemes string `json:"schemes,omitempty"`
	Scope   string `json:"scope,omitempty"`
}

// errOAuthChallenge is every failure of parseOAuthError.
var errOAuthChallenge = errors.New("malformed OAuth2 error challenge")

// parseOAuthError reads an error challenge: a JSON object with a string status (RFC 7628 3.2.2
// requires it). Other members are ignored; it is read for the error message only, so a
// malformed one costs nothing but that.
func parseOAuthError(b []byte) (*oauthError, error) {
	if len(b) > maxOAuthError {
		return nil, errOAuthChallenge
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil || raw == nil {
		return nil, errOAuthChallenge
	}
	var e oauthError
	str := func(k string, dst *string) bool {
		v, ok := raw[k]
		return !ok || json.Unmarshal(v, dst) == nil
	}
	if !str("status", &e.Status) || !str("schemes", &e.Schemes) || !str("scope", &e.Scope) || e.Status == "" {
		return nil, errOAuthChallenge
	}
	return &e, nil
}

// String is the challenge for an error message, control characters escaped (it comes from the
// server).
func (e *oauthError) String() string {
	s := "status " + e.Status
	if e.Schemes != "" {
		s += ", schemes " + e.Schemes
	}
	if e.Scope != "" {
		s += ", scope " + e.Scope
	}
	return escapeControl(s, 200)
}

// escapeControl quotes control characters and cuts s to max bytes, for text from outside that
// goes into errors and logs (THREATS.md row 41).
func escapeControl(s string, max int) string {
	cut := len(s) > max
	if cut {
		s = s[:max]
	}
	var b strings.Builder
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			fmt.Fprintf(&b, "\\x%02x", r)
			continue
		}
		b.WriteRune(r)
	}
	if cut {
		b.WriteString("...")
	}
	return b.String()
}

// challengeDetail describes an error challenge for AuthError.Detail.
func challengeDetail(challenge []byte) string {
	if len(challenge) == 0 {
		return ""
	}
	if e, err := parseOAuthError(challenge); err == nil {
		return e.String()
	}
	return "unreadable error challenge"
}

// xoauth2Client is the XOAUTH2 sasl.Client. It answers an error challenge with the empty
// response the mechanism asks for (never nil: go-smtp would end the exchange without sending
// it and the server would wait) and keeps the challenge for the error.
type xoauth2Client struct {
	user, token string
	challenge   []byte
	onEmpty     func() // runs before the empty response is sent (IMAP: see emptyResponse)
}

func (c *xoauth2Client) Start() (string, []byte, error) {
	return xoauth2, marshalXOAUTH2(c.user, c.token), nil
}

func (c *xoauth2Client) Next(challenge []byte) ([]byte, error) {
	if c.challenge == nil {
		c.challenge = append([]byte{}, challenge...)
		if c.onEmpty != nil {
			c.onEmpty()
		}
		return []byte{}, nil
	}
	return nil, errors.New("XOAUTH2: a second challenge from the server")
}

func (c *xoauth2Client) detail() string { return challengeDetail(c.challenge) }

// oauthBearerClient is go-sasl's OAUTHBEARER client, except that it answers the error
// challenge with "\x01", as RFC 7628 (3.2.3) asks: go-sasl returns an error there instead, and
// the IMAP and SMTP clients then send no answer, leaving the exchange open.
type oauthBearerClient struct {
	sasl.Client
	challenge []byte
}

func (c *oauthBearerClient) Next(challenge []byte) ([]byte, error) {
	if c.challenge == nil {
		c.challenge = append([]byte{}, challenge...)
		return []byte{0x01}, nil
	}
	return nil, errors.New("OAUTHBEARER: a second challenge from the server")
}

func (c *oauthBearerClient) detail() string { return challengeDetail(c.challenge) }
