package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// Receiving (docs/PROTOCOL.md section 11): each mail is applied to the state in one transaction
// together with every package it makes us send (queued in the outbox); only after that commit is
// the mail moved out of the inbox, so a crash at any point leads to the mail being read again and
// the ledger answering it, never to a command lost or run twice.

// errRejected aborts the transaction of a package the protocol refused.
var errRejected = errors.New("package rejected")

// execution is a command the protocol cleared to run, run after its "executing" state committed.
type execution struct {
	ticket *session.Ticket
	raw    commands.Request // as the peer sent it: checked again when its turn comes
	req    commands.Request // as the allow list cleared it
	policy commands.Policy
	peer   keystore.Peer
	// started: recorded Executing already, with a slot held for it: in the transaction that
	// accepted it (executor.reserve), or in the one that recorded the answer of the peer's
	// command before it (execute's next). It runs without a turn of its own.
	started bool
	// answered: its turn's check answered it (denied, expired) in that transaction: it does
	// not run.
	answered bool
	// resumed: recorded Executing before a restart (a pull going on, resumePull): it runs
	// without a turn, but needs a slot like any other.
	resumed bool
}

// Pump reads one batch of mail and applies it. With wait it blocks until mail arrives, waitFor
// passes (zero: no bound) or ctx ends; the bound applies to the wait only, never to handling the
// mail. The commands the mail clears run in the executor (exec.go): while Serve runs, Pump goes on
// with the next mail as they run; otherwise it waits for them before it returns, so that a Pump
// of its own ends with every answer queued. It returns how many sealpost messages it handled.
//
// Each mail commits with its effects the inbox cursor past it and a note that it is still to be
// moved out of the inbox (docs/PROTOCOL.md section 11). The processed mail is moved in one batch
// after that; a crash before the move leaves the notes, and the next Pump moves that mail without
// reading it again, so a crash inside a batch neither re-reads the batch nor mails its answers
// again.
func (n *Node) Pump(ctx context.Context, wait bool, waitFor time.Duration) (int, error) {
	if !n.serving.Load() {
		defer n.exec.wait(ctx)
	}
	tr, err := n.transport()
	if err != nil {
		return 0, err
	}
	var (
		cur  mailbox.Cursor
		owed []mailbox.Message
	)
	if err := n.store.View(func(tx *keystore.Tx) error {
		c, _, err := tx.Cursor(inboxCursor)
		cur = mailbox.Cursor{UIDValidity: c.UIDValidity, LastUID: c.LastUID}
		if err != nil {
			return err
		}
		owed, err = owedAcks(tx)
		return err
	}); err != nil {
		return 0, err
	}
	var d time.Duration // how long Receive may wait for mail; it bounds no server command
	if wait {
		d = waitFor
		if d <= 0 {
			d = math.MaxInt64 // until mail comes or ctx ends
		}
	}
	if len(owed) > 0 && !n.owedTried.Swap(true) {
		d = 0 // mail committed before a crash is still to be moved: do that first, once
	}
	msgs, next, err := tr.Receive(ctx, cur, d, 0)
	if err != nil {
		return 0, err
	}
	var handleErr error
	acks := owed
	for i := 0; i < len(msgs); {
		// A run of mails is applied in one transaction when it can be (handleGroup), else each
		// on its own.
		if g := n.groupable(msgs[i:]); len(g) > 1 {
			ok, bad := n.handleGroup(ctx, g)
			if !ok && bad > 1 {
				// The run up to the mail that failed commits as a run after all; that mail
				// is then applied on its own below, and the mail after it starts a new run.
				g = g[:bad]
				ok, _ = n.handleGroup(ctx, g)
			}
			if ok {
				acks = append(acks, g...)
				i += len(g)
				continue
			}
		}
		m := msgs[i]
		i++
		committed, err := n.handle(ctx, tr, m)
		if committed {
			acks = append(acks, m)
			continue
		}
		if err == nil {
			continue // rejected and moved aside
		}
		if n.givingUp(m) {
			// The same mail has failed too long to blame passing trouble: move it aside so that
			// the mail behind it gets its turn. Nothing of it was committed, so for the protocol
			// it is a lost mail; its sender's retry brings the command again.
			n.reject(ctx, tr, m, fmt.Errorf("%w (%d attempts over %s; moved aside so that the mail after it is not held up)", err, poisonAttempts, poisonAfter))
			continue
		}
		// State trouble, not the mail's fault: leave it in the inbox and stop here, so the
		// cursor does not pass it; the caller backs off before reading it again.
		n.log.Error("handling mail failed; it stays in the inbox", "op", "receive", "uid", m.UID, "err", err)
		next.LastUID = m.UID - 1
		handleErr = fmt.Errorf("handle mail %d: %w", m.UID, err)
		break
	}
	// The processed mail leaves the inbox in one batch, one server round trip instead of one per
	// mail. Its state is committed: if this fails, or we crash first, the notes make the next
	// Pump try again, and the ledger recognises the mail if it is ever read again.
	moved := true
	if err := tr.Ack(ctx, acks...); err != nil && !errors.Is(err, mailbox.ErrStaleMessage) {
		// (Stale ones cannot be moved any more: their UIDs may name other mail now.) The notes
		// stay, and the error makes Serve back off before it tries again.
		moved = false
		if handleErr == nil {
			handleErr = fmt.Errorf("move %d processed mails out of the inbox: %w", len(acks), err)
		}
	}
	// One commit for the cursor past what this batch rejected or skipped, and the notes of the
	// mail just moved. Nothing to write after a quiet wait.
	if next != cur || (moved && len(acks) > 0) {
		if err := n.store.Update(func(tx *keystore.Tx) error {
			if next != cur {
				if err := putCursorForward(tx, next); err != nil {
					return err
				}
			}
			if moved {
				return clearOwedAcks(tx, acks)
			}
			return nil
		}); err != nil {
			return len(msgs), err
		}
	}
	if err := n.flushSoon(ctx); err != nil {
		n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
	}
	n.afterMail(ctx)
	return len(msgs), handleErr
}

