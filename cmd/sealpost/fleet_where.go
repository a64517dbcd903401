package main

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/web"
)

// `sealpost fleet --where EXPR` filters the fleet view with an expression of expr-lang/expr
// (https://expr-lang.org), compiled once against whereEnv so that a misspelt field or a
// comparison of mismatched types is a usage error before any peer is looked at. Two spellings
// that expr does not have are rewritten first, outside string literals and comments:
//
//   - `a =~ "re"` and `a !~ "re"` become `a matches "re"` and `a not matches "re"` (the
//     regular-expression match of awk and Perl that the fleet's users type);
//   - a duration literal (2h, 90m, 1h30m, 500ms, 7d with d = 24h) becomes duration("…"), so
//     that `last_seen > 2h` compares durations.
//
// An error's position is mapped back to the expression as typed.

// maxWhereLen bounds an expression: it is typed by a person; a longer one is a mistake.
const maxWhereLen = 4096

// whereEnv is what an expression sees of one fleet entry: the names of `fleet --json`, with the
// times turned into how long ago they were (last_seen, the one a filter wants, is the time since
// anything was heard from the peer). A value this node does not know (no sysinfo, no ping yet)
// is nil: `disk_free_pct == nil` finds those peers, and a comparison such as
// `disk_free_pct < 10` fails for them, so they do not match (whereMatch).
type whereEnv struct {
	Name    string   `expr:"name"`
	Address string   `expr:"address"`
	Tags    []string `expr:"tags"`
	Status  string   `expr:"status"`
	Epoch   uint64   `expr:"epoch"`
	Stale   bool     `expr:"stale"`
	Pending int      `expr:"pending"`
	// ChecksFailing counts the peer's own checks not ok in its reports (0: none, or no checks).
	ChecksFailing int `expr:"checks_failing"`
	// LastSeen: since the last mail, report or sysinfo from the peer; never heard from: nil.
	LastSeen    *time.Duration `expr:"last_seen"`
	RoundTrip   *time.Duration `expr:"round_trip"`
	ReportEvery time.Duration  `expr:"report_every"` // 0: no reports asked for
	DiskFreePct *float64       `expr:"disk_free_pct"`
	MemFreePct  *float64       `expr:"mem_free_pct"`
	// The sysinfo members (docs/PROTOCOL.md section 19); the strings are "" when unknown.
	Hostname     string         `expr:"hostname"`
	OS           string         `expr:"os"`
	Kernel       string         `expr:"kernel"`
	Arch         string         `expr:"arch"`
	Version      string         `expr:"version"`
	GoVersion    string         `expr:"go_version"`
	Uptime       *time.Duration `expr:"uptime"`
	Load1        *float64       `expr:"load1"`
	Load5        *float64       `expr:"load5"`
	Load15       *float64       `expr:"load15"`
	MemTotal     *float64       `expr:"mem_total"`
	MemAvailable *float64       `expr:"mem_available"`
	NumCPU       *float64       `expr:"num_cpu"`
}

// whereFields is the list --help shows; TestWhereFieldsListed keeps it in step with whereEnv.
const whereFields = "name address tags status epoch stale pending checks_failing last_seen round_trip report_every disk_free_pct\n" +
	"mem_free_pct hostname os kernel arch version go_version uptime load1 load5 load15 mem_total mem_available num_cpu"

// whereHelp is the part of `fleet --help` that documents --where.
var whereHelp = `--where EXPR keeps the peers for which EXPR is true. EXPR is an expr-lang expression
(https://expr-lang.org/docs/language-definition) over the fields
  ` + strings.ReplaceAll(whereFields, "\n", "\n  ") + `
as in --json, except last_seen (how long ago the peer was last heard from), and uptime,
round_trip and report_every, which are durations. Durations are written 2h, 90m, 1h30m, 7d.
=~ and !~ match a regular expression (expr's matches and not matches). A value not known
(no sysinfo yet) is nil: a peer whose expression orders or matches nil (disk_free_pct < 10)
does not match, and 'disk_free_pct == nil' finds such peers.
Examples:  'os !~ "bookworm"'   'disk_free_pct < 10'   'last_seen > 2h && "web" in tags'`

