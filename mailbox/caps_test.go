package mailbox

import (
	"strconv"
	"strings"
	"testing"
)

// Small caps, so that the cases stay readable.
const (
	tLine, tSearch, tLit = 64, 256, 100
	tSMTPLine, tReply    = 20, 64
)

func testIMAPFramer() framer { return &imapFramer{line: tLine, search: tSearch, literal: tLit} }
func testSMTPFramer() framer { return &smtpFramer{line: tSMTPLine, reply: tReply} }

// feed gives in to f in chunks of size chunk (0: all at once) and returns how many bytes were
// accepted and the error.
func feed(f framer, in string, chunk int) (int, *TooLongError) {
	p := []byte(in)
	if chunk <= 0 {
		chunk = len(p)
	}
	done := 0
	for done < len(p) {
		end := min(done+chunk, len(p))
		n, err := f.scan(p[done:end])
		if err != nil {
			return done + n, err
		}
		if n != end-done {
			panic("scan accepted part of a chunk without an error")
		}
		done = end
	}
	return done, nil
}

type framerCase struct {
	name string
	in   string
	// want: no error (what == ""), or that error at byte at.
	what string
	cap  int64
	size int64
	at   int
}

// nums is " from from+step ... to".
func nums(from, to, step int) string {
	var b strings.Builder
	for i := from; step > 0 && i <= to || step < 0 && i >= to; i += step {
		b.WriteString(" " + strconv.Itoa(i))
	}
	return b.String()
}

