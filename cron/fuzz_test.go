package cron

import (
	"errors"
	"testing"
	"time"
)

// FuzzParse: Parse never panics; an error is a *ParseError with no Expr; an Expr's canonical
// form parses to the same expression and is its own canonical form; Next(t) is after t, matches,
// and no minute in between does.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"* * * * *", "0 3 * * *", "*/15 1-5 * 1,6 0-7", "0 0 1 * 1", "59 23 31 12 7",
		"1-10/3 * */2 * *", "0 0 30 2 *", "60 * * * *", "* * * *", "a b c d e", "1,,2 * * * *"} {
		f.Add(s, int64(1796650000))
	}
	f.Fuzz(func(t *testing.T, s string, unix int64) {
		e, err := Parse(s)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) || e != nil {
				t.Fatalf("Parse(%q) = %v, %v; want nil and a *ParseError", s, e, err)
			}
			return
		}
		canon := e.String()
		e2, err := Parse(canon)
		if err != nil || *e2 != *e || e2.String() != canon {
			t.Fatalf("Parse(%q).String() = %q, which parses to %+v, %v; want %+v", s, canon, e2, err, *e)
		}
		at := time.Unix(unix%(1<<33), 0).UTC() // years 1970 to 2242
		next := e.Next(at)
		if next.IsZero() {
			return // never matches (30 February)
		}
		if !next.After(at) || !e.Matches(next) || next.Second() != 0 {
			t.Fatalf("Parse(%q).Next(%s) = %s: not after it, or does not match", s, at, next)
		}
		if gap := next.Sub(at); gap <= 48*time.Hour {
			for m := at.Truncate(time.Minute).Add(time.Minute); m.Before(next); m = m.Add(time.Minute) {
				if e.Matches(m) {
					t.Fatalf("Parse(%q).Next(%s) = %s, but %s matches earlier", s, at, next, m)
				}
			}
		}
	})
}