// whereError is a --where expression that does not compile: Msg says what is wrong and Offset
// where, in runes from the start of Expr as the user typed it (-1: no position).
type whereError struct {
	Expr   string
	Offset int
	Msg    string
}

func (e *whereError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("--where %q: %s", e.Expr, e.Msg)
	}
	line, col := 1, 1
	lineStart := 0
	for i, r := range []rune(e.Expr) {
		if i == e.Offset {
			break
		}
		if r == '\n' {
			line, col, lineStart = line+1, 1, i+1
		} else {
			col++
		}
	}
	text := []rune(e.Expr)[lineStart:]
	if i := strings.IndexRune(string(text), '\n'); i >= 0 {
		text = []rune(string(text)[:i])
	}
	return fmt.Sprintf("--where: %s at line %d, column %d:\n  %s\n  %s^", e.Msg, line, col, string(text), strings.Repeat(" ", col-1))
}

// whereFilter is a compiled --where expression.
type whereFilter struct{ prog *vm.Program }

// compileWhere compiles src for whereMatch; a failure is a *whereError.
func compileWhere(src string) (*whereFilter, error) {
	if len(src) > maxWhereLen {
		return nil, &whereError{Expr: src, Offset: -1, Msg: fmt.Sprintf("longer than %d bytes", maxWhereLen)}
	}
	if !utf8.ValidString(src) {
		return nil, &whereError{Expr: src, Offset: -1, Msg: "not valid UTF-8"}
	}
	rewritten, origin := rewriteWhere(src)
	prog, err := expr.Compile(rewritten, expr.Env(whereEnv{}), expr.AsBool())
	if err != nil {
		we := &whereError{Expr: src, Offset: -1, Msg: err.Error()}
		var fe *file.Error
		if errors.As(err, &fe) {
			we.Msg = fe.Message
			if fe.Snippet != "" { // expr placed it (Bind): From is a rune offset into rewritten
				we.Offset = len([]rune(src))
				if fe.From >= 0 && fe.From < len(origin) {
					we.Offset = origin[fe.From]
				}
			}
		}
		return nil, we
	}
	return &whereFilter{prog: prog}, nil
}

// match reports whether e passes the filter at now. An expression that fails on e (a comparison
// with a value e does not have) does not match.
func (f *whereFilter) match(e node.FleetEntry, now time.Time) bool {
	out, err := expr.Run(f.prog, whereEnvOf(e, now))
	if err != nil {
		return false
	}
	ok, _ := out.(bool)
	return ok
}

func whereEnvOf(e node.FleetEntry, now time.Time) whereEnv {
	w := whereEnv{Name: e.Name, Address: e.Address, Tags: e.Tags, Status: e.Status, Epoch: e.Epoch,
		Stale: e.Stale, Pending: e.Pending, ChecksFailing: e.ChecksFailing, ReportEvery: e.ReportEvery, DiskFreePct: e.DiskFreePct, MemFreePct: e.MemFreePct}
	if w.Tags == nil {
		w.Tags = []string{}
	}
	if heard := web.LastHeard(e); !heard.IsZero() {
		d := max(now.Sub(heard), 0)
		w.LastSeen = &d
	}
	if !e.PingAt.IsZero() {
		rt := e.RoundTrip
		w.RoundTrip = &rt
	}
	if si := e.SysInfo; si != nil {
		w.Hostname, w.OS, w.Kernel, w.Arch, w.Version, w.GoVersion = si.Hostname, si.OS, si.Kernel, si.Arch, si.Version, si.GoVersion
		up := si.Uptime
		w.Uptime = &up
		num := func(v float64) *float64 { return &v }
		w.Load1, w.Load5, w.Load15 = num(si.Load1), num(si.Load5), num(si.Load15)
		w.MemTotal, w.MemAvailable, w.NumCPU = num(float64(si.MemTotal)), num(float64(si.MemAvailable)), num(float64(si.NumCPU))
	}
	return w
}

