package compress

import (
	"errors"
	"fmt"
)

// The sentinels are the stable part of every error this package returns:
// callers and tests compare with errors.Is, never with message text, so the
// details in (*Error).Detail are free to change.
var (
	// ErrTruncated: the frame is shorter than its header, or the xz stream
	// ends before its footer.
	ErrTruncated = errors.New("compress: frame truncated")
	// ErrCodec: the first byte names no codec this package knows.
	ErrCodec = errors.New("compress: unknown codec")
	// ErrTooLarge: the plain length is above the caller's cap or MaxPlain.
	ErrTooLarge = errors.New("compress: plain length above limit")
	// ErrDictionary: the xz stream declares a dictionary above what the
	// frame may use, or a filter chain or stream shape outside the one
	// profile Encode produces.
	ErrDictionary = errors.New("compress: xz dictionary or filter chain not allowed")
	// ErrLength: the data holds a different number of plain bytes than the
	// header declares.
	ErrLength = errors.New("compress: plain length differs from declared length")
	// ErrTrailing: bytes follow the single xz stream (stream padding and
	// concatenated streams included).
	ErrTrailing = errors.New("compress: bytes after the xz stream")
	// ErrCorrupt: anything else wrong with the xz stream.
	ErrCorrupt = errors.New("compress: corrupt xz stream")
)

// Error is the only error type this package returns. Err is always one of the
// sentinels above; Detail says where and why, for logs.
type Error struct {
	Err    error
	Detail string

	panicked bool // the xz library panicked; lets the fuzz tests fail on it
}

func (e *Error) Error() string {
	msg := "compress: error"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// fail builds an *Error; it returns the error interface so that call sites
// can never leak a typed nil.
func fail(kind error, format string, args ...any) error {
	return &Error{Err: kind, Detail: fmt.Sprintf(format, args...)}
}
