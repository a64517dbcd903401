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
//	DIR/spool/ledger/<sha256 hex>   a ledger blob above SpoolThreshold, 0600 (spool.go); Open
//	                         removes those no ledger_spool row names
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
// records that are not protocol state: the node identity, peers with their
// key pins and allow lists, the outbox, mailbox cursors, command results, and
// the engine's own records (commands waiting for a session, mail still to be
// moved, the node's single records); those are stored as JSON or fixed-width
// keys, each in a bucket of its own, and unknown JSON fields are ignored on
// read so an older build can read what a newer one wrote. There is no generic
// key-value bucket: a record that needs keeping gets a typed home here, a
// line in the layout below and a rule in Check.
//
// keystore imports only go.etcd.io/bbolt and the standard library. It must
// not import session, compress, mailbox, commands or node: they depend on it.
//
// # Bucket layout
//
// Schema version 4. All integers are big-endian; ids (session ids, peer
// fingerprints, command ids) are 16 raw bytes and never all zero; "T" is a
// 12-byte order-preserving time (Unix seconds with the sign bit flipped, then
// nanoseconds).
//
//	meta                "schema"     -> uint64 schema version (4)
//	                    "generation" -> uint64 count of committed transactions
//	                    "rollback"   -> JSON RollbackInfo (only while unacknowledged)
//	                    "store_id"   -> 16 random bytes, made at the first Open
//	                    "witness"    -> absolute WITNESSDIR whose witness file exists durably
//	sessions            session id            -> peer id || session blob
//	sessions_by_peer    peer id || session id -> ""
//	ledger              peer id || cmd id     -> T(notAfter) || ledger blob, or T(notAfter)
//	                                             alone when the blob is spooled
//	ledger_spool        peer id || cmd id     -> SHA-256 of the spooled blob, the name of
//	                                             its file in DIR/spool/ledger (spool.go)
//	ledger_expiry       T(notAfter) || peer id || cmd id -> ""
//	ledger_open         peer id || cmd id     -> "": the entries put open (not answered),
//	                                             the only ones a restart reads (ledger.go)
//	pending             cmd id                -> peer id || pending blob
//	pending_by_peer     peer id || cmd id     -> ""
//	pairings            email address         -> pairing blob
//	identity            "self"                -> JSON Identity
//	peers               peer name             -> JSON Peer (with its allow list)
//	peers_by_fp         fingerprint           -> peer name
//	allow_unpinned      peer name             -> JSON []string: the allow list of a name not
//	                                             pinned yet (pairing); never a pinned name
//	outbox              uint64 id             -> JSON OutboxItem (ids from the bucket sequence)
//	cursors             mailbox name          -> JSON Cursor
//	results             cmd id                -> JSON Result (with its resend count), without
//	                                             its output (inline only if written before schema 4)
//	results_by_sent     T(sent) || cmd id     -> ""
//	result_output       cmd id || stream      -> the result's output, raw; stream 1 stdout,
//	                                             2 stderr; no row for an empty one (results.go)
//	send_queue          cmd id                -> JSON QueuedCommand: waiting for a session
//	send_queue_by_peer  peer id || T(queued) || cmd id -> ""
//	owed_acks           uint32 uidvalidity || uint32 uid -> mailbox name: mail committed,
//	                                             not yet moved out of the inbox
//	node                "mailbox"        -> JSON object: the mailbox settings (node's fields)
//	                    "restore_floor"  -> T
//	                    "last_prune"     -> T
//	                    "processed_mark" -> JSON ProcessedMark
//	                    "failing_mail"   -> JSON FailingMail
//	peer_tags           peer name             -> JSON []string: the peer's tags, sorted and
//	                                             unique, never empty (pinned or pairing)
//	peer_state          peer name             -> JSON PeerState: the fleet view's row (latest
//	                                             sysinfo, last ping, status reports asked) and
//	                                             the peer's output cap (max_output; absent in
//	                                             rows written before it: the default)
//	schedules           schedule name         -> JSON Schedule: target, request, interval or
//	                                             cron, jitter, hook, next slot, pending runs
//	schedule_runs       schedule name || 0x00 || T(fired) -> JSON ScheduleRun: the command
//	                                             ids per peer, then the outcome; the newest
//	                                             MaxScheduleRuns (and pending ones) are kept
//	report_to           peer name             -> JSON ReportTo: the status reports this node
//	                                             was asked to mail that peer, and the last
//	                                             one it acknowledged (the delta's base)
//	checks              check name            -> JSON AgentCheck: a program the agent runs when
//	                                             it builds a status report (at most MaxChecks)
//
// # Schema versions and migration
//
// Open stamps a new file with the current version, migrates an older one in
// its first transaction (so a crash leaves the file wholly old or wholly new,
// and the next Open migrates again), and refuses a newer one (ErrSchema).
// Schema 3 only added buckets, which Open creates. Schema 4 keeps memory
// bounded over time: a whole cached answer stays in the ledger for its
// command's lifetime and every output in its result, so the records a walk
// reads must not hold them. Migrating to it lists every ledger entry in
// ledger_open (keystore cannot read an entry, so it cannot tell an answered
// one; the first restart reads each once and closes the answered ones,
// CloseLedger) and rewrites no result: a record with its output inline reads
// as before, and its output moves to result_output when it is put again.
// Schema 1 kept the engine's records in a generic "config" bucket under
// string keys; migrate.go lists each key and where it goes: the single
// records to node, owed-ack/ to owed_acks, policy/ to Peer.Allow (or
// allow_unpinned), queue/ to send_queue, retry/ into the result's Attempts
// and LastAttempt (dropped when the result is gone). It builds
// results_by_sent and deletes the config bucket. A config key it does not
// know, or a record that does not decode, makes Open fail with a
// *MigrationError naming it (errors.Is ErrUnknownRecord, or ErrCorrupt or
// ErrInvalid) and the file unchanged; nothing is dropped silently.
// testdata/state-v1.db is a file written by the schema-1 code
// (testdata/gen-v1), and TestMigrateV1File checks every record's new home.
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
//   - Walks read records, not bulk: ForEachOpenLedger reads only the open
//     ledger entries, and ResultSummaries, PruneResults and the results
//     check read result records without their output, so a restart, a
//     listing or a status costs the records however much the commands
//     printed. bbolt maps the file into memory, and a page that is read stays
//     in the process's resident set: what is never read costs nothing there.
//   - Every index is kept in the same transaction as its main bucket, and
//     Store.Check verifies them both ways together with every key's shape
//     and every record's decoding, and refuses a bucket not in the layout
//     (a schema-2 file with a config bucket, say).
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
