package node

import (
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sealpost/sealpost/session"
)

// Event is one thing a node did, for people to read (the demo's transcript, `agent -v`).
type Event struct {
	Time    time.Time
	Kind    EventKind
	Peer    string // the peer's local name, or its address when not pinned yet
	Package string // package type, for sent/received
	Bytes   int    // package size
	Command session.CommandID
	Status  string // session status, result status
	Epoch   uint64
	Detail  string
}

// EventKind names an event.
type EventKind string

const (
	EventSent     EventKind = "sent"
	EventReceived EventKind = "received"
	EventRejected EventKind = "rejected"
	EventPaired   EventKind = "paired"
	EventSession  EventKind = "session"
	EventExecuted EventKind = "executed"
	EventDenied   EventKind = "denied"
	EventResult   EventKind = "result"
)

// emit hands e to Options.Events, one event at a time (commands run concurrently), with the text
// made printable: the peer of an unauthenticated mail is its From header, and details may quote
// what a mail said (THREATS row 41).
func (n *Node) emit(e Event) {
	if n.opts.Events == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = n.now()
	}
	e.Peer, e.Status, e.Detail = Printable(e.Peer), Printable(e.Status), Printable(e.Detail)
	n.emitMu.Lock()
	defer n.emitMu.Unlock()
	n.opts.Events(e)
}

// packageType reads the type byte of a package for events without parsing it.
func packageType(pkg []byte) string {
	if len(pkg) < 6 {
		return "?"
	}
	return session.Type(pkg[5]).String()
}

// Printable escapes what a terminal or a log reader would act on (control characters, escape
// sequences, C1 controls like CSI, invalid UTF-8, bidirectional overrides) the way Go quotes them
// (\x1b, \n, \u202e), so that text that came from mail (a forged header) cannot rewrite an
// operator's screen (THREATS row 41). Plain text, non-ASCII letters and spaces included, passes
// unchanged, and so does what Printable returned: the test is unicode.IsGraphic, the same that
// strconv.QuoteToGraphic escapes by. The CLI's log handler escapes every logged string with it.
func Printable(s string) string {
	clean := utf8.ValidString(s)
	for _, r := range s {
		if !clean || !unicode.IsGraphic(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	q = q[1 : len(q)-1]
	return strings.ReplaceAll(q, `\"`, `"`)
}