// afterMail starts what a batch of mail may have asked for once it committed: chunks asked for
// again (stream_ask.go) and pushed files whose chunks are all here (stream_file.go). Each runs
// in the background, one per stream.
func (n *Node) afterMail(ctx context.Context) {
	n.resendPending(ctx)
	n.placePushes(ctx)
}

// A mail whose handling keeps failing for reasons of this node's own (the state store refusing a
// write, say) stays in the inbox and holds up the mail behind it, which is right for passing
// trouble. One that has failed poisonAttempts times over at least poisonAfter is moved aside.
const (
	poisonAttempts = 5
	poisonAfter    = time.Minute
)

// givingUp records one failed handling of m and reports whether it is time to move m aside.
func (n *Node) givingUp(m mailbox.Message) bool {
	n.failMu.Lock()
	defer n.failMu.Unlock()
	now := n.now()
	f := n.failing
	if f.UID != m.UID || f.UIDValidity != m.UIDValidity {
		// The count is kept in the state as well (keystore.FailingMail), so that an agent run by
		// cron with --once counts across its runs.
		var stored keystore.FailingMail
		if err := n.store.View(func(tx *keystore.Tx) error {
			var err error
			stored, _, err = tx.FailingMail()
			return err
		}); err != nil {
			// The count starts over: a damaged count only delays moving the mail aside.
			n.log.Warn("failing-mail count unreadable; counting again", "op", "receive", "err", err)
		}
		f = stored
		if f.UID != m.UID || f.UIDValidity != m.UIDValidity {
			f = keystore.FailingMail{UIDValidity: m.UIDValidity, UID: m.UID, First: now}
		}
	}
	f.Count++
	n.failing = f
	// Recording the count is also a test of the state store: when it cannot take even this
	// write, the trouble is the store's and not this mail's, and moving the mail aside would only
	// move the next one aside a minute later.
	if err := n.update(func(tx *keystore.Tx, _ TxStore) error { return tx.PutFailingMail(f) }); err != nil {
		n.log.Warn("the state store refuses writes; the failing mail stays in the inbox", "op", "receive", "uid", m.UID, "err", err)
		return false
	}
	if f.Count < poisonAttempts || now.Sub(f.First) < poisonAfter {
		return false
	}
	n.failing = keystore.FailingMail{}
	_ = n.update(func(tx *keystore.Tx, _ TxStore) error { return tx.DeleteFailingMail() })
	return true
}

// handle applies one mail and hands the command it clears, if any, to the executor. committed:
// the mail's state change committed, so the mail is to be acknowledged (Pump does it for the whole
// batch). A mail the protocol refuses is moved aside here, and handle returns (false, nil); an
// error is trouble of the node's own, and the mail stays in the inbox.
func (n *Node) handle(ctx context.Context, tr mailbox.Transport, m mailbox.Message) (committed bool, err error) {
	if n.failHandle != nil {
		if err := n.failHandle(m); err != nil {
			return false, err
		}
	}
	if m.Err != nil {
		n.reject(ctx, tr, m, m.Err)
		return false, nil
	}
	_, rejectErr, err := n.receive(ctx, m.Package, func(tx *keystore.Tx) error { return markRead(tx, m) })
	if rejectErr != nil && n.othersMail(m, rejectErr) {
		// Sealed for another node and sent to another address: on a shared mailbox that is
		// another node's mail, which is not ours to move (docs/PROTOCOL.md section 17). It
		// stays in the inbox; the cursor passes it, so it is not read again.
		n.log.Debug("mail for another node left in the inbox", "op", "receive", "uid", m.UID, "to", Printable(m.To))
		return false, nil
	}
	if rejectErr != nil {
		n.reject(ctx, tr, m, rejectErr)
		return false, nil
	}
	return err == nil, err
}

