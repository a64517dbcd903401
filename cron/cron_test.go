package cron

import (
	"errors"
	"testing"
	"time"
)

func TestParseString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"* * * * *", "* * * * *"},
		{"0 3 * * *", "0 3 * * *"},
		{"*/15 * * * *", "*/15 * * * *"},
		{"  0\t0  * *   6,0 ", "0 0 * * 6,0"},
	} {
		e, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q) = %v", c.in, err)
			continue
		}
		if got := e.String(); got != c.want {
			t.Errorf("Parse(%q).String() = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestParseSets: what each item form allows.
func TestParseSets(t *testing.T) {
	for _, c := range []struct {
		in                            string
		minute, hour, dom, month, dow uint64
		domAny, dowAny                bool
	}{
		{"*/15 1-10/3 * * *", 1 | 1<<15 | 1<<30 | 1<<45, 1<<1 | 1<<4 | 1<<7 | 1<<10, 0xfffffffe, 0x1ffe, 0x7f, true, true},
		{"5,1,3-4 0 1,15 1-12/2 7", 1<<1 | 1<<3 | 1<<4 | 1<<5, 1, 1<<1 | 1<<15, 0xaaa, 1, false, false},
		{"0 0 */2 * 0-7", 1, 1, 0xaaaaaaaa, 0x1ffe, 0x7f, true, false},
	} {
		e, err := Parse(c.in)
		if err != nil {
			t.Fatalf("Parse(%q) = %v", c.in, err)
		}
		want := Expr{c.minute, c.hour, c.dom, c.month, c.dow, c.domAny, c.dowAny, e.text}
		if *e != want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, *e, want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, in := range []string{"", "* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *",
		"* * * 13 *", "* * * * 8", "5-1 * * * *", "*/0 * * * *", "1/2 * * * *", ",1 * * * *", "1,,2 * * * *",
		"a * * * *", "-1 * * * *", "+1 * * * *", "* * * JAN *", "@daily", "001 * * * *", "*/ * * * *", "*/100 * * * *"} {
		e, err := Parse(in)
		var pe *ParseError
		if !errors.As(err, &pe) || e != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil and a *ParseError", in, e, err)
		}
	}
}

func date(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNext(t *testing.T) {
	for _, c := range []struct{ expr, after, want string }{
		{"0 3 * * *", "2026-12-07 02:59:59", "2026-12-07 03:00:00"},
		{"0 3 * * *", "2026-12-07 03:00:00", "2026-12-08 03:00:00"},
		{"*/15 * * * *", "2026-12-07 10:14:30", "2026-12-07 10:15:00"},
		{"59 23 31 12 *", "2026-12-31 23:59:00", "2027-12-31 23:59:00"},
		{"0 0 29 2 *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"},
		{"0 0 1 * 1", "2026-12-02 00:00:00", "2026-12-07 00:00:00"},    // Monday before the 1st: OR rule
		{"0 0 1-31 * 1", "2026-12-02 00:00:00", "2026-12-03 00:00:00"}, // dom restricted (a range): OR
		{"0 0 * * 7", "2026-12-07 00:00:00", "2026-12-13 00:00:00"},    // 7 is Sunday
		{"0 0 */2 * 1", "2026-12-07 00:00:00", "2026-12-21 00:00:00"},  // starred dom: AND (odd days, Monday)
		{"30 2 * * *", "2026-12-07 02:30:00", "2026-12-08 02:30:00"},
		{"0 0 30 2 *", "2026-01-01 00:00:00", "0001-01-01 00:00:00"}, // never
	} {
		e, err := Parse(c.expr)
		if err != nil {
			t.Fatal(err)
		}
		got := e.Next(date(c.after))
		if !got.Equal(date(c.want)) {
			t.Errorf("Parse(%q).Next(%s) = %s, want %s", c.expr, c.after, got, c.want)
		}
	}
}

// TestNextAcrossDST: a skipped and a repeated hour never make Next go backwards or stop.
func TestNextAcrossDST(t *testing.T) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone data:", err)
	}
	e, _ := Parse("30 2 * * *")
	got := e.Next(time.Date(2026, 3, 8, 1, 0, 0, 0, loc)) // 02:30 does not exist that day
	if !got.After(time.Date(2026, 3, 8, 1, 0, 0, 0, loc)) || !e.Matches(got) {
		t.Errorf("Next across the spring change = %s", got)
	}
	checkNext(t, "*/7 * * * *", time.Date(2026, 11, 1, 0, 0, 0, 0, loc), 500)
	checkNext(t, "0 * * * *", time.Date(2026, 3, 7, 22, 0, 0, 0, loc), 50)
}

// checkNext follows Next steps times from t and checks each against a minute-by-minute search.
func checkNext(t *testing.T, expr string, from time.Time, steps int) {
	t.Helper()
	e, err := Parse(expr)
	if err != nil {
		t.Fatal(err)
	}
	at := from
	for range steps {
		next := e.Next(at)
		want := at.Add(-time.Duration(at.Second())*time.Second - time.Duration(at.Nanosecond()))
		for want = want.Add(time.Minute); !e.Matches(want); want = want.Add(time.Minute) {
		}
		if !next.Equal(want) {
			t.Fatalf("Parse(%q).Next(%s) = %s, want %s", expr, at, next, want)
		}
		at = next
	}
}

func TestNextAgainstSearch(t *testing.T) {
	start := date("2026-12-07 13:47:12")
	for _, expr := range []string{"* * * * *", "*/7 */5 * * *", "0 12 * * 1-5", "15,45 8-17 1,15 * *", "0 0 1 * 1", "0 0 * 2 *"} {
		checkNext(t, expr, start, 200)
	}
}