var imapFramerCases = []framerCase{
	{name: "short responses", in: "* OK hello\r\n* CAPABILITY IMAP4rev1 IDLE\r\nT1 OK done\r\n"},
	{name: "many lines, each within the cap", in: strings.Repeat("* OK "+strings.Repeat("a", 50)+"\r\n", 100)},
	{name: "line at the cap", in: "* OK " + strings.Repeat("a", tLine-7) + "\r\n"},
	{name: "line one past the cap", in: "* OK " + strings.Repeat("a", tLine-6) + "\r\n", what: "response", cap: tLine, at: tLine},
	{name: "endless line", in: "* OK " + strings.Repeat("A", 1000), what: "response", cap: tLine, at: tLine},
	{name: "endless tagged line", in: "T1 OK " + strings.Repeat("A", 1000), what: "response", cap: tLine, at: tLine},
	{name: "lone LF ends a line", in: strings.Repeat("* OK "+strings.Repeat("a", 50)+"\n", 10)},
	{name: "CR alone does not", in: "* OK " + strings.Repeat("a\r", 100), what: "response", cap: tLine, at: tLine},

	{name: "FETCH literal within the cap, not looked at", in: "* 1 FETCH (UID 7 BODY[] {90}\r\n" + strings.Repeat("\n{9}\r\n\"", 15) + ")\r\n* OK next\r\n"},
	{name: "FETCH literal at the cap", in: "* 1 FETCH (BODY[] {100}\r\n" + strings.Repeat("x", 100) + ")\r\n"},
	// A FETCH literal over its cap: the announcement passes (the fetch learns which mail it is),
	// its first byte does not.
	{name: "FETCH literal over the cap", in: "* 1 FETCH (BODY[] {101}\r\n" + strings.Repeat("x", 101) + ")\r\n", what: "literal", cap: tLit, size: 101, at: 25},
	{name: "FETCH literal of 4 GB", in: "* 1 FETCH (BODY[] {4000000000}\r\nxxxx", what: "literal", cap: tLit, size: 4000000000, at: 32},
	{name: "absurd literal size", in: "* 1 FETCH (BODY[] {99999999999999999999999999}\r\nx", what: "literal", cap: tLit, size: maxAnnounced, at: 48},
	{name: "FETCH literal over the cap, announced last", in: "* 1 FETCH (UID 7 BODY[] {101}\r\n"},
	{name: "FETCH literals add up", in: "* 1 FETCH (BODY[1] {60}\r\n" + strings.Repeat("x", 60) + " BODY[2] {60}\r\n" + strings.Repeat("x", 60) + ")\r\n", what: "literal", cap: tLit, size: 60, at: 100},
	{name: "literals reset per response", in: strings.Repeat("* 1 FETCH (BODY[] {60}\r\n"+strings.Repeat("x", 60)+")\r\n", 5)},
	{name: "after a literal the response goes on", in: "* 1 FETCH (BODY[] {3}\r\nabc" + strings.Repeat(" A", 100), what: "response", cap: tLine, at: tLine + 3},
	{name: "lowercase fetch", in: "* 2 fetch (BODY[] {90}\r\n" + strings.Repeat("x", 90) + ")\r\n"},

	{name: "literal in another response counts as line", in: "* LIST () \"/\" {10}\r\n0123456789\r\n"},
	{name: "literal in another response over the line cap", in: "* LIST () \"/\" {70}\r\n" + strings.Repeat("x", 70) + "\r\n", what: "literal", cap: tLine, size: 70, at: 19},
	{name: "announcement variants: SP CR LF", in: "* LIST () \"/\" {3} \r\nabc\r\n* LIST () \"/\" {3}\nabc\r\n* LIST () \"/\" {3} \nabc\r\n"},
	{name: "announcement with +", in: "* LIST () \"/\" {3+}\r\n\r\n\r\n\r\n"},
	{name: "not an announcement: CR SP", in: "* LIST () \"/\" {70}\r \n* OK\r\n"},
	{name: "not an announcement: no digits", in: "* LIST () \"/\" {}\r\n* OK\r\n"},

	{name: "no literal in a status response", in: "* OK {300}\r\n* OK fine\r\nT1 NO {300}\r\n+ {300}\r\n"},
	{name: "quotes do not matter in a status response", in: strings.Repeat("* OK say \"hi\r\n", 10)},
	{name: "quoted line breaks go on in a data response", in: "* LIST () \"/\" \"" + strings.Repeat("A\r\n", 30), what: "response", cap: tLine, at: tLine},
	{name: "a closed quote ends a data line", in: strings.Repeat("* LIST () \"/\" \"a\\\"b\"\r\n", 10)},
	{name: "escaped quote does not close", in: "* LIST () \"/\" \"a\\\"\r\n" + strings.Repeat("A\r\n", 30), what: "response", cap: tLine, at: tLine},
	{name: "no literal inside quotes", in: "* LIST () \"/\" \"{200}\r\n\"\r\n"},
	{name: "response code runs to ]", in: "* OK [X-UNKNOWN a\r\n" + strings.Repeat("b\r\n", 30), what: "response", cap: tLine, at: tLine},
	{name: "response code closed", in: "* OK [X-UNKNOWN a\r\nb]\r\n" + strings.Repeat("* OK [ALERT] hi\r\n", 10)},
	{name: "tagged response code runs to ]", in: "T12 NO [X a\r\n" + strings.Repeat("b\r\n", 30), what: "response", cap: tLine, at: tLine},
	{name: "bracket later in the text is text", in: strings.Repeat("* OK see [x\r\n", 10)},

	{name: "search within the search cap", in: "* SEARCH" + nums(1, 60, 1) + "\r\n"},
	{name: "esearch within the search cap", in: "* ESEARCH (TAG \"T1\") UID ALL" + strings.Replace(nums(1, 50, 2), " ", ",", -1)[1:] + "\r\n"},
	{name: "search past the search cap", in: "* SEARCH" + nums(1, 100, 1) + "\r\n", what: "response", cap: tSearch, at: tSearch},
	{name: "search descending past the line cap", in: "* SEARCH" + nums(60, 1, -1) + "\r\n", what: "response", cap: tLine, at: 65},
	{name: "search with letters past the line cap", in: "* SEARCH" + nums(1, 30, 1) + " A" + nums(31, 40, 1) + "\r\n", what: "response", cap: tLine, at: 90},
	{name: "descending numbers before the line cap are fine", in: "* SEARCH 9 8 7 6" + nums(10, 40, 1) + "\r\n"},
	{name: "other data responses do not get the search cap", in: "* SORT" + nums(1, 60, 1) + "\r\n", what: "response", cap: tLine, at: tLine},
}

