package keystore

import (
	"bytes"
	"log/slog"
	"time"
)

// The command ledger remembers every command id a peer has used until the
// command's notAfter, so a replayed package is recognised. Layout:
//
//	ledger:        peer (16) || cmd (16)                 -> notAfter (12) || blob
//	ledger_expiry: notAfter (12) || peer (16) || cmd (16) -> "" (empty)
//	ledger_open:   peer (16) || cmd (16)                 -> "" (empty)
//
// The expiry index lets PurgeLedger find expired entries by a range scan
// without decoding blobs (which keystore cannot read). notAfter is copied
// into the ledger value so an overwrite can find and drop its old index row.
//
// ledger_open lists the entries that are not finished (their caller said so
// when it put them): the few a restart must look at. A finished entry holds a
// whole cached answer (about twice the size of the command's output), and a
// node that answered many large commands must not read them all to find the
// unfinished ones: ForEachOpenLedger reads only these rows, and so a restart
// costs the unfinished entries, not the history.

// Ledger returns the ledger blob for (peer, cmd).
func (tx *Tx) Ledger(peer, cmd [16]byte) ([]byte, bool, error) {
	if err := checkPair(peer, cmd); err != nil {
		return nil, false, err
	}
	k := pairKey(peer, cmd)
	v := tx.bucket(bLedger).Get(k)
	if v == nil {
		return nil, false, nil
	}
	b, err := tx.ledgerBlob(k, v)
	return b, err == nil, err
}

// PutLedger stores or replaces the ledger entry for (peer, cmd), kept until
// PurgeLedger is called with a time after notAfter, and lists it as open
// (ForEachOpenLedger), which is always safe: PutLedgerEntry says whether it is.
// A zero notAfter is refused: an entry must say how long it guards against
// replay.
func (tx *Tx) PutLedger(peer, cmd [16]byte, notAfter time.Time, blob []byte) error {
	return tx.PutLedgerEntry(peer, cmd, notAfter, true, blob)
}

// PutLedgerEntry is PutLedger that says whether the entry is open (not
// finished: a command accepted or executing) or finished (answered). Only open
// entries are listed by ForEachOpenLedger.
func (tx *Tx) PutLedgerEntry(peer, cmd [16]byte, notAfter time.Time, open bool, blob []byte) error {
	if err := checkPair(peer, cmd); err != nil {
		return err
	}
	if notAfter.IsZero() {
		return invalidf("ledger entry %x has no expiry", cmd)
	}
	if err := checkBlob("ledger", blob); err != nil {
		return err
	}
	led, exp, spool := tx.bucket(bLedger), tx.bucket(bLedgerExpiry), tx.bucket(bLedgerSpool)
	k := pairKey(peer, cmd)
	// A large blob goes to a file (spool.go), written before the commit; the entry keeps its hash.
	var sum []byte
	if len(blob) > SpoolThreshold {
		h, err := tx.spoolWrite(blob)
		if err != nil {
			return err
		}
		sum = h[:]
	}
	if old := led.Get(k); old != nil {
		if len(old) < timeKeyLen {
			return corruptf("ledger %x/%x: value is %d bytes", peer, cmd, len(old))
		}
		if err := exp.Delete(append(clone(old[:timeKeyLen]), k...)); err != nil {
			return err
		}
		if oldSum := spool.Get(k); oldSum != nil {
			tx.spoolForget(clone(oldSum), sum)
		}
	}
	v := make([]byte, timeKeyLen, timeKeyLen+len(blob))
	putTimeKey(v, notAfter)
	if sum == nil {
		v = append(v, blob...)
		if err := spool.Delete(k); err != nil {
			return err
		}
	} else if err := spool.Put(clone(k), sum); err != nil {
		return err
	}
	if err := led.Put(k, v); err != nil {
		return err
	}
	if err := exp.Put(append(timeKey(notAfter), k...), []byte{}); err != nil {
		return err
	}
	if err := tx.markLedgerOpen(k, open); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_ledger", slog.Any("peer", id16(peer)), slog.Any("cmd_id", id16(cmd)), slog.Bool("open", open))
	}
	return nil
}

