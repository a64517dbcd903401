package cron

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// Expr is a parsed cron expression: one bit set per value each field allows.
type Expr struct {
	minute, hour, dom, month, dow uint64
	// domAny, dowAny: the day field starts with `*`, so only the other day field restricts the
	// day (the OR rule applies when both are restricted).
	domAny, dowAny bool
	text           string // the fields as given, separated by single spaces
}

// ParseError says which field of an expression is wrong and why.
type ParseError struct {
	Expr   string
	Field  string // "minute", "hour", "day of month", "month", "day of week"; "" for the whole
	Reason string
}

func (e *ParseError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("cron expression %q: %s", e.Expr, e.Reason)
	}
	return fmt.Sprintf("cron expression %q: %s field: %s", e.Expr, e.Field, e.Reason)
}

type field struct {
	name     string
	min, max int
}

var fields = [5]field{{"minute", 0, 59}, {"hour", 0, 23}, {"day of month", 1, 31}, {"month", 1, 12}, {"day of week", 0, 7}}

// maxExprLen bounds an expression; the longest useful one is far shorter.
const maxExprLen = 512

// Parse reads a five-field expression (see the package documentation).
func Parse(s string) (*Expr, error) {
	if len(s) > maxExprLen {
		return nil, &ParseError{Expr: s, Reason: fmt.Sprintf("longer than %d bytes", maxExprLen)}
	}
	parts := strings.Fields(s)
	if len(parts) != 5 {
		return nil, &ParseError{Expr: s, Reason: fmt.Sprintf("has %d fields, want 5: minute hour day-of-month month day-of-week", len(parts))}
	}
	var e Expr
	sets := [5]*uint64{&e.minute, &e.hour, &e.dom, &e.month, &e.dow}
	for i, p := range parts {
		set, err := parseField(p, fields[i])
		if err != nil {
			return nil, &ParseError{Expr: s, Field: fields[i].name, Reason: err.Error()}
		}
		*sets[i] = set
	}
	if e.dow&(1<<7) != 0 { // 7 is Sunday, as 0
		e.dow = e.dow&^(1<<7) | 1
	}
	e.text = strings.Join(parts, " ")
	e.domAny = strings.HasPrefix(parts[2], "*")
	e.dowAny = strings.HasPrefix(parts[4], "*")
	return &e, nil
}

func parseField(s string, f field) (uint64, error) {
	var set uint64
	for _, item := range strings.Split(s, ",") {
		if item == "" {
			return 0, fmt.Errorf("an empty item (two commas, or one at an end)")
		}
		rng, stepText, hasStep := strings.Cut(item, "/")
		lo, hi := f.min, f.max
		if rng != "*" {
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = number(a, f); err != nil {
				return 0, err
			}
			hi = lo
			if isRange {
				if hi, err = number(b, f); err != nil {
					return 0, err
				}
				if hi < lo {
					return 0, fmt.Errorf("range %s runs backwards", rng)
				}
			} else if hasStep {
				return 0, fmt.Errorf("a step needs * or a range before it, not %q", item)
			}
		}
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > f.max || !digits(stepText) {
				return 0, fmt.Errorf("step %q: want a number from 1 to %d", stepText, f.max)
			}
			step = n
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

func digits(s string) bool {
	return s != "" && len(s) <= 2 && strings.Trim(s, "0123456789") == ""
}

func number(s string, f field) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || !digits(s) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < f.min || n > f.max {
		return 0, fmt.Errorf("%d is outside %d-%d", n, f.min, f.max)
	}
	return n, nil
}

// String returns the expression as given, with its fields separated by single spaces. (Lists
// of numbers would lose whether a day field was given starred, which decides between the AND
// and the OR rule.)
func (e *Expr) String() string { return e.text }

// Matches reports whether the minute t falls in matches the expression (in t's location).
func (e *Expr) Matches(t time.Time) bool {
	return e.minute&(1<<t.Minute()) != 0 && e.hour&(1<<t.Hour()) != 0 && e.month&(1<<int(t.Month())) != 0 && e.dayMatches(t)
}

func (e *Expr) dayMatches(t time.Time) bool {
	dom := e.dom&(1<<t.Day()) != 0
	dow := e.dow&(1<<int(t.Weekday())) != 0
	if e.domAny || e.dowAny {
		return dom && dow
	}
	return dom || dow
}

// searchYears bounds Next's search: every satisfiable expression matches within it (29 February
// on a given weekday recurs within 28 years; any other day within 8).
const searchYears = 30

// Next returns the first whole minute after t that matches, in t's location; the zero time if
// none does within searchYears.
func (e *Expr) Next(t time.Time) time.Time {
	loc := t.Location()
	// The next whole minute (not t.Truncate, which rounds in UTC: an offset with seconds, as old
	// local mean times have, would be off).
	c := t.Add(-time.Duration(t.Second())*time.Second - time.Duration(t.Nanosecond())).Add(time.Minute)
	end := c.AddDate(searchYears, 0, 0)
	// advance moves c to next, or, where a time-zone change makes that no later (a skipped or
	// repeated hour), a minute on: c only ever moves forward.
	advance := func(next time.Time) {
		if next.After(c) {
			c = next
		} else {
			c = c.Add(time.Minute)
		}
	}
	for c.Before(end) {
		switch {
		case e.month&(1<<int(c.Month())) == 0:
			advance(time.Date(c.Year(), c.Month()+1, 1, 0, 0, 0, 0, loc))
		case !e.dayMatches(c):
			advance(time.Date(c.Year(), c.Month(), c.Day()+1, 0, 0, 0, 0, loc))
		case e.hour&(1<<c.Hour()) == 0:
			advance(nextHour(c))
		case e.minute&(1<<c.Minute()) == 0:
			// The next allowed minute of this hour, or the next hour.
			rest := e.minute >> (c.Minute() + 1) << (c.Minute() + 1)
			if rest == 0 {
				advance(nextHour(c))
			} else {
				advance(c.Add(time.Duration(bits.TrailingZeros64(rest)-c.Minute()) * time.Minute))
			}
		default:
			return c
		}
	}
	return time.Time{}
}

// nextHour is the start of the hour after c's (c at a whole minute), counted in elapsed time,
// so that an hour repeated when clocks go back is visited twice, as a minute-by-minute search
// would.
func nextHour(c time.Time) time.Time {
	return c.Add(time.Duration(60-c.Minute()) * time.Minute)
}
