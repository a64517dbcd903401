package mailbox

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Message is one received mail that carries a sealpost package.
type Message struct {
	Mailbox     string // IMAP folder it was found in
	UIDValidity uint32
	UID         uint32
	// From is the From header's address (or its raw text when it does not parse), informational
	// only: identity never comes from headers.
	From string
	// To is the first address of the To header ("" when there is none or it does not parse):
	// the address the sender mailed the package to, which a sealpost sender writes as the
	// peer's pinned address. Informational like From (the relay may rewrite it), but it lets
	// the caller tell a package sealed for another node of a shared mailbox, sent to that node's
	// address, from one sent to this node's address (docs/PROTOCOL.md section 17).
	To string
	// Package is the attachment's decoded bytes; nil when Err is set.
	Package []byte
	// Err is set, and Package nil, when the mail says it is sealpost's (X-Sealpost: 1) but cannot
	// be used: too large (not downloaded), malformed MIME, a missing or corrupt attachment. It is a
	// *MailError. The caller logs it and calls Reject, so that the mail is moved aside and not read
	// again forever.
	Err error
}

// Cursor is where a Receive left off in a folder.
type Cursor struct{ UIDValidity, LastUID uint32 }

// Transport moves packages. Delivery is at least once: a message stays in the inbox until Ack or
// Reject, and the caller acknowledges only after it committed its state.
type Transport interface {
	// Send mails pkg to the address as one application/octet-stream base64 attachment. A failure
	// is a *SendError that says whether a retry may succeed.
	Send(ctx context.Context, to string, pkg []byte) error
	// Receive returns the sealpost messages in the inbox with UID > after.LastUID (all of them if
	// after.UIDValidity differs from the folder's current UIDVALIDITY), oldest first, at most max
	// (0 = 100). When there is none, it waits up to wait for one (IDLE where the server has it,
	// else polling) and then returns (nil, cursor, nil); wait 0 does not wait. The wait bounds
	// only the waiting: a command to the server under way when it ends still runs to its answer
	// or to the transport's command timeout, so a silent server is reported as such (ErrTimeout)
	// however short the wait. ctx bounds the whole call; when it ends, Receive returns its error.
	// Mail that is not sealpost's, or is another node's (sent to another address of a shared
	// mailbox, plus.go), is never returned, never flagged, never moved (it is fetched with
	// BODY.PEEK, headers only). The returned Cursor is the folder's UIDVALIDITY and the
	// highest UID looked at (foreign mail included, so it is not re-read). A long run of foreign
	// mail is looked at in slices; when the wait ends among them, Receive returns no messages
	// and the cursor past the slices done (with wait 0 it scans to the end). On error the Cursor
	// is still usable: it is after, or further when mail was looked at before the error.
	Receive(ctx context.Context, after Cursor, wait time.Duration, max int) ([]Message, Cursor, error)
	// Ack moves processed messages to the processed folder (created when missing). They may come
	// from several folders and UIDVALIDITYs: each folder is selected once and its messages are
	// moved together, with one existence check (UID FETCH FLAGS of the set) and one UID MOVE of
	// those still there and not \Deleted where the server has MOVE, else UID COPY + UID STORE
	// \Deleted + UID EXPUNGE of exactly that set (UIDPLUS), never a bare EXPUNGE. A message that
	// is no longer there is not an error (an earlier Ack may have moved it before its answer was
	// lost). A message from an older UIDVALIDITY than its folder's is not moved; the others still
	// are, and Ack then returns an error wrapping ErrStaleMessage that names the stale UIDs. After
	// any other error some of the messages may have been moved: acknowledging them again is
	// harmless. Ack with no messages does nothing and returns nil (it needs no connection).
	Ack(ctx context.Context, ms ...Message) error
	// Reject moves one message to the rejected folder the same way (reason is logged, not written
	// to the mail).
	Reject(ctx context.Context, m Message, reason string) error
	// Prune deletes the mail in the processed folder that arrived before the given time, to the
	// day (IMAP SEARCH BEFORE: by date, in the server's time zone), and returns how many it
	// deleted. Mail that Ack moved there is spent: its state is committed and the ledger answers
	// a copy of it. Prune never touches the inbox, the rejected folder or any other folder; a
	// missing processed folder is created and found empty.
	Prune(ctx context.Context, before time.Time) (int, error)
	// Processed returns the newest n sealpost messages in the processed folder, newest first (by
	// UID), with their packages, at most MaxProcessed of them (n <= 0 returns none and needs no
	// connection). Ack moves mail there only after its state committed, so the folder, which
	// lives on the mail server, witnesses the state: the agent compares these messages with its
	// state at start to detect a host put back from a snapshot (THREATS.md row 31). Processed
	// changes nothing: the folder is opened read-only (EXAMINE) and read with BODY.PEEK, no flag
	// is set, and a missing processed folder is not created; it holds no messages, which is no
	// error. Mail there that is not sealpost's, is another node's, or is flagged \Deleted (Prune
	// cut off before its expunge), is skipped. Messages that cannot be used carry Err as Receive's do; Mailbox is
	// the processed folder as the server spells it. They are for reading only: not to be given
	// to Ack or Reject. Fewer than n come back when the folder holds fewer, or when the newest
	// ones together exceed what one call downloads (the implementation's cap, the newest kept).
	Processed(ctx context.Context, n int) ([]Message, error)
	// Close ends the connections. Calls after Close return ErrClosed (but an Ack of no messages
	// still returns nil).
	Close() error
}

