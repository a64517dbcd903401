package session

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Fingerprint names a node: the first 16 bytes of SHA-256 over its Ed25519 public key.
type Fingerprint [16]byte

// SessionID names one handshake's session; the initiator picks it at random.
type SessionID [16]byte

// EpochID names one epoch of a session. It is derived from the epoch secret, so it reveals nothing
// about it, and two sibling epochs (children of one parent) have different ids.
type EpochID [16]byte

// CommandID names one command for its whole life: it stays the same across retries and re-handshakes,
// which is what lets the responder's ledger run it exactly once.
type CommandID [16]byte

// Secret is 32 bytes of key material. It redacts itself in logs and fmt output.
type Secret [32]byte

// String renders the fingerprint in groups of four hex digits, the form people compare out of band.
func (f Fingerprint) String() string {
	h := hex.EncodeToString(f[:])
	var b strings.Builder
	for i := 0; i < len(h); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(h[i : i+4])
	}
	return b.String()
}

// IsZero reports whether f is all zero bytes (an unset field).
func (f Fingerprint) IsZero() bool { return f == Fingerprint{} }

// ErrBadFingerprint is returned by ParseFingerprint for anything but 32 hex digits.
var ErrBadFingerprint = errors.New("fingerprint must be 32 hex digits (separators '-', ':' and spaces are ignored)")

// ParseFingerprint accepts the String form, or the 32 hex digits with any of '-', ':' or spaces between them.
func ParseFingerprint(s string) (Fingerprint, error) {
	var f Fingerprint
	clean := strings.Map(func(r rune) rune {
		switch r {
		case '-', ':', ' ':
			return -1
		}
		return r
	}, s)
	if len(clean) != 32 {
		return f, ErrBadFingerprint
	}
	if _, err := hex.Decode(f[:], []byte(strings.ToLower(clean))); err != nil {
		return Fingerprint{}, ErrBadFingerprint
	}
	return f, nil
}

func (s SessionID) String() string { return hex.EncodeToString(s[:]) }
func (e EpochID) String() string   { return hex.EncodeToString(e[:]) }
func (c CommandID) String() string { return hex.EncodeToString(c[:]) }

// IsZero reports whether c is unset.
func (c CommandID) IsZero() bool { return c == CommandID{} }

// ParseCommandID parses the 32-hex-digit form printed by String.
func ParseCommandID(s string) (CommandID, error) {
	var c CommandID
	if len(s) != 32 {
		return c, fmt.Errorf("command id %q: want 32 hex digits", s)
	}
	if _, err := hex.Decode(c[:], []byte(s)); err != nil {
		return CommandID{}, fmt.Errorf("command id %q: want 32 hex digits", s)
	}
	return c, nil
}

// String never shows key material.
func (Secret) String() string { return "[secret]" }

// GoString keeps %#v from printing key material.
func (Secret) GoString() string { return "[secret]" }

// LogValue keeps slog from printing key material.
func (Secret) LogValue() slog.Value { return slog.StringValue("[secret]") }

// Format keeps every fmt verb (%x included) from printing key material.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[secret]")) }

func marshalHex(b []byte) ([]byte, error) { return []byte(hex.EncodeToString(b)), nil }

func unmarshalHex(dst, text []byte) error {
	if hex.DecodedLen(len(text)) != len(dst) {
		return parseErr("id", "stored id %q has the wrong length", text)
	}
	_, err := hex.Decode(dst, text)
	return err
}

// MarshalText stores ids as hex (also usable as JSON object keys).
func (f Fingerprint) MarshalText() ([]byte, error)  { return marshalHex(f[:]) }
func (f *Fingerprint) UnmarshalText(b []byte) error { return unmarshalHex(f[:], b) }
func (s SessionID) MarshalText() ([]byte, error)    { return marshalHex(s[:]) }
func (s *SessionID) UnmarshalText(b []byte) error   { return unmarshalHex(s[:], b) }
func (e EpochID) MarshalText() ([]byte, error)      { return marshalHex(e[:]) }
func (e *EpochID) UnmarshalText(b []byte) error     { return unmarshalHex(e[:], b) }
func (c CommandID) MarshalText() ([]byte, error)    { return marshalHex(c[:]) }
func (c *CommandID) UnmarshalText(b []byte) error   { return unmarshalHex(c[:], b) }
