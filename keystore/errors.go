package keystore

import (
	"errors"
	"fmt"
	"time"
)

// Sentinels callers test with errors.Is. Every error keystore returns for a
// refused write wraps exactly one of them, so the protocol code can tell "this
// would break an invariant" from "the disk failed" without parsing strings.
var (
	// ErrConflict: the write would break a uniqueness rule (a fingerprint
	// pinned to another peer, a peer name re-pinned to a different key, an id
	// reused for a different peer).
	ErrConflict = errors.New("keystore: conflict")
	// ErrNotFound: an update or delete named a record that does not exist.
	ErrNotFound = errors.New("keystore: not found")
	// ErrInvalid: a key or record failed validation (empty name, zero id,
	// wrong key length, empty blob). Nothing was written.
	ErrInvalid = errors.New("keystore: invalid")
	// ErrCorrupt: a stored key or value does not have the shape keystore
	// writes. Reads and Check report it; it never comes from caller input.
	ErrCorrupt = errors.New("keystore: corrupt state")
	// ErrSchema: Open found a state file of a schema version this build does
	// not understand (one written by a newer sealpost).
	ErrSchema = errors.New("keystore: unsupported state schema")
	// ErrUnknownRecord: a migration found a record this build has no home for
	// (MigrationError.Key names it). Open refuses the file rather than drop it.
	ErrUnknownRecord = errors.New("keystore: unknown record")
)

// MigrationError is returned by Open when a state file of an older schema
// cannot be migrated: a record that does not decode (Err wraps ErrCorrupt or
// ErrInvalid) or that this build does not know (ErrUnknownRecord). The file is
// left as it was: the migration is one transaction with Open's first commit.
type MigrationError struct {
	From, To uint64 // schema versions
	Bucket   string // where the record is, in the old layout
	Key      string // its key there
	Err      error
}

func (e *MigrationError) Error() string {
	return fmt.Sprintf("keystore: migrate the state from schema %d to %d: %s record %q: %v (nothing was changed; an older sealpost can still read it)",
		e.From, e.To, e.Bucket, e.Key, e.Err)
}

func (e *MigrationError) Unwrap() error { return e.Err }

// InUseError is returned by Open when another process (or another Store in
// this process) holds the database lock for longer than Options.LockTimeout.
type InUseError struct {
	Path string // the state.db path
	PID  int    // holder's PID from state.pid; 0 if unknown
}

func (e *InUseError) Error() string {
	const hint = `(is "sealpost agent" running? stop it or let it do the work)`
	if e.PID == 0 {
		// "PID 0" would send the operator looking for a process that does
		// not exist; say plainly that we could not tell.
		return fmt.Sprintf("state %s is in use by another process %s", e.Path, hint)
	}
	return fmt.Sprintf("state %s is in use by PID %d %s", e.Path, e.PID, hint)
}

// invalidf builds an ErrInvalid-wrapping error.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// conflictf builds an ErrConflict-wrapping error.
func conflictf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrConflict}, args...)...)
}

// notFoundf builds an ErrNotFound-wrapping error.
func notFoundf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotFound}, args...)...)
}

// corruptf builds an ErrCorrupt-wrapping error.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
}

// storedTime checks a time read from a record: the store writes times in UTC, years 0-9999 (what
// JSON can hold), so one that is not, read back, is damage. Without the check such a record would
// read fine and then fail to be written back.
func storedTime(what, field string, t time.Time) error {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return corruptf("%s: %s %s is outside years 0-9999", what, field, t.Format(time.RFC3339))
	}
	return nil
}

// checkTimes refuses a time a record cannot be written back with: JSON (RFC 3339) holds years
// 0-9999 in UTC only. For validate methods, which serve both Put and the decoders.
func checkTimes(what string, ts ...time.Time) error {
	for _, t := range ts {
		if y := t.UTC().Year(); !t.IsZero() && (y < 0 || y > 9999) {
			return invalidf("%s: time %s is outside years 0-9999", what, t.Format(time.RFC3339))
		}
	}
	return nil
}
