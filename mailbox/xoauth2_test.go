package mailbox

import (
	"bytes"
	"encoding/json"
	"testing"
)

// xoauth2Seeds are initial responses, good and bad. The first is Google's example
// (https://developers.google.com/gmail/imap/xoauth2-protocol).
var xoauth2Seeds = []string{
	"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01",
	"user=a@b\x01auth=Bearer eyJ0eXAi.eyJhdWQi.c2lnbmF0dXJl==\x01\x01",
	"user=a@b\x01auth=bearer tok\x01\x01",       // lower-case scheme: not the canonical form
	"user=a@b\x01auth=Bearer two words\x01\x01", // not a b64token
	"user=\x01auth=Bearer tok\x01\x01",          // no user
	"user=a@b\x01auth=Bearer tok\x01",           // one \x01 short
	"user=a\x01b\x01auth=Bearer tok\x01\x01",    // a control byte in the user
	"n,a=a@b,\x01auth=Bearer tok\x01\x01",       // OAUTHBEARER's
	"",
}

func TestParseXOAUTH2(t *testing.T) {
	for i, s := range xoauth2Seeds {
		user, token, err := parseXOAUTH2([]byte(s))
		if ok := i < 2; ok != (err == nil) {
			t.Errorf("parseXOAUTH2(%q) = %q, %q, %v; want ok %v", s, user, token, err, ok)
		}
	}
	if u, tok, err := parseXOAUTH2(marshalXOAUTH2("x@y.z", "ya29.A-b_c~d+e/f=")); err != nil || u != "x@y.z" || tok != "ya29.A-b_c~d+e/f=" {
		t.Errorf("parseXOAUTH2(marshalXOAUTH2) = %q, %q, %v", u, tok, err)
	}
}

// FuzzParseXOAUTH2: no panic; an error comes with nothing else; what parses marshals back to
// the same bytes (only the canonical form is accepted).
func FuzzParseXOAUTH2(f *testing.F) {
	for _, s := range xoauth2Seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		user, token, err := parseXOAUTH2(b)
		if err != nil {
			if user != "" || token != "" {
				t.Fatalf("parseXOAUTH2(%q) = %q, %q with error %v", b, user, token, err)
			}
			return
		}
		if again := marshalXOAUTH2(user, token); !bytes.Equal(again, b) {
			t.Fatalf("marshalXOAUTH2(parseXOAUTH2(%q)) = %q", b, again)
		}
	})
}

var oauthErrorSeeds = []string{
	`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`,
	`{"status":"invalid_token","schemes":"bearer","scope":"mail"}`,
	`{"status":"invalid_token","openid-configuration":"https://example.com/.well-known/openid-configuration"}`,
	`{"schemes":"bearer"}`, // no status
	`{"status":401}`,       // not a string
	`null`,
	`[]`,
	`{"status":"x\u001b[31m"}`,
	``,
}

func TestParseOAuthError(t *testing.T) {
	for i, s := range oauthErrorSeeds {
		e, err := parseOAuthError([]byte(s))
		if ok := i < 3 || i == 7; ok != (err == nil) {
			t.Errorf("parseOAuthError(%q) = %+v, %v; want ok %v", s, e, err, ok)
		}
	}
	e, _ := parseOAuthError([]byte(oauthErrorSeeds[7]))
	if got, want := e.String(), `status x\x1b[31m`; got != want {
		t.Errorf("String of a status with an escape = %q; want %q", got, want)
	}
}

// FuzzParseOAuthError: no panic; an error comes with nothing; a success has a status and its
// fields survive a JSON round trip; String has no control characters.
func FuzzParseOAuthError(f *testing.F) {
	for _, s := range oauthErrorSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseOAuthError(b)
		if err != nil {
			if e != nil {
				t.Fatalf("parseOAuthError(%q) = %+v with error %v", b, e, err)
			}
			return
		}
		if e.Status == "" {
			t.Fatalf("parseOAuthError(%q): no status", b)
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := parseOAuthError(again); err != nil || *back != *e {
			t.Fatalf("parseOAuthError(json.Marshal(%+v)) = %+v, %v", e, back, err)
		}
		if s := e.String(); bytes.ContainsFunc([]byte(s), isControl) {
			t.Fatalf("String() = %q holds control characters", s)
		}
	})
}
