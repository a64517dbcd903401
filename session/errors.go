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

// Rejection reports whether err from Receive is the protocol refusing the package (the mail's
// fault: log it and move it aside) rather than trouble with the caller's Store, and whether that
// refusal keeps its state change (ErrPairingCode, ErrHandshakeAborted), so the caller commits.
func Rejection(err error) (rejected, keepState bool) {
	switch {
	case errors.Is(err, ErrPairingCode), errors.Is(err, ErrHandshakeAborted):
		return true, true
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrNotForUs), errors.Is(err, ErrUnknownPeer),
		errors.Is(err, ErrUnknownSession), errors.Is(err, ErrUnknownEpoch), errors.Is(err, ErrAuth),
		errors.Is(err, ErrReplay), errors.Is(err, ErrExpired), errors.Is(err, ErrClock):
		return true, false
	}
	return false, false
}
