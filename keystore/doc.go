// Package keystore is a sealpost node's persistent state: one bbolt file,
// DIR/state.db, per node. It implements docs/PROTOCOL.md, section "State".
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
//     copies it to the sidecar DIR/state.gen. On Open, a sidecar ahead of the
//     database means the database was restored from an older copy (threat row
//     26); Open persists a RollbackInfo that Store.Rollback reports until the
//     caller has dropped every session and calls Tx.ClearRollback.
//   - Permissions: state.db is 0600 (an existing looser file is tightened, with
//     a warning) and a directory keystore creates is 0700.
//   - Locking: bbolt's flock makes one Store per file. Open waits at most
//     Options.LockTimeout (2s by default) and then returns *InUseError naming
//     the PID recorded in DIR/state.pid; it never hangs.
//   - Secrets (the private key and every protocol blob) never reach a log:
//     keystore logs ops, ids and counts only, and types that hold secrets or
//     bulky payloads implement slog.LogValuer to redact them.
package keystore