// rewriteWhere turns the spellings expr lacks (=~, !~, duration literals) into expr's, outside
// string literals and comments. origin[i] is the rune offset in src that the i-th rune of the
// result came from (inserted text points at the token it replaces); it has one more entry, for
// the end.
func rewriteWhere(src string) (string, []int) {
	in := []rune(src)
	var out []rune
	var origin []int
	emit := func(s string, from int) {
		for _, r := range s {
			out = append(out, r)
			origin = append(origin, from)
		}
	}
	copyRange := func(from, to int) {
		for i := from; i < to; i++ {
			out = append(out, in[i])
			origin = append(origin, i)
		}
	}
	i := 0
	for i < len(in) {
		c := in[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j := skipString(in, i)
			copyRange(i, j)
			i = j
		case c == '/' && i+1 < len(in) && in[i+1] == '/':
			j := i
			for j < len(in) && in[j] != '\n' {
				j++
			}
			copyRange(i, j)
			i = j
		case c == '/' && i+1 < len(in) && in[i+1] == '*':
			j := i + 2
			for j < len(in) && !(in[j] == '*' && j+1 < len(in) && in[j+1] == '/') {
				j++
			}
			j = min(j+2, len(in))
			copyRange(i, j)
			i = j
		case (c == '=' || c == '!' || c == '<' || c == '>') && i+1 < len(in) && in[i+1] == '=':
			copyRange(i, i+2) // ==, !=, <=, >=: never the start of =~
			i += 2
		case c == '=' && i+1 < len(in) && in[i+1] == '~':
			emit(" matches ", i)
			i += 2
		case c == '!' && i+1 < len(in) && in[i+1] == '~':
			emit(" not matches ", i)
			i += 2
		case isDigit(c) && (i == 0 || !isIdent(in[i-1]) && in[i-1] != '.'):
			j, d, ok := durationLiteral(in, i)
			if ok {
				emit(fmt.Sprintf("duration(%q)", d.String()), i)
			} else {
				copyRange(i, j)
			}
			i = j
		case isIdent(c):
			j := i
			for j < len(in) && isIdent(in[j]) {
				j++
			}
			copyRange(i, j)
			i = j
		default:
			copyRange(i, i+1)
			i++
		}
	}
	origin = append(origin, len(in))
	return string(out), origin
}

// skipString returns the offset just past the string literal that starts at in[i] (or the end,
// for one never closed: expr reports that).
func skipString(in []rune, i int) int {
	q := in[i]
	j := i + 1
	for j < len(in) {
		switch {
		case in[j] == '\\' && q != '`':
			j += 2
		case in[j] == q:
			return j + 1
		default:
			j++
		}
	}
	return len(in)
}

// durationLiteral reads the number at in[i] and, when units follow it as in 2h, 1h30m, 500ms or
// 7d, returns the end of the literal and its value. Otherwise ok is false and end is the end of
// the number (with what follows it that expr reads as part of it: a fraction, an exponent,
// digits in another base, underscores).
func durationLiteral(in []rune, i int) (end int, d time.Duration, ok bool) {
	j := i
	var total float64
	for {
		k := j
		for k < len(in) && (isDigit(in[k]) || in[k] == '.') {
			k++
		}
		if k == j {
			break
		}
		num := string(in[j:k])
		u := k
		for u < len(in) && isLetter(in[u]) {
			u++
		}
		unit, known := durationUnits[string(in[k:u])]
		var v float64
		if _, err := fmt.Sscanf(num, "%g", &v); err != nil || !known || strings.Count(num, ".") > 1 {
			if j == i { // not a duration: a number, perhaps with an exponent or a base prefix
				for k < len(in) && (isIdent(in[k]) || in[k] == '.' && k+1 < len(in) && isDigit(in[k+1])) {
					k++
				}
				return k, 0, false
			}
			return j, 0, false // 1h then something else: let expr say what is wrong after 1h
		}
		total += v * float64(unit)
		j = u
		if j >= len(in) || !isDigit(in[j]) {
			break
		}
	}
	if j < len(in) && (isIdent(in[j]) || in[j] == '.') {
		return j, 0, false
	}
	if total > math.MaxInt64 || total < 0 {
		return j, 0, false
	}
	return j, time.Duration(total), true
}

var durationUnits = map[string]time.Duration{
	"ns": time.Nanosecond, "us": time.Microsecond, "µs": time.Microsecond, "ms": time.Millisecond,
	"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour,
}

func isDigit(r rune) bool  { return r >= '0' && r <= '9' }
func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == 'µ' }
func isIdent(r rune) bool  { return isLetter(r) || isDigit(r) || r == '_' || r == '$' }