// receive applies one package, from a mail (handle) or from a file (Import, carry.go): the one
// path every package takes. mark, if not nil, records in the same transaction that the package's
// carrier is done with (the inbox cursor). A package for an air-gapped node this node is the
// gateway of is held for it instead (divert). rejectErr: the protocol refused the package (the
// caller moves it aside or reports it), and nothing but a spent pairing attempt was committed;
// err: trouble of the node's own, nothing committed. dup: a copy of a command answered already.
func (n *Node) receive(ctx context.Context, pkg []byte, mark func(*keystore.Tx) error) (dup bool, rejectErr, err error) {
	var eff effects
	committed := false
	defer func() {
		if eff.run != nil && eff.run.started && !committed {
			n.exec.unreserve() // the start did not commit: the slot is not the command's
		}
	}()
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		if held, err := n.divert(tx, st, pkg); err != nil || held {
			if err != nil || mark == nil {
				return err
			}
			return mark(tx)
		}
		out, err := n.eng.Receive(st, pkg)
		if err != nil {
			rejected, keep := session.Rejection(err)
			if !rejected {
				return err // our own trouble: the mail stays in the inbox
			}
			rejectErr = err
			if keep {
				return nil // a spent pairing attempt or a dead handshake is kept
			}
			return errRejected
		}
		dup = out.Duplicate
		if eff, err = n.apply(tx, st, out, pkg, n.exec.reserve); err != nil {
			return refusal(err)
		}
		dup = dup || eff.dup
		if mark == nil {
			return nil
		}
		return mark(tx)
	})
	if rejectErr == nil && errors.Is(err, session.ErrRefusedRecord) {
		rejectErr = err // the store refused what the package made us record: the package's fault
	}
	if rejectErr != nil && (err == nil || errors.Is(err, errRejected) || err == rejectErr) {
		return false, rejectErr, nil
	}
	if err != nil {
		return false, nil, err
	}
	committed = true
	for _, e := range eff.events {
		n.emit(e)
	}
	n.notify(eff.done...)
	if eff.run != nil {
		n.exec.dispatch(eff.run)
	}
	// What this package queued (a handshake or pairing reply, an authenticated refusal) goes now
	// while Serve runs; a Pump of its own flushes once at its end.
	if n.serving.Load() {
		_ = n.flushSoon(ctx)
		n.afterMail(ctx)
	}
	return dup, nil, nil
}

// groupMax bounds how many mails one transaction applies (handleGroup): the first command of a
// run starts only when the run commits.
const groupMax = 32

// groupBytes bounds the packages of one run: a run's ledger copies and dirty pages are held until
// its commit.
const groupBytes = 4 << 20

// groupable returns the run of mails at the head of msgs that handleGroup may try: up to groupMax
// of them and groupBytes of packages (at least one), up to the first that failed to download or
// parse.
func (n *Node) groupable(msgs []mailbox.Message) []mailbox.Message {
	if n.failHandle != nil {
		return nil // tests of one mail's failure: each mail alone
	}
	k, size := 0, 0
	for k < len(msgs) && k < groupMax && msgs[k].Err == nil {
		size += len(msgs[k].Package)
		if k > 0 && size > groupBytes {
			break
		}
		k++
	}
	return msgs[:k]
}

// errGroup abandons the transaction of a run of mails: each is then applied on its own.
var errGroup = errors.New("a mail of the run is to be applied on its own")

// handleGroup applies a run of mails in one transaction, all or none (docs/PROTOCOL.md section
// 11): a backlog then costs one commit, and one sync to disk, per run instead of per mail. It
// reports whether the run committed; when a mail of it is refused, or anything fails, nothing of
// the run is kept, and bad is the index of the mail that failed (-1: the commit itself): the
// caller commits the mails before it as a run and applies that one on its own (handle), which
// rejects or keeps in the inbox what it must. The effects (events, waiters, commands to run)
// follow the commit, in the order of the mail.
func (n *Node) handleGroup(ctx context.Context, ms []mailbox.Message) (ok bool, bad int) {
	var (
		effs []effects
		// The peers with a command earlier in the run: a later one of theirs waits its turn
		// behind it, as it would if the earlier one had been dispatched already.
		behind = map[session.Fingerprint]bool{}
	)
	mayStart := func(fp session.Fingerprint) bool {
		if behind[fp] {
			return false
		}
		behind[fp] = true
		return n.exec.reserve(fp)
	}
	bad = -1
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		for i, m := range ms {
			out, err := n.eng.Receive(st, m.Package)
			if err != nil {
				bad = i
				return errGroup
			}
			eff, err := n.apply(tx, st, out, m.Package, mayStart)
			effs = append(effs, eff)
			if err != nil {
				bad = i
				return errGroup
			}
			if err := markRead(tx, m); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		for _, eff := range effs {
			if eff.run != nil && eff.run.started {
				n.exec.unreserve() // the start did not commit: the slot is not the command's
			}
		}
		return false, bad
	}
	for _, eff := range effs {
		for _, e := range eff.events {
			n.emit(e)
		}
		n.notify(eff.done...)
		if eff.run != nil {
			n.exec.dispatch(eff.run)
		}
	}
	if n.serving.Load() {
		_ = n.flushSoon(ctx)
		n.afterMail(ctx)
	}
	return true, -1
}

