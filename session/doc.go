// Package session is sealpost's protocol: the envelope codec, pairing, the RSA + ML-KEM
// handshake, epochs rotated after every response, sealing and opening, the replay window and the
// exactly-once rules of the command ledger. It is pure: no I/O, no goroutines, no global state.
// The clock and randomness come in through Config, and all state lives in a Store the caller
// provides, usually one bbolt transaction, so that everything one package changes commits at once.
//
// # Imports
//
// The standard library and golang.org/x/crypto only. It must not import compress, mailbox,
// commands, keystore or node; a test in the module root enforces it. Payloads are opaque here:
// the caller compresses before Send and decompresses after Receive.
//
// # Invariants
//
//   - Parse accepts only canonical version-1 bytes: Marshal(Parse(b)) == b.
//   - Every error Receive returns is a rejection of the package (Rejection) unless it wraps
//     ErrLocal: the Store's own failures (guard.go wraps each Store call once) and randomness.
//     A Store says a record derived from the package is refused for its content by wrapping
//     ErrRefusedRecord. A rejection has changed nothing in the Store (except ErrPairingCode,
//     which spends a pairing attempt, and ErrHandshakeAborted, which deletes the dead
//     Initializing session) and returns no reply. Unknown senders and sessions are rejected
//     before any public-key or AEAD work.
//   - A command id runs at most once per responder and has one fate: the ledger is consulted
//     before any time check, every answer (refusals included) is recorded, duplicates of one
//     transmission get the recorded bytes at most once per ResendInterval, and an entry goes
//     Accepted (waiting, with its payload) -> Executing (Start: handed to its program) -> Done;
//     one left Executing is never run again.
//   - The responder holds its confirmed epoch and at most MaxChildren unconfirmed children; a
//     command under a child deletes every older secret. A full window never refuses a command:
//     the response carries the null share (no child). The initiator keeps one epoch secret.
//   - Secret never prints: String, Format and LogValue redact it.
//
// # Specification
//
// docs/PROTOCOL.md describes every byte and rule this package implements; the two change together.
package session
