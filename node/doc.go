// Package node is the engine that joins sealpost's leaf packages: receive -> open -> ledger ->
// policy -> execute -> seal -> outbox -> send, for both roles (a node commands its peers and
// answers their commands).
//
// # Contract
//
//   - One received mail is one state transaction: the protocol's changes (replay window, epochs,
//     ledger), the result record, and every package it makes us send (queued in the outbox)
//     commit together, and only then is the mail moved out of the inbox (docs/PROTOCOL.md
//     sections 11 and 17). A crash anywhere means the mail is read again and the ledger answers
//     it; a command never runs twice, and one left "executing" by a crash is answered "outcome
//     unknown" at the next start (Recover).
//   - A mail that fails the checks is moved to the rejected folder with nothing committed. One
//     whose handling fails for the node's own reasons (the state store) stays in the inbox and
//     holds up the mail behind it while the trouble may pass; after 5 attempts over a minute it
//     is moved aside too. Either way, for the protocol it is a lost mail that the sender retries.
//   - Another node's mail is not ours to move: a package sealed for another recipient that was
//     mailed to another address than this node's (a shared mailbox, docs/PROTOCOL.md section
//     17) stays in the inbox untouched, and the cursor passes it (process.go, othersMail).
//   - Processed mail is deleted from the processed folder after Options.KeepProcessed, and
//     results of finished commands after Options.KeepResults (prune.go).
//   - Every record node keeps has a typed home in keystore (keystore/doc.go): the send queue,
//     resend counts in the result, allow lists in the peer, owed acks, and the node's own
//     records (mailbox settings, restore floor, last prune, processed mark, failing mail).
//   - Outcomes travel as data: the peer's commands.Outcome (with exit code or signal) is
//     recorded with the result and returned in Result; Error is for people only.
//   - Health (health.go): the serving loop and the sender record each server's last success
//     and current failure; Status reports them. Serve returns a *PermanentError when the
//     secret cannot be had or the servers refuse it five times in a row.
//   - A cleared command is recorded Accepted and queued in the executor (exec.go): one at a time
//     per peer, in order, up to Options.MaxParallel peers at once, while the agent reads on. At
//     its turn it is checked again (peer still pinned, not-after, the peer's allow list, kept
//     in the peer's record and written by `peer add --allow` and `peer allow/deny`, Node.Allow) and recorded Executing before its
//     program starts. A crash leaves Accepted commands to run after the restart (Recover, in
//     acceptance order) and the Executing one answered outcome-unknown; stopping the agent ends
//     the running commands with every process they started and leaves the queued ones Accepted.
//   - Each mail commits, with its effects, the inbox cursor past it and a note that it is still
//     to be moved (inbox.go); mail is moved in batches and the notes cleared, so a crash inside
//     a batch re-reads none of it.
//   - Mail is sent only from the outbox; failures are retried with backoff, permanent refusals
//     dropped and logged.
//   - Commands without an answer are sent again with doubling intervals; after three tries a new
//     handshake is opened alongside, which also heals a peer whose state was restored.
//   - A state restored from an older copy loses every session, and its detection time becomes
//     the protocol's floor (docs/PROTOCOL.md section 16). keystore detects a restored database or
//     state directory (sidecar, witness); the agent, at start, a restored host, from the newest
//     mail of the processed folder (restore.go).
//   - Packages may travel as files (carry.go, docs/PROTOCOL.md section 21): Export writes what
//     waits for a peer into a directory and takes it out of the outbox once the files are
//     durable; Import applies a directory's package files through the same function as a mail
//     (receive, process.go), so a file applied twice runs nothing twice. A node without a
//     mailbox (MailConfig.NoMail) mails nothing, and none is mailed to an address in .invalid.
//     A gateway (Gateway, stored with the mailbox settings) holds mail for an air-gapped node's
//     fingerprint, unopened, for export, and mails on that node's files.
//   - bbolt's lock allows one process per state: while Serve runs, the CLI reaches the node
//     through the control socket (control.go); otherwise it opens the state itself.
//
// # Imports
//
// node may import session, compress, mailbox, commands and keystore; only cmd/sealpost imports
// node. The leaf packages never import each other (deps_test.go).
package node