// othersMail reports whether a refused mail is another node's: its package is sealed for
// another recipient (ErrNotForUs) and it was mailed to an address that is not this node's. The
// transport has already left alone what went to another address of a shared mailbox
// (mailbox.Config.Address); this catches the rest, such as mail to an alias of the mailbox. A
// package sealed for someone else but mailed to this node's own address (a reflection, a
// forgery) is rejected and moved aside as before (THREATS.md row 14).
func (n *Node) othersMail(m mailbox.Message, why error) bool {
	return errors.Is(why, session.ErrNotForUs) && m.To != "" && !strings.EqualFold(m.To, n.cfg.Address)
}

// reject logs a refused mail and moves it aside. A failure to move it is logged too: the cursor
// passes the mail all the same, so it is not read again, and nothing of it was committed.
func (n *Node) reject(ctx context.Context, tr mailbox.Transport, m mailbox.Message, why error) {
	n.log.Info("mail rejected and moved aside", "op", "reject", "uid", m.UID, "from", Printable(m.From), "err", why)
	n.emit(Event{Kind: EventRejected, Peer: m.From, Package: packageType(m.Package), Bytes: len(m.Package), Detail: why.Error()})
	if err := tr.Reject(ctx, m, why.Error()); err != nil {
		n.log.Warn("could not move rejected mail; it stays in the inbox, read no more", "op", "reject", "uid", m.UID, "err", err)
	}
}

// effects is what one accepted package asks of the node once its transaction committed.
type effects struct {
	run    *execution          // a command to run
	done   []session.CommandID // commands of ours whose result is final: wake their waiters
	events []Event
	dup    bool // a chunk already held: a copy, nothing changed
}

