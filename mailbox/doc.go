// Package mailbox carries sealpost packages through ordinary mailboxes: it mails a package as the
// single attachment of a mail (SMTP), finds the mails that carry packages in an inbox (IMAP, with
// IDLE push or polling), and moves them aside once the caller is done with them. It knows
// nothing of what a package means; the engine (package node) opens, checks and answers them.
//
// The provider is untrusted: it may read, drop, delay, reorder, duplicate, replay and forge mail.
// Nothing here decides who sent a package (Message.From is for logs only) and nothing here is
// secret: packages arrive sealed.
//
// # Pieces
//
//   - [Transport]: the interface the engine uses, with at-least-once delivery.
//   - [IMAPSMTP] ([New]): the implementation over a real IMAP + SMTP account.
//   - [ComposeMail], [ReadMail], [ParseMail]: the mail format (mime.go) with hard limits.
//   - [StartRelay]: an embedded in-process mail system (go-smtp server delivering into a copy
//     of go-imap's imapmemserver, relaymem_*.go) for demos, labs and tests. Loopback, no TLS
//     by default, in memory unless [RelayConfig].Data names a private directory, where every
//     mailbox is kept in a bbolt file (relaystore.go, its layout documented there); not a
//     production mail server. Unlike bare imapmemserver it refuses changes to a folder opened
//     with EXAMINE, as Dovecot does, and never hands out a UIDVALIDITY again with other UIDs:
//     in memory each start takes the clock's second, with Data mailboxes keep theirs.
//   - [WrongServerError] (diagnose.go): a server that begins otherwise than the connection's
//     protocol and TLS mode expect (a plaintext greeting to an implicit-TLS client, silence or a
//     TLS record to a plaintext or STARTTLS one, the other protocol's greeting) is named with
//     what it sent ([Found]), whether the IMAP and SMTP addresses look swapped and which TLS
//     mode to try, for the CLI's advice.
//   - The shared behaviour every Transport must show is fixtures.RunTransportContract; the
//     relay runs it in relay_test.go, and a real Dovecot + Postfix can run the same suite.
//   - Logins (auth.go): Config.Auth picks the password (SASL PLAIN, else IMAP LOGIN or SASL
//     LOGIN), SASL XOAUTH2 (xoauth2.go, ours: go-sasl has none) or OAUTHBEARER (go-sasl's
//     client, answering the error challenge as RFC 7628 asks). The password or token comes
//     from Config.Password or from a [SecretSource] asked at every login: [CommandSecret]
//     (secretcmd.go: a shell command line, as mbsync's PassCmd) or [FileSecret]. A refusal is
//     an [*AuthError] (ErrAuthFailed), a failing source a [*SecretError] (ErrNoSecret), so
//     that the engine can tell them from network trouble. The relay offers XOAUTH2 and
//     OAUTHBEARER when RelayConfig.Tokens is set (relay_auth.go).
//
// # Imports
//
// The standard library, the emersion mail libraries (go-imap/v2, go-smtp, go-message,
// go-sasl) and bbolt (the relay's store) only. It must not import session, compress, commands, keystore or node, and non-test
// code never imports testing or fixtures; deps_test.go in the module root and TestImports here
// enforce it.
//
// # Invariants
//
//   - At least once: a mail stays in the inbox until Ack or Reject. The caller acknowledges only
//     after it has committed the state the package changed (that is the caller's contract), so a
//     crash at any point means the mail is read again, never lost.
//   - Mail that is not sealpost's is never returned, downloaded, flagged, moved or expunged: for
//     every new mail only RFC822.SIZE and BODY.PEEK[HEADER.FIELDS (X-Sealpost Content-Type
//     From To)] are fetched, and only mail with "X-Sealpost: 1" is fetched whole, with BODY.PEEK[]
//     (THREATS.md row 29).
//   - Many nodes, one mailbox (plus.go): sealpost mail whose To is another address of this
//     node's mailbox (shared+web2@ or shared@ for shared+web1@; Config.Address and
//     Config.Username without their plus detail) is another node's, and is treated as foreign
//     mail: never returned by Receive or Processed, downloaded, flagged, moved or expunged. A
//     node with a plus address has processed and rejected folders of its own
//     (sealpost/processed/<detail>), so Prune and Processed see its mail only. The relay
//     delivers a user's plus addresses to that user and lets the user send from them.
//   - A mail that says it is sealpost's but cannot be used (too large, malformed, no or a corrupt
//     attachment) is returned with Message.Err set, so that the caller rejects it and it is moved
//     aside rather than read again forever.
//   - Caps before parsing: a mail larger than MaxMessageBytes is never downloaded, by its
//     RFC822.SIZE or by the size its body is announced with; nor one whose body is larger than
//     its RFC822.SIZE beyond a margin (1/32 and 4 KiB, for servers that leave trace headers out
//     of it): each comes back with a too-large Err. One call downloads at most 2 x
//     MaxMessageBytes of mail by the claimed sizes (at least one mail), so the margin bounds
//     what it holds whatever a server claims (THREATS.md row 35). A body announced over the cap
//     ends the connection (see below): that mail comes back too large with those before it,
//     the rest wait for the next call, which reconnects; so one such mail, on a server whose
//     RFC822.SIZE is wrong, does not hold up the inbox (row 30). A downloaded one is read
//     header first (a header bomb costs 64 KiB), and its MIME structure (64 KiB of headers in
//     all, 8 parts, nesting 4) is checked by a scan that decodes nothing before go-message
//     parses it (THREATS.md row 23).
//   - Transport.Processed, the agent's witness of its state on the server (THREATS.md row 31),
//     changes nothing: EXAMINE, SEARCH and BODY.PEEK only, and a missing processed folder is
//     not created. The next call that writes there SELECTs the folder again.
//   - Moves touch only the UIDs asked for: MOVE, or UID COPY + UID STORE + UID EXPUNGE of that
//     UID set; never a bare EXPUNGE, which would also remove the user's own deleted mail.
//   - Credentials never cross the network unencrypted, except with explicit consent to a
//     loopback server (checked on the connected address, not just the configured name).
//   - No password or token is kept past the login it was asked for: a rotated password or a
//     refreshed token is used from the next connection on, and a token the server refused is
//     never offered again. A refused OAuth2 token from a source is followed by exactly one
//     fresh one per login (on the same IMAP connection; on a new SMTP connection); a refused
//     password is not retried. Nothing a secret command prints on its standard output appears
//     in an error or a log.
//   - No call hangs on a silent server: every exchange runs under a watchdog
//     (Config.CommandTimeout of silence closes the connection) and the caller's context.
//   - No server makes the client hold more than a cap (caps.go, THREATS.md row 35): the IMAP
//     and SMTP clients read through a connection that follows the framing and closes it at the
//     first byte past a cap, and the call returns a *TooLongError (ErrServerTooLong) naming the
//     server and the cap. IMAP: one response, outside its literals, 64 KiB (all its lines, as
//     go-imap reads quoted strings and response codes over line breaks; a SEARCH or ESEARCH
//     response up to 8 MiB, past 64 KiB only with ascending UIDs); the literals of one FETCH
//     response together MaxMessageBytes, a literal elsewhere counts towards the 64 KiB, and a
//     literal announced over its cap is not read at all (in a FETCH response its announcement
//     is let through, so that the fetch knows which mail it is, and the connection closed at
//     its first byte). SMTP: one reply line 1000 bytes, one
//     reply (all its lines) 64 KiB. The plaintext before STARTTLS is capped too (64 KiB).
//
// # Library pitfalls handled
//
// Measured on go-imap/v2 v2.0.0-beta.8, go-smtp v0.25.1 and go-message v0.18.2 (DESIGN.md
// section 5):
//
//   - go-imap has no per-command timeout or context, and a half-dead connection hangs: one
//     supervisor owns the connection, runs every exchange under its own watchdog, closes the
//     connection on any failure and reconnects on the next call with exponential backoff
//     (200 ms doubling to 30 s, with jitter).
//   - Any unparsable server response makes go-imap close the connection. One such case: a UID
//     MOVE or COPY of a UID that no longer exists makes imapmemserver send an empty COPYUID that
//     imapclient cannot parse. Ack therefore checks which UIDs exist first (one UID FETCH for
//     the batch) and moves only those (which also makes a repeated Ack harmless).
//   - IDLE: no command may be sent while it runs, so every call ends it (Close + Wait) first and
//     a waiting Receive resumes afterwards; the unilateral-data handler runs on the reader
//     goroutine and only signals a channel; an IDLE is re-issued at least every PollInterval
//     (25 min at most) because servers drop long ones.
//   - Dovecot answers a search from the session's snapshot of the folder, refreshed only at a
//     sync point (NOOP, IDLE, the end of a command): a Receive on an already selected inbox
//     sends NOOP first, or mail delivered since the last command would wait for the next call.
//   - Dovecot holds its IDLE notice of new mail for about 500 ms, while any command (NOOP, UID
//     SEARCH, a STATUS from elsewhere) reports the mail at once: measured 506-590 ms against
//     5-30 ms after the submission began. While mail is expected (IMAPSMTP.Expect: a command
//     was just mailed, or answered) a Receive waits with NOOPs at growing intervals instead of
//     IDLE (eager.go), and goes back to IDLE when the expectation ends.
//   - "UID SEARCH UID n:*" also returns the highest UID when it is below n: results are
//     filtered against the cursor.
//   - go-imap's Move falls back, without MOVE, to COPY (unchecked) + STORE + a bare EXPUNGE when
//     UIDPLUS is missing: not used; the fallback here checks each step, expunges only those UIDs
//     with UIDPLUS, and without UIDPLUS flags the mail \Deleted \Seen and leaves it (Receive
//     skips \Deleted mail).
//   - go-imap matches a FETCH answer to its command by the UID, which it needs before any
//     literal: a mail whose body arrives unmatched is reported as an error, never handed out
//     half-read. It streams a body literal (the reader waits until it is consumed) and discards
//     what the caller does not read, 8 KiB at a time: a body not wanted costs time, not memory.
//   - go-imap keeps a response line, a quoted string or a literal in memory until it ends,
//     and net/textproto (under go-smtp) a whole multi-line reply: an endless one grows the heap
//     without bound while the watchdog sees bytes moving. Hence the caps above.
//   - Both libraries do STARTTLS by wrapping their own TLS client around the connection they
//     were given, which would put the caps under TLS: STARTTLS is done here (starttls.go), and
//     the library gets a capped connection over TLS that begins with a stand-in greeting (the
//     server's came before STARTTLS); data injected between the STARTTLS answer and the TLS
//     handshake is refused. go-smtp's TLSConnectionState then sees no TLS: the plaintext guard
//     asks the connection itself.
//   - go-smtp's client sends AUTH PLAIN over plaintext without complaint, and resets the
//     deadlines it sets after every command (so it does not bound the DATA transfer): the
//     plaintext guard and the watchdog here cover both.
//   - go-imap sends an empty SASL response as "=" (RFC 4959's form for an empty initial
//     response only); Dovecot answers BAD, not the NO that a refused XOAUTH2 token deserves.
//     The empty response goes out as an empty line (emptyResponse in auth.go).
//   - go-smtp's client sends "*" after a failed AUTH, and Postfix drops a client that sends
//     it (not an SMTP command): a refused token is retried on a new SMTP connection. go-sasl's
//     OAUTHBEARER client returns an error on the error challenge instead of answering it, and
//     its server panics on an empty answer: both are wrapped (xoauth2.go, relay_auth.go).
//   - go-message returns an error and a usable entity for an unknown charset or transfer
//     encoding: tolerated (text parts are ignored; the attachment must be base64), and it has no
//     limit on size, parts or nesting: hence the caps above.
//
// # Specification
//
// docs/PROTOCOL.md section 17 (Email carriage); the mail format is described in mime.go. Send
// errors say whether they are temporary (SendError), which the outbox uses to retry or give up.
// IMAPSMTP is also a SizeLimiter (sizelimit.go): it reports the SIZE the submission server
// advertised at its last greeting (RFC 1870), connecting once to learn it, and MailSize bounds
// the mail a package becomes, so that a sender cutting a stream into chunks (docs/PROTOCOL.md
// section 20) makes each chunk's mail fit. The embedded relay advertises its
// RelayConfig.MaxMessageBytes as SIZE.
package mailbox
