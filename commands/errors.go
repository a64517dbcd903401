package commands

import "errors"

// The sentinels a caller branches on (errors.Is); the messages around them are for people and
// may change.
var (
	// ErrDenied: the peer's policy does not allow the request (a program outside its allowlist,
	// a relative or ambiguous program name, malformed arguments). Nothing was executed. The
	// protocol answers it with the authenticated "denied" error.
	ErrDenied = errors.New("commands: denied")
	// ErrUnknownCommand: the request names no built-in command. The registry is the allowlist
	// of names, so an error wrapping ErrUnknownCommand also wraps ErrDenied.
	ErrUnknownCommand = errors.New("commands: unknown command")
	// ErrNoCgroup: this process cannot make a cgroup v2 per command (not Linux, no cgroup2
	// mount, the hierarchy not writable, a kernel before 5.7). Only ReapCgroup makes it an
	// error, and then no exec program runs.
	ErrNoCgroup = errors.New("commands: no usable cgroup v2")
)

// DecodeError is the only error type DecodeRequest and DecodeResult return (and what
// EncodeRequest and EncodeResult wrap when they refuse a value the decoders would refuse).
// Field names the offending JSON member as a path ("argv[3]", "sysinfo.disks[0].mount"), or
// is empty when the document as a whole is at fault (size, syntax, trailing data).
type DecodeError struct {
	Field string
	Msg   string
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return "commands: decode: " + e.Msg
	}
	return "commands: decode: " + e.Field + ": " + e.Msg
}

// decodeErr builds a *DecodeError; it returns the error interface so that call sites can never
// leak a typed nil.
func decodeErr(field, msg string) error {
	return &DecodeError{Field: field, Msg: msg}
}