// apply records what one accepted package means, inside its transaction. mayStart takes an
// executor slot for a command of the peer that may start at once (executor.reserve).
func (n *Node) apply(tx *keystore.Tx, st TxStore, out session.Outcome, raw []byte, mayStart func(session.Fingerprint) bool) (effects, error) {
	var eff effects
	peer, pinned, err := tx.PeerByFingerprint(out.Peer)
	if err != nil {
		return eff, err
	}
	if !pinned {
		return eff, fmt.Errorf("package from unpinned peer %s", out.Peer)
	}
	ev := func(e Event) {
		if e.Peer == "" {
			e.Peer = peer.Name
		}
		eff.events = append(eff.events, e)
	}
	reply := func(pkg []byte) error {
		if pkg == nil {
			return nil
		}
		return enqueue(tx, peer.Address, pkg)
	}
	ev(Event{Kind: EventReceived, Package: packageType(raw), Bytes: len(raw), Command: out.Command, Epoch: out.Epoch})

	switch out.Kind {
	case session.Paired:
		ev(Event{Kind: EventPaired, Detail: "pinned " + out.Peer.String()})
		if err := reply(out.Reply); err != nil {
			return eff, err
		}
		if err := n.askReportsAtPairing(tx, st, peer); err != nil {
			return eff, err
		}
	case session.HandshakeAccepted:
		ev(Event{Kind: EventSession, Status: "Initializing", Detail: "inbound session " + out.Session.String()[:8]})
		if err := reply(out.Reply); err != nil {
			return eff, err
		}
	case session.SessionConfirmed:
		ev(Event{Kind: EventSession, Status: "Confirmed", Epoch: 0, Detail: "outbound session " + out.Session.String()[:8]})
		if err := n.sendQueued(tx, st, peer); err != nil {
			return eff, err
		}
	case session.Execute:
		x, evs, pkg, err := n.clear(tx, st, out.Ticket, out.Payload)
		if err != nil {
			return eff, err
		}
		eff.events = append(eff.events, evs...)
		if x != nil && n.reg.Pure(x.req.Name) {
			// It changes nothing, so it needs no Executing record of its own: it runs and is
			// answered here, in the transaction that accepts it, and a crash before the commit
			// only runs it again. It does not wait behind the peer's running commands either: a
			// ping says whether the agent reads its mail, not what it is busy with.
			ev, apkg, err := n.answerNow(st, x)
			if err != nil {
				return eff, err
			}
			eff.events = append(eff.events, ev)
			x, pkg = nil, apkg
		}
		eff.run = x
		if x != nil && mayStart(x.ticket.Peer) {
			// Its turn is now (nothing of the peer's before it, a slot free): it starts in this
			// transaction, which saves the turn's own commit. The slot is held for it until it
			// ran, or given back if this transaction does not commit.
			x.started = true
			if err := n.eng.Start(st, x.ticket); err != nil {
				return eff, err
			}
		}
		if err := reply(pkg); err != nil {
			return eff, err
		}
	case session.Replied:
		if out.Err != nil && !out.Duplicate {
			ev(Event{Kind: EventDenied, Command: out.Command, Detail: out.Err.Error()})
		}
		if err := reply(out.Reply); err != nil {
			return eff, err
		}
	case session.Delivered:
		// A push's answer: its chunks are no longer ours to send.
		if err := tx.DeleteStreamOut(out.Peer, out.Command); err != nil {
			return eff, err
		}
		res, derr := decodeResult(out.Payload)
		// A streamed answer waits for its chunks (stream_in.go); any other answer ends a stream
		// that was opened for the command.
		res, held, derr, err := n.streamAnswer(tx, out.Peer, out.Command, out.Payload, res, derr)
		if err != nil {
			return eff, err
		}
		if held {
			if err := n.recordResult(tx, out.Command, func(r *keystore.Result) { r.Status = StatusReceiving }); err != nil {
				return eff, err
			}
			ev(Event{Kind: EventResult, Command: out.Command, Status: StatusReceiving, Epoch: out.Epoch})
			eff.done = append(eff.done, out.Command) // wakes waiters: they show the progress
		} else {
			if err := n.deliver(tx, peer.Name, out.Command, res, derr); err != nil {
				return eff, err
			}
			ev(Event{Kind: EventResult, Command: out.Command, Status: StatusDone, Epoch: out.Epoch})
			eff.done = append(eff.done, out.Command)
		}
		if out.Rekey {
			// The peer holds a full window of unconfirmed epochs and none of their responses
			// reached us: the session cannot rotate any more. Pending commands go out again
			// under the new session once it is confirmed.
			ev(Event{Kind: EventSession, Status: "rekey", Detail: "peer's epoch window is full; starting a new handshake"})
			if err := n.ensureHandshake(tx, st, peer, true); err != nil {
				return eff, err
			}
		}
	case session.Failed:
		if err := tx.DeleteStreamOut(out.Peer, out.Command); err != nil {
			return eff, err
		}
		var kind string
		if err := n.recordResult(tx, out.Command, func(r *keystore.Result) {
			kind = r.Request
			r.Status, r.Error, r.ExitCode = out.Err.Code.String(), out.Err.Detail, -1
			if out.Err.Code == session.CodeClock {
				r.Error = out.Err.Error()
			}
		}); err != nil {
			return eff, err
		}
		if err := n.reportAnswered(tx, peer.Name, out.Command, kind, commands.Result{}, out.Err.Code); err != nil {
			return eff, err
		}
		if kind == commands.CmdStream {
			// The agent no longer holds a stream we asked about: that command ends failed.
			ended, err := n.streamRefused(tx, peer.Name, out.Peer, out.Command, out.Err.Detail)
			if err != nil {
				return eff, err
			}
			eff.done = append(eff.done, ended...)
			if err := tx.DeleteResult(out.Command); err != nil {
				return eff, err
			}
		}
		ev(Event{Kind: EventResult, Command: out.Command, Status: out.Err.Code.String(), Detail: out.Err.Detail})
		eff.done = append(eff.done, out.Command)
	case session.ChunkReceived:
		dup, done, res, derr, err := n.takeChunk(tx, out.Chunk)
		eff.dup = dup
		if err != nil {
			return eff, err
		}
		eff.done = append(eff.done, out.Command) // wakes waiters: they show the progress
		if done {
			if err := n.deliver(tx, peer.Name, out.Command, res, derr); err != nil {
				return eff, err
			}
			ev(Event{Kind: EventResult, Command: out.Command, Status: StatusDone})
		}
	case session.RekeyRequested:
		ev(Event{Kind: EventSession, Status: "rekey", Detail: "peer asked for a new handshake"})
		if err := n.ensureHandshake(tx, st, peer, true); err != nil {
			return eff, err
		}
	}
	peer.LastSeen = n.now()
	return eff, tx.PutPeer(peer)
}

