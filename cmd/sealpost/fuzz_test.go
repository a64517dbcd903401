package main

// A fuzz target for the relay's --user ADDR:PASSWORD parsing. It asserts: no panic; a success
// splits the value at its first ':' into an address holding an '@' and the password, which put
// back together are the value; an error is the usage error naming the value, with nothing else.
// Run with:
//
//	go test -run '^$' -fuzz '^FuzzParseRelayUser$' -fuzztime 60s ./cmd/sealpost/

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
)

func FuzzParseRelayUser(f *testing.F) {
	for _, s := range []string{
		"alice@example.test:pw", "bob@example.test:pw", "alice@example.test:secret:with:colons", "alice@example.test:",
		"Alice@Example.TEST:pw", "@:x", "alice:pw", ":pw@x", "alice@example.test", "", ":", "a@b:\x00\xff", "é@ü:ß",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, pw, err := parseRelayUser(s)
		if err != nil {
			var ue usageError
			want := fmt.Sprintf("--user %q: want ADDR:PASSWORD, like alice@example.test:secret", s)
			if !errors.As(err, &ue) || err.Error() != want || addr != "" || pw != "" {
				t.Fatalf("parseRelayUser(%q) = %q, %q, %v: want only the usage error %q", s, addr, pw, err, want)
			}
			if before, _, ok := strings.Cut(s, ":"); ok && strings.Contains(before, "@") {
				t.Fatalf("parseRelayUser(%q) refused an ADDR:PASSWORD whose address has an '@': %v", s, err)
			}
			return
		}
		if addr == "" || !strings.Contains(addr, "@") || strings.Contains(addr, ":") || addr+":"+pw != s {
			t.Fatalf("parseRelayUser(%q) = %q, %q: want an address with '@' and no ':', and address:password = the value", s, addr, pw)
		}
	})
}

// FuzzReadCode: what --code-file reads. No panic; an error wraps errBadCodeInput and comes with
// no code; a code is non-empty, has no control character or surrounding space, and is on the
// first line of the input.
//
//	go test -run '^$' -fuzz '^FuzzReadCode$' -fuzztime 60s ./cmd/sealpost/
func FuzzReadCode(f *testing.F) {
	for _, s := range []string{"7KQ2-M9XD-4HTC-P0WZ-8RNB-1EJF\n", " code \r\n", "", "\n", "a\x00b", "é\u2028ü\n", "x\nsecond line"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code, err := readCode(strings.NewReader(s))
		if err != nil {
			if code != "" || !errors.Is(err, errBadCodeInput) {
				t.Fatalf("readCode(%q) = %q, %v: want no code and errBadCodeInput", s, code, err)
			}
			return
		}
		first, _, _ := strings.Cut(s, "\n")
		if code == "" || code != strings.TrimSpace(code) || strings.ContainsFunc(code, unicode.IsControl) || !strings.Contains(first, code) {
			t.Fatalf("readCode(%q) = %q: want the trimmed first line, without control characters", s, code)
		}
	})
}
