// Package keystore is a sealpost node's persistent state: one bbolt file,
// DIR/state.db, per node. It implements docs/PROTOCOL.md, sections "State" and
// "Restored state".
//
// # Files
//
//	DIR/                     the state directory: ours, 0700 (CheckPrivateDir)
//	DIR/state.db             the bbolt database, 0600
//	DIR/state.gen            the sidecar: the last recorded generation (genfile.go)
//	DIR/state.pid            the PID of the process holding the lock, while it does
//	DIR/*.tmp                a replacement being written (state.gen.tmp, state.pid.tmp)
//	WITNESSDIR/              Options.WitnessDir (DefaultWitnessDir), outside DIR, 0700
//	WITNESSDIR/<id>.gen      the witness: the same record as state.gen, for the store
//	                         whose meta/store_id is <id> (32 hex digits)
//
// The node keeps its control socket in DIR too; it checks it with CheckOwnedFile.
//
// # What it owns and what it does not
//
// The session package owns the encoding of protocol records — session state
// with epoch secrets and replay windows, command ledger entries, pending
// commands, pairing records — and hands keystore opaque byte blobs, which
// keystore stores under typed keys and never decodes. keystore owns the
// records that are not protocol state: the node identity, peers and their key
// pins, the outbox, mailbox cursors, command results and small config values;
// those are stored as JSON, and unknown fields are ignored on read so an
// older build can read what a newer one wrote.
//
// keystore imports only go.etcd.io/bbolt and the standard library. It must
// not import session, compress, mailbox, commands or node: they depend on it.
//
// # Bucket layout
//
// All integers are big-endian; ids (session ids, peer fingerprints, command
// ids) are 16 raw bytes and never all zero; "T" is a 12-byte order-preserving
// time (Unix seconds with the sign bit flipped, then nanoseconds).
//
//	meta              "schema"     -> uint64 schema version (1)
//	                  "generation" -> uint64 count of committed transactions
//	                  "rollback"   -> JSON RollbackInfo (only while unacknowledged)
//	                  "store_id"   -> 16 random bytes, made at the first Open
//	                  "witness"    -> absolute WITNESSDIR whose witness file exists durably
//	sessions          session id            -> peer id || session blob
//	sessions_by_peer  peer id || session id -> ""
//	ledger            peer id || cmd id     -> T(notAfter) || ledger blob
//	ledger_expiry     T(notAfter) || peer id || cmd id -> ""
//	pending           cmd id                -> peer id || pending blob
//	pending_by_peer   peer id || cmd id     -> ""
//	pairings          email address         -> pairing blob
//	identity          "self"                -> JSON Identity
//	peers             peer name             -> JSON Peer
//	peers_by_fp       fingerprint           -> peer name
//	outbox            uint64 id             -> JSON OutboxItem (ids from the bucket sequence)
//	cursors           mailbox name          -> JSON Cursor
//	results           cmd id                -> JSON Result
//	config            key                   -> raw bytes
//
// String keys are stored byte for byte, after validation (non-empty, bounded,
// UTF-8, no control characters); canonicalising them is the caller's job.
//
// # Invariants
//
//   - One transaction per received package is the caller's contract: the
//     ledger entry, the session advance, the cursor move and any reply put in
//     the outbox commit together in one Update, or not at all. An Update whose
//     callback returns an error (or panics) changes nothing, byte for byte.
//   - Every index is kept in the same transaction as its main bucket, and
//     Store.Check verifies them both ways together with every key's shape.
//   - Generation and rollback: each commit increments meta/generation and then
//     writes it to the sidecar DIR/state.gen and, with Options.WitnessDir set,
//     to the witness outside DIR; these may lag the database, never lead it. On
//     Open a file ahead of the database, a sidecar missing or garbled beside a
//     database with history, or a witness missing that meta/witness says was
//     made, means the state was restored from an older copy (threat rows 26
//     and 31); Open persists a RollbackInfo, whose Reason says which, that
//     Store.Rollback reports until the caller has dropped every session and
//     calls Tx.ClearRollback. rollback.go says why our own crashes never cause
//     a report and what cannot be detected (a restore that brings the witness
//     back too).
//   - A private directory (threat row 36): Open refuses, with *UnsafeDirError
//     (errors.Is ErrUnsafeStateDir), a state or witness directory that is a
//     symbolic link, is not owned by this uid, is writable by group or others,
//     or whose parent another user may write without the sticky bit (the rule
//     in private.go); and a symbolic link, a hard-linked file or a file of
//     another user where it keeps its files. It opens its files with
//     O_NOFOLLOW, creates new ones with O_EXCL, and removes a leftover *.tmp
//     (never writing through it) before replacing a file.
//   - Permissions: state.db is 0600 (an existing looser file is tightened, with
//     a warning); directories and files keystore creates are 0700 and 0600.
//   - Locking: bbolt's flock makes one Store per file. Open waits at most
//     Options.LockTimeout (2s by default) and then returns *InUseError naming
//     the PID recorded in DIR/state.pid; it never hangs.
//   - Secrets (the private key and every protocol blob) never reach a log:
//     keystore logs ops, ids and counts only, and types that hold secrets or
//     bulky payloads implement slog.LogValuer to redact them.
package keystore