// clear decides whether an accepted command may run: its payload decodes, and atTurn allows it.
// Then it returns the execution; otherwise it records the final answer and returns its package, to
// be mailed to the peer.
func (n *Node) clear(tx *keystore.Tx, st TxStore, t *session.Ticket, payload []byte) (*execution, []Event, []byte, error) {
	req, derr := decodeRequest(payload)
	if derr != nil {
		pkg, err := n.eng.Fail(st, t, session.CodeBadCommand, derr.Error())
		return nil, nil, pkg, err
	}
	if req.Name == commands.CmdPush {
		// Answered once the file is in place (stream_file.go).
		evs, pkg, err := n.acceptPush(tx, st, t, req)
		return nil, evs, pkg, err
	}
	if req.Name == commands.CmdStream {
		// A requester's ask about a stream this agent sends (stream_ask.go): answered here.
		evs, pkg, err := n.answerStream(tx, st, t, req)
		return nil, evs, pkg, err
	}
	if req.Name == commands.CmdReport || req.Name == commands.CmdReportEvery {
		// Status reports (report.go): answered here, by the node; nothing runs.
		evs, pkg, err := n.answerReportCommand(tx, st, t, req)
		return nil, evs, pkg, err
	}
	return n.atTurn(tx, st, t, req)
}

// atTurn checks a decoded command as it is about to run, or to be queued: its peer is still
// pinned, its not-after has not passed, and the peer's allow list permits it. Otherwise it
// records the final answer (denied, expired) and returns its package (nil when the peer is gone:
// there is no one to tell).
func (n *Node) atTurn(tx *keystore.Tx, st TxStore, t *session.Ticket, req commands.Request) (*execution, []Event, []byte, error) {
	peer, ok, err := tx.PeerByFingerprint(t.Peer)
	if err != nil {
		return nil, nil, nil, err
	}
	if !ok {
		_, err := n.eng.Fail(st, t, session.CodeDenied, "the peer was removed before the command ran")
		return nil, nil, nil, err
	}
	if n.now().UnixMilli() > t.NotAfter {
		pkg, err := n.eng.Fail(st, t, session.CodeExpired, "not-after passed while the command waited for its turn")
		return nil, []Event{{Kind: EventDenied, Peer: peer.Name, Command: t.Command, Detail: "expired while it waited"}}, pkg, err
	}
	pol, err := n.policyFor(tx, peer.Name)
	if err != nil {
		return nil, nil, nil, err
	}
	if req.Name == commands.CmdPull {
		// The node runs it (stream_file.go): the peer's read directories govern it, not the
		// allow list.
		if cerr := n.checkTransfer(tx, peer.Name, req); cerr != nil {
			if !errors.Is(cerr, ErrPathDenied) {
				return nil, nil, nil, cerr
			}
			ev := Event{Kind: EventDenied, Peer: peer.Name, Command: t.Command, Detail: cerr.Error()}
			pkg, err := n.eng.Fail(st, t, session.CodeDenied, cerr.Error())
			return nil, []Event{ev}, pkg, err
		}
		return &execution{ticket: t, raw: req, req: req, policy: pol, peer: peer}, nil, nil, nil
	}
	checked, cerr := n.reg.Check(req, pol)
	if cerr != nil {
		ev := Event{Kind: EventDenied, Peer: peer.Name, Command: t.Command, Detail: cerr.Error()}
		pkg, err := n.eng.Fail(st, t, session.CodeDenied, cerr.Error())
		return nil, []Event{ev}, pkg, err
	}
	return &execution{ticket: t, raw: req, req: checked, policy: pol, peer: peer}, nil, nil, nil
}

