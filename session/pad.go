package session

import (
	"encoding/binary"
	"time"
	"unicode/utf8"
)

// Padding buckets (docs/PROTOCOL.md, "Padding"): the plaintext of every sealed body is padded with
// zero bytes to the smallest bucket that holds it, so the relay learns the size class of a command
// and not its length. Buckets are 256 bytes, then every power of two up to 64 KiB, then multiples
// of 16 KiB (at most 1/4 overhead just above 64 KiB, 1/64 at a 1 MiB chunk: a coarser step
// cost a compressed chunk's mail up to a third more).
const (
	minBucket = 256
	powerMax  = 64 << 10 // the largest power-of-two bucket
	bigStep   = 16 << 10 // the step above it
	tagSize   = 16

	shareSize       = 32
	innerHeaderSize = shareSize + 4 // COMMAND and RESPONSE: X25519 share, payload length
	errHeaderSize   = 1 + 8 + 4     // ERROR: code, responder time, detail length
	// MaxErrorDetail caps the human-readable detail of an ERROR package.
	MaxErrorDetail = 1024
)

// bucket returns the padded size for n bytes of plaintext.
func bucket(n int) int {
	if n <= minBucket {
		return minBucket
	}
	if n <= powerMax {
		b := minBucket
		for b < n {
			b <<= 1
		}
		return b
	}
	return (n + bigStep - 1) / bigStep * bigStep
}

func isBucket(n int) bool { return n >= minBucket && bucket(n) == n }

// encodeInner lays out share | len | payload | zeros in a buffer of exactly the bucket size, leaving
// room before it for the header and after it for the tag so sealing needs no further allocation.
func encodeInner(share []byte, payload []byte) (buf []byte, plain []byte) {
	size := bucket(innerHeaderSize + len(payload))
	buf = make([]byte, HeaderSize+size+tagSize)
	plain = buf[HeaderSize : HeaderSize+size]
	copy(plain, share)
	binary.BigEndian.PutUint32(plain[shareSize:], uint32(len(payload)))
	copy(plain[innerHeaderSize:], payload)
	return buf, plain
}

// decodeInner is the body decoder for COMMAND and RESPONSE plaintext.
func decodeInner(plain []byte) (share [32]byte, payload []byte, err error) {
	if len(plain) < innerHeaderSize || !isBucket(len(plain)) {
		return share, nil, parseErr("inner", "sealed body of %d bytes is not a padded size", len(plain))
	}
	n := binary.BigEndian.Uint32(plain[shareSize:])
	if n > MaxPayload || int(n) > len(plain)-innerHeaderSize {
		return share, nil, parseErr("inner", "payload length %d does not fit the %d-byte body", n, len(plain))
	}
	if bucket(innerHeaderSize+int(n)) != len(plain) {
		return share, nil, parseErr("inner", "body padded to %d bytes, want %d", len(plain), bucket(innerHeaderSize+int(n)))
	}
	if !allZero(plain[innerHeaderSize+int(n):]) {
		return share, nil, parseErr("inner", "padding is not zero")
	}
	copy(share[:], plain[:shareSize])
	return share, plain[innerHeaderSize : innerHeaderSize+int(n)], nil
}

// ErrorCode says why a responder answered with an ERROR package.
type ErrorCode uint8

// Error codes; the numbering is part of the wire format.
const (
	CodeDenied         ErrorCode = 1 // the peer's policy does not allow the command
	CodeExpired        ErrorCode = 2 // past not-after, or a lifetime above the cap
	CodeClock          ErrorCode = 3 // created-at beyond the allowed skew; Time carries the responder's clock
	CodeRekey          ErrorCode = 4 // the responder wants a new handshake; the command was not run
	CodeOutcomeUnknown ErrorCode = 5 // the command may or may not have run (crash, restored state); it will not run again
	CodeBadCommand     ErrorCode = 6 // the payload was authentic but the responder could not decode it
)

func (c ErrorCode) String() string {
	switch c {
	case CodeDenied:
		return "denied"
	case CodeExpired:
		return "expired"
	case CodeClock:
		return "clock"
	case CodeRekey:
		return "rekey"
	case CodeOutcomeUnknown:
		return "outcome-unknown"
	case CodeBadCommand:
		return "bad-command"
	}
	return "unknown"
}

// RemoteError is the content of an authenticated ERROR package.
type RemoteError struct {
	Code   ErrorCode
	Time   time.Time // the responder's clock when it wrote the error
	Detail string
}

func (e *RemoteError) Error() string {
	s := "peer answered " + e.Code.String()
	if e.Code == CodeClock {
		s += " (its clock reads " + e.Time.UTC().Format(time.RFC3339) + ")"
	}
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func encodeError(e *RemoteError) (buf []byte, plain []byte) {
	detail := e.Detail
	if len(detail) > MaxErrorDetail {
		// Cut at a character boundary: the detail is UTF-8 on the wire.
		cut := MaxErrorDetail
		for cut > 0 && !utf8.RuneStart(detail[cut]) {
			cut--
		}
		detail = detail[:cut]
	}
	size := bucket(errHeaderSize + len(detail))
	buf = make([]byte, HeaderSize+size+tagSize)
	plain = buf[HeaderSize : HeaderSize+size]
	plain[0] = byte(e.Code)
	binary.BigEndian.PutUint64(plain[1:], uint64(e.Time.UnixMilli()))
	binary.BigEndian.PutUint32(plain[9:], uint32(len(detail)))
	copy(plain[errHeaderSize:], detail)
	return buf, plain
}

// decodeError is the body decoder for ERROR plaintext.
func decodeError(plain []byte) (*RemoteError, error) {
	if len(plain) < errHeaderSize || !isBucket(len(plain)) {
		return nil, parseErr("error", "error body of %d bytes is not a padded size", len(plain))
	}
	code := ErrorCode(plain[0])
	if code < CodeDenied || code > CodeBadCommand {
		return nil, parseErr("error", "unknown error code %d", plain[0])
	}
	ms := int64(binary.BigEndian.Uint64(plain[1:]))
	n := binary.BigEndian.Uint32(plain[9:])
	if n > MaxErrorDetail || bucket(errHeaderSize+int(n)) != len(plain) {
		return nil, parseErr("error", "detail length %d does not match the %d-byte body", n, len(plain))
	}
	if !allZero(plain[errHeaderSize+int(n):]) {
		return nil, parseErr("error", "padding is not zero")
	}
	return &RemoteError{Code: code, Time: time.UnixMilli(ms), Detail: string(plain[errHeaderSize : errHeaderSize+int(n)])}, nil
}

func allZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}