var smtpFramerCases = []framerCase{
	{name: "one line", in: "220 hello\r\n250 ok\r\n"},
	{name: "multi-line within the cap", in: "250-a\r\n250-b\r\n250 c\r\n"},
	{name: "line at the cap", in: "220 " + strings.Repeat("a", tSMTPLine-6) + "\r\n"},
	{name: "line past the cap", in: "220 " + strings.Repeat("a", tSMTPLine-5) + "\r\n", what: "reply line", cap: tSMTPLine, at: tSMTPLine},
	{name: "endless line", in: "220 " + strings.Repeat("A", 500), what: "reply line", cap: tSMTPLine, at: tSMTPLine},
	{name: "endless multi-line reply", in: strings.Repeat("220-x\r\n", 100), what: "reply", cap: tReply, at: tReply},
	{name: "many replies, each within the cap", in: strings.Repeat("250-x\r\n250 y\r\n", 100)},
	{name: "another code does not end a reply", in: "250-a\r\n" + strings.Repeat("251 b\r\n", 20), what: "reply", cap: tReply, at: tReply},
	{name: "a malformed line does not end a reply", in: "250-a\r\n" + strings.Repeat("250\r\n", 20), what: "reply", cap: tReply, at: tReply},
	{name: "an invalid code never ends a reply", in: "abc-a\r\n" + strings.Repeat("abc b\r\n", 20), what: "reply", cap: tReply, at: tReply},
	{name: "code below 100 never ends a reply", in: "099-a\r\n" + strings.Repeat("099 b\r\n", 20), what: "reply", cap: tReply, at: tReply},
	{name: "a malformed first line is a reply", in: strings.Repeat("22\r\n", 40) + strings.Repeat("250\r\n", 40) + strings.Repeat("abc x\r\n", 40)},
	{name: "lone LF", in: strings.Repeat("250-x\n250 y\n", 40)},
}

func TestIMAPFramer(t *testing.T) { testFramer(t, imapFramerCases, testIMAPFramer) }
func TestSMTPFramer(t *testing.T) { testFramer(t, smtpFramerCases, testSMTPFramer) }

func testFramer(t *testing.T, cases []framerCase, newF func() framer) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, chunk := range []int{0, 1, 7} {
				n, err := feed(newF(), tc.in, chunk)
				if tc.what == "" {
					if err != nil || n != len(tc.in) {
						t.Fatalf("scan(%q) in chunks of %d = %d, %+v; want all %d bytes", tc.in, chunk, n, err, len(tc.in))
					}
					continue
				}
				if err == nil || err.What != tc.what || err.Cap != tc.cap || err.Size != tc.size || n != tc.at {
					t.Fatalf("scan(%q) in chunks of %d = %d, %+v; want %d, %s cap %d size %d", tc.in, chunk, n, err, tc.at, tc.what, tc.cap, tc.size)
				}
			}
		})
	}
}

// FuzzIMAPFramer and FuzzSMTPFramer: the framers parse untrusted bytes. No panic; the result
// does not depend on how the stream is split into reads; an error stops at a byte of the input
// and names one of the caps.
func FuzzIMAPFramer(f *testing.F) { fuzzFramer(f, imapFramerCases, testIMAPFramer) }
func FuzzSMTPFramer(f *testing.F) { fuzzFramer(f, smtpFramerCases, testSMTPFramer) }

func fuzzFramer(f *testing.F, cases []framerCase, newF func() framer) {
	for _, tc := range cases {
		f.Add([]byte(tc.in), uint8(3))
	}
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		n0, err0 := feed(newF(), string(in), 0)
		n1, err1 := feed(newF(), string(in), int(chunk%16)+1)
		if n0 != n1 || (err0 == nil) != (err1 == nil) || err0 != nil && *err0 != *err1 {
			t.Fatalf("whole: %d, %+v; in chunks of %d: %d, %+v", n0, err0, chunk%16+1, n1, err1)
		}
		if err0 == nil {
			if n0 != len(in) {
				t.Fatalf("no error but %d of %d bytes accepted", n0, len(in))
			}
			return
		}
		if n0 >= len(in) {
			t.Fatalf("error %+v at %d, past the input (%d bytes)", err0, n0, len(in))
		}
		switch err0.Cap {
		case tLine, tSearch, tLit, tSMTPLine: // tReply == tLine
		default:
			t.Fatalf("error %+v names no cap", err0)
		}
	})
}