func joinNote(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

// execute runs a cleared command after its Executing record committed, then commits the answer.
// ctx is the executor's: it ends only when the agent stops, and then the command is ended (its
// whole process tree) and that is its result. next, if not nil, is the peer's command queued
// behind it: its turn comes with this answer, so the same transaction checks it (atTurn) and
// records it Executing, saving a commit per command in a backlog; execute then sets next.started,
// or next.answered when the check answered it instead.
func (n *Node) execute(ctx context.Context, x *execution, next *execution) error {
	if x.req.Name == commands.CmdPull {
		res := n.runPull(ctx, x)
		if ctx.Err() != nil && res.Outcome == commands.OutcomeCancelled {
			// The agent stops: a pull is not ended but left Executing, and goes on from its
			// last chunk at the next start (Recover, resumePull).
			n.unsettled.Store(true)
			return nil
		}
		return n.answer(ctx, x, next, res)
	}
	so, serr := n.streamOutput(ctx, x)
	if serr != nil {
		// No spool: the output goes inline, cut to what fits in the answer, as for a
		// controller that asked for no stream.
		n.log.Warn("cannot spool the output; it is sent inline and capped", "op", "execute", "cmd_id", x.ticket.Command.String(), "err", serr)
	}
	res := n.reg.Run(ctx, x.req, x.policy)
	if so != nil {
		res = so.finish(ctx, res)
	}
	return n.answer(ctx, x, next, res)
}

// answer records the answer of a command that ran, and takes next's turn (see execute).
func (n *Node) answer(ctx context.Context, x *execution, next *execution, res commands.Result) error {
	n.emit(executed(x, res))
	frame, err := encodeResult(res)
	if err != nil {
		return err
	}
	var (
		nextRun *execution
		nextEvs []Event
		nextAns bool
	)
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		pkg, err := n.eng.Complete(st, x.ticket, frame)
		if err != nil {
			return err
		}
		if err := enqueue(tx, x.peer.Address, pkg); err != nil {
			return err
		}
		if next == nil || ctx.Err() != nil {
			return nil
		}
		run, evs, npkg, err := n.atTurn(tx, st, next.ticket, next.raw)
		if err != nil {
			return err
		}
		nextEvs = evs
		if run == nil {
			nextAns = true
			if npkg == nil {
				return nil
			}
			return enqueue(tx, next.peer.Address, npkg)
		}
		nextRun = run
		return n.eng.Start(st, next.ticket)
	})
	if err != nil {
		n.unsettled.Store(true) // left Executing: the next maintenance round answers it
		return err
	}
	for _, ev := range nextEvs {
		n.emit(ev)
	}
	if nextRun != nil {
		next.req, next.policy, next.peer, next.started = nextRun.req, nextRun.policy, nextRun.peer, true
	}
	if next != nil {
		next.answered = nextAns
	}
	if err := n.flushSoon(context.WithoutCancel(ctx)); err != nil {
		n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
	}
	return nil
}

// answerNow runs a pure command (commands.Registry.Pure) inside the transaction that accepted it
// and records its answer: Accepted, Executing and Done in one commit.
func (n *Node) answerNow(st TxStore, x *execution) (Event, []byte, error) {
	res := n.reg.Run(context.Background(), x.req, x.policy)
	ev := executed(x, res)
	frame, err := encodeResult(res)
	if err != nil {
		return ev, nil, err
	}
	if err := n.eng.Start(st, x.ticket); err != nil {
		return ev, nil, err
	}
	pkg, err := n.eng.Complete(st, x.ticket, frame)
	return ev, pkg, err
}

// executed is the event of a command that ran.
func executed(x *execution, res commands.Result) Event {
	return Event{Kind: EventExecuted, Peer: x.peer.Name, Command: x.ticket.Command, Detail: fmt.Sprintf("%s exit %d in %s", describe(x.req), res.ExitCode, res.Duration.Round(1e5))}
}

func describe(r commands.Request) string {
	if r.Name == "exec" && len(r.Argv) > 0 {
		return r.Argv[0]
	}
	return r.Name
}

