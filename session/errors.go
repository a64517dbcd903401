package session

import (
	"errors"
	"fmt"
)

// Reasons a received package is rejected. Receive wraps exactly one of them, so callers branch
// with errors.Is and never read messages. A rejected package changes no state (the one exception,
// documented at ErrPairingCode, is the pairing attempt counter) and gets no reply.
var (
	// ErrMalformed: the bytes are not a canonical version-1 package (Parse's *ParseError unwraps to it),
	// or an authenticated body does not decode.
	ErrMalformed = errors.New("malformed package")
	// ErrNotForUs: the recipient fingerprint is not this node's.
	ErrNotForUs = errors.New("package addressed to another node")
	// ErrUnknownPeer: the sender is not a pinned peer (or, for PAIR, no pairing is armed for it).
	ErrUnknownPeer = errors.New("sender is not a known peer")
	// ErrUnknownSession: no session with that id and role exists for that peer.
	ErrUnknownSession = errors.New("unknown or superseded session")
	// ErrUnknownEpoch: the session has no such epoch (it moved on, or never had it).
	ErrUnknownEpoch = errors.New("unknown or superseded epoch")
	// ErrUnknownStream: a CHUNK for a command whose stream this node does not hold (never had,
	// or already finished and forgot).
	ErrUnknownStream = errors.New("chunk of a stream this node does not hold")
	// ErrAuth: a signature, MAC, AEAD tag or key confirmation did not verify.
	ErrAuth = errors.New("authentication failed")
	// ErrReplay: the sequence number is below the replay window, or was seen and has no cached answer,
	// or a response arrived for no pending command.
	ErrReplay = errors.New("replayed or stale package")
	// ErrExpired: a handshake package past its not-after, or a duplicate of an expired command.
	ErrExpired = errors.New("package expired")
	// ErrPairingCode: a PAIR package's code MAC or fingerprint did not match. Unlike every other
	// rejection this one changes state: it uses up one of the pairing's attempts.
	ErrPairingCode = errors.New("pairing code or fingerprint does not match")
	// ErrHandshakeAborted: an authentic INIT_RESP could not be completed; the Initializing session
	// was deleted and the old session, if any, is untouched.
	ErrHandshakeAborted = errors.New("handshake aborted")
)

// Errors returned to callers of the sending side.
var (
	// ErrNoSession: no Confirmed session to the peer; start a handshake first.
	ErrNoSession = errors.New("no confirmed session with peer")
	// ErrTooLarge: a payload above MaxPayload.
	ErrTooLarge = errors.New("payload too large")
	// ErrTTL: a requested lifetime that is not positive or above the TTL cap.
	ErrTTL = errors.New("command lifetime out of range")
)

// ParseError is the one error type of Parse and of the body decoders. Field names the part of the
// package that failed, for logs; it unwraps to ErrMalformed.
type ParseError struct {
	Field string
	Msg   string
}

func (e *ParseError) Error() string { return "parse package: " + e.Msg }

// Unwrap makes errors.Is(err, ErrMalformed) hold.
func (e *ParseError) Unwrap() error { return ErrMalformed }

func parseErr(field, format string, args ...any) error {
	return &ParseError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// ErrLocal marks trouble of the receiving node's own: its Store failed (I/O, a store that refuses
// writes) or it could not read randomness. Nothing about the package is known to be wrong, so the
// caller keeps the mail and reads it again later. Every error Receive returns that does not wrap
// ErrLocal is the package's fault.
var ErrLocal = errors.New("local trouble")

// ErrRefusedRecord is what a Store returns (wrapped) when it refuses a record derived from a
// package as invalid or conflicting: the package's content is at fault, not the store, so Receive
// reports a rejection. A Store wraps it only around refusals caused by the values it was given,
// never around I/O or damage of its own.
var ErrRefusedRecord = errors.New("the state store refuses a record derived from the package")

// LocalError wraps an error of the node's own (a Store call or reading randomness) on its way out
// of Receive. It unwraps to ErrLocal and to the cause.
type LocalError struct {
	Op  string // the Store method or step that failed
	Err error
}

func (e *LocalError) Error() string { return e.Op + ": " + e.Err.Error() }

// Unwrap makes errors.Is(err, ErrLocal) hold, and keeps the cause reachable.
func (e *LocalError) Unwrap() []error { return []error{ErrLocal, e.Err} }

// local wraps a non-nil err of the node's own, unless the Store said the package is at fault.
func local(op string, err error) error {
	if err == nil || errors.Is(err, ErrRefusedRecord) || errors.Is(err, ErrLocal) {
		return err
	}
	return &LocalError{Op: op, Err: err}
}

// Rejection reports whether err from Receive is the protocol refusing the package (the mail's
// fault: log it and move it aside) rather than trouble of the node's own, and whether that
// refusal keeps its state change (ErrPairingCode, ErrHandshakeAborted), so the caller commits.
//
// It is an inversion on purpose: every error is a rejection except those wrapping ErrLocal, which
// Receive puts on every Store failure and on a failure to read randomness. A new check added to
// the engine therefore rejects the mail by default; only the node's own trouble may hold up the
// inbox (THREATS row 30).
func Rejection(err error) (rejected, keepState bool) {
	switch {
	case err == nil, errors.Is(err, ErrLocal):
		return false, false
	case errors.Is(err, ErrPairingCode), errors.Is(err, ErrHandshakeAborted):
		return true, true
	}
	return true, false
}