// PurgeLedger deletes every entry whose notAfter is strictly before `before`
// and returns how many it deleted.
func (tx *Tx) PurgeLedger(before time.Time) (int, error) {
	led, exp := tx.bucket(bLedger), tx.bucket(bLedgerExpiry)
	bound := timeKey(before)
	var doomed [][]byte
	c := exp.Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:timeKeyLen], bound) < 0; k, _ = c.Next() {
		doomed = append(doomed, clone(k))
	}
	// Delete after the scan: mutating a bucket under a live cursor skips keys.
	for _, k := range doomed {
		if err := led.Delete(k[timeKeyLen:]); err != nil {
			return 0, err
		}
		if err := exp.Delete(k); err != nil {
			return 0, err
		}
		if err := tx.bucket(bLedgerOpen).Delete(k[timeKeyLen:]); err != nil {
			return 0, err
		}
		if sum := tx.bucket(bLedgerSpool).Get(k[timeKeyLen:]); sum != nil {
			tx.spoolForget(clone(sum), nil)
			if err := tx.bucket(bLedgerSpool).Delete(k[timeKeyLen:]); err != nil {
				return 0, err
			}
		}
	}
	if n := len(doomed); n > 0 {
		tx.btx.OnCommit(func() { tx.s.log.Debug("ledger purged", "op", "purge_ledger", "count", n) })
	}
	return len(doomed), nil
}

// markLedgerOpen adds the ledger key k to ledger_open, or removes it.
func (tx *Tx) markLedgerOpen(k []byte, open bool) error {
	if open {
		return tx.bucket(bLedgerOpen).Put(clone(k), []byte{})
	}
	return tx.bucket(bLedgerOpen).Delete(k)
}

// CloseLedger marks the entry for (peer, cmd) finished without rewriting it:
// ForEachOpenLedger no longer lists it. For an entry listed open that its
// caller finds finished (one written by PutLedger, or before schema 4, which
// lists every entry open). Closing an entry that is not listed does nothing.
func (tx *Tx) CloseLedger(peer, cmd [16]byte) error {
	if err := checkPair(peer, cmd); err != nil {
		return err
	}
	return tx.markLedgerOpen(pairKey(peer, cmd), false)
}

// ForEachLedger calls fn for every ledger entry in (peer, cmd) order, one at
// a time: it lists the keys first and reads each entry just before its call,
// so fn may write to the ledger, and the walk holds one entry, not the
// ledger, in memory. An entry deleted by fn before its turn is skipped. An
// error from fn stops the walk and is returned. It reads every entry with its
// cached answer: ForEachOpenLedger is what a restart needs.
func (tx *Tx) ForEachLedger(fn func(peer, cmd [16]byte, blob []byte) error) error {
	return tx.eachLedger(bLedger, fn)
}

// ForEachOpenLedger is ForEachLedger over the entries listed open: put with
// open true (PutLedgerEntry, PutLedger) and not put finished or closed since.
// It never reads a finished entry, so its cost is the open entries, however
// many answers the ledger holds.
func (tx *Tx) ForEachOpenLedger(fn func(peer, cmd [16]byte, blob []byte) error) error {
	return tx.eachLedger(bLedgerOpen, fn)
}

// eachLedger walks the keys of keys (ledger or ledger_open) and calls fn with
// each entry, read from the ledger just before the call.
func (tx *Tx) eachLedger(keys []byte, fn func(peer, cmd [16]byte, blob []byte) error) error {
	var all [][]byte
	err := tx.bucket(keys).ForEach(func(k, _ []byte) error {
		if len(k) != 32 {
			return corruptf("%s key %x: bad shape", keys, k)
		}
		all = append(all, clone(k))
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range all {
		if tx.bucket(keys).Get(k) == nil {
			continue // deleted (or closed) by fn before its turn
		}
		v := tx.bucket(bLedger).Get(k)
		if v == nil {
			return corruptf("%s names missing ledger entry %x", keys, k)
		}
		blob, err := tx.ledgerBlob(k, v)
		if err != nil {
			return err
		}
		peer, cmd := splitPair(k)
		if err := fn(peer, cmd, blob); err != nil {
			return err
		}
	}
	return nil
}

func checkPair(peer, cmd [16]byte) error {
	if err := checkID("peer", peer); err != nil {
		return err
	}
	return checkID("command", cmd)
}