// Recover settles the commands a crash (or a failed commit) left in the ledger: one left
// Executing may have run, so it is answered "outcome unknown" and never runs again by itself
// (THREATS row 25); one left Accepted never started, so it is handed to the executor again, its
// peer's allow list checked anew. Commands the executor holds are left alone.
func (n *Node) Recover(ctx context.Context) error {
	// A read-only look first: after a clean start it finds nothing, and then writes nothing. It
	// reads only the entries the ledger lists open (ForEachOpenLedger), never the answered ones
	// with their cached answers: a restart costs the unfinished commands, not the history. An
	// answered entry still listed open (the state was written before schema 4) is closed below.
	any := false
	if err := n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachOpenLedger(func(_, _ [16]byte, blob []byte) error {
			e, err := decode[session.LedgerEntry](blob, "ledger entry")
			if err != nil {
				return err
			}
			if e.State == session.Done || !n.exec.holds(e.Peer, e.Command) {
				any = true
			}
			return nil
		})
	}); err != nil || !any {
		return err
	}
	var (
		runs   []*execution
		events []Event
	)
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		var stuck []*session.LedgerEntry
		if err := tx.ForEachOpenLedger(func(peer, cmd [16]byte, blob []byte) error {
			e, err := decode[session.LedgerEntry](blob, "ledger entry")
			if err != nil {
				return err
			}
			if e.State == session.Done {
				return tx.CloseLedger(peer, cmd)
			}
			if !n.exec.holds(e.Peer, e.Command) {
				stuck = append(stuck, e)
			}
			return nil
		}); err != nil {
			return err
		}
		// Each peer's accepted commands run in the order they were accepted. AcceptedAt is in
		// milliseconds, and a batch of mail is accepted within one: within a session the
		// sender's sequence number breaks the tie (the ledger's key order, by random command
		// id, would not).
		slices.SortStableFunc(stuck, acceptedOrder)
		for _, e := range stuck {
			peer, ok, err := tx.PeerByFingerprint(e.Peer)
			if err != nil {
				return err
			}
			var pkg []byte
			switch {
			case e.State == session.Accepted && ok:
				x, ev, answer, err := n.clear(tx, st, e.Ticket, e.Payload)
				if err != nil {
					return err
				}
				events = append(events, ev...)
				if x != nil {
					runs = append(runs, x)
					n.log.Info("command accepted before a restart runs now", "op", "recover", "cmd_id", e.Command.String(), "peer", peer.Name)
					continue
				}
				pkg = answer
			case e.State == session.Accepted:
				// Its peer was removed meanwhile: it does not run, and there is no one to tell.
				if pkg, err = n.eng.Fail(st, e.Ticket, session.CodeDenied, "the peer was removed before the command ran"); err != nil {
					return err
				}
			default:
				if ok {
					// A pull goes on from its last chunk; a push waits for its chunks.
					x, err := n.resumePull(tx, e, peer)
					if err != nil {
						return err
					}
					if x != nil {
						runs = append(runs, x)
						n.log.Info("a pull stopped by a restart goes on", "op", "recover", "cmd_id", e.Command.String(), "peer", peer.Name)
						continue
					}
					if in, waiting, err := tx.StreamIn(e.Peer, e.Command); err != nil {
						return err
					} else if waiting && in.Path != "" {
						continue
					}
				}
				if pkg, err = n.eng.Fail(st, e.Ticket, session.CodeOutcomeUnknown, "the agent stopped while the command ran; it may or may not have completed and will not run again"); err != nil {
					return err
				}
				n.log.Warn("command left executing answered outcome-unknown", "op", "recover", "cmd_id", e.Command.String(), "peer", peer.Name)
			}
			if ok && pkg != nil {
				if err := enqueue(tx, peer.Address, pkg); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range events {
		n.emit(e)
	}
	for _, x := range runs {
		n.exec.dispatch(x)
	}
	return n.flushSoon(ctx)
}

// acceptedOrder orders ledger entries by when they were accepted, then by their ticket's place in
// its session.
func acceptedOrder(a, b *session.LedgerEntry) int {
	if c := cmp.Compare(a.AcceptedAt, b.AcceptedAt); c != 0 {
		return c
	}
	if a.Ticket != nil && b.Ticket != nil && a.Ticket.Session == b.Ticket.Session {
		return cmp.Compare(a.Ticket.Seq, b.Ticket.Seq)
	}
	return 0
}

// deliver records a command's final answer: its result (or why it could not be read) and what
// the fleet view and status reports learn from it.
func (n *Node) deliver(tx *keystore.Tx, peerName string, cmd session.CommandID, res commands.Result, derr error) error {
	var kind string // the request's name, and when it was sent, for the fleet view
	var sent time.Time
	if err := n.recordResult(tx, cmd, func(r *keystore.Result) {
		kind, sent = r.Request, r.Sent
		if derr != nil {
			r.Status, r.Error, r.ExitCode = StatusFailed, derr.Error(), -1
			return
		}
		r.Status, r.ExitCode, r.Stdout, r.Stderr, r.Error = StatusDone, res.ExitCode, res.Stdout, res.Stderr, res.Error
		// How it ended travels as data (commands.Outcome); Error is for people only.
		if o := res.EffectiveOutcome(); o != commands.OutcomeUnknown {
			r.Outcome = o.String()
		}
		r.Signal, r.Started, r.Duration = res.Signal, res.Started, res.Duration
		r.StdoutTruncated, r.StderrTruncated = res.StdoutTruncated, res.StderrTruncated
		r.Streamed, r.StdoutSize, r.StderrSize = res.Chunks > 0, res.StdoutSize, res.StderrSize
		if res.Undelivered != "" {
			// It ran, but its output is lost for good: not a success to report as one.
			r.Status = StatusFailed
			r.Error = joinNote(fmt.Sprintf("ran on the peer (exit code %d), but its output could not be mailed back: %s", res.ExitCode, res.Undelivered), res.Error)
		}
		if res.Info != nil {
			r.Stdout = []byte(res.Info.String())
		}
		if res.StdoutTruncated || res.StderrTruncated {
			r.Error = joinNote(r.Error, "output truncated by the peer's cap")
		}
		if res.TimedOut {
			r.Error = joinNote(r.Error, "timed out on the peer")
		}
	}); err != nil {
		return err
	}
	if derr == nil {
		if err := n.noteAnswer(tx, peerName, kind, sent, res); err != nil {
			return err
		}
		if err := n.reportAnswered(tx, peerName, cmd, kind, res, 0); err != nil {
			return err
		}
	}
	if kind == commands.CmdStream {
		// The node's own ask about a stream (stream_ask.go): answered, it leaves no record
		// among the operator's commands.
		return tx.DeleteResult(cmd)
	}
	return nil
}