var (
	// ErrClosed is returned by calls on a closed transport.
	ErrClosed = errors.New("mailbox: transport closed")
	// ErrStaleMessage means a Message's UIDVALIDITY is not the folder's any more: its UID may
	// name another mail now, so it is not touched.
	ErrStaleMessage = errors.New("mailbox: message is from an older UIDVALIDITY")
	// ErrTimeout means a mail server did not answer within Config.CommandTimeout; the connection
	// was closed and the next call reconnects.
	ErrTimeout = errors.New("mailbox: mail server did not answer in time")
	// ErrPlaintextCredentials means credentials would have crossed the network unencrypted.
	ErrPlaintextCredentials = errors.New("mailbox: refusing to send credentials without TLS")
	// ErrCertificateUntrusted means the server's TLS certificate does not chain to a trusted CA.
	ErrCertificateUntrusted = errors.New("mailbox: server certificate not trusted")
	// ErrCertificateName means the server's TLS certificate is for another name.
	ErrCertificateName = errors.New("mailbox: server certificate is for another name")
	// ErrConfig wraps every configuration error New returns.
	ErrConfig = errors.New("mailbox: invalid configuration")
)

// SendError is a failed Send. Temporary says whether trying again later may succeed: SMTP 4xx
// replies and network errors are temporary, 5xx replies (for example 552, message too large) and
// errors in the mail itself are not.
type SendError struct {
	Temporary bool
	Code      int // SMTP reply code, 0 when the failure was not a reply
	Err       error
}

func (e *SendError) Error() string {
	kind := "permanent"
	if e.Temporary {
		kind = "temporary"
	}
	if e.Code != 0 {
		return fmt.Sprintf("send mail (%s, SMTP %d): %v", kind, e.Code, e.Err)
	}
	return fmt.Sprintf("send mail (%s): %v", kind, e.Err)
}

func (e *SendError) Unwrap() error { return e.Err }

// Stats counts what a transport has done since New; for tests, metrics and the benchmarks.
type Stats struct {
	Connects     int   // IMAP connections established
	HeaderBytes  int64 // bytes of header fields fetched (every new mail, foreign included; Processed's too)
	BodyBytes    int64 // bytes of whole sealpost mails fetched (by Receive and Processed)
	Sent         int   // mails submitted
	SMTPConnects int   // SMTP connections opened (one serves consecutive mails)
	IdleWakeups  int   // IDLE waits ended by the server's push
	PollWakeups  int   // waits ended by the poll or IDLE re-issue timer
	EagerPolls   int   // NOOPs sent while mail was expected (IMAPSMTP.Expect)
	BadSealpost  int   // X-Sealpost mails returned with Err set
	ForeignSkips int   // mails looked at and left alone
	OthersSkips  int   // sealpost mails sent to another node's address of this mailbox, left alone
}
