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
//
// The expiry index lets PurgeLedger find expired entries by a range scan
// without decoding blobs (which keystore cannot read). notAfter is copied
// into the ledger value so an overwrite can find and drop its old index row.

// Ledger returns the ledger blob for (peer, cmd).
func (tx *Tx) Ledger(peer, cmd [16]byte) ([]byte, bool, error) {
	if err := checkPair(peer, cmd); err != nil {
		return nil, false, err
	}
	v := tx.bucket(bLedger).Get(pairKey(peer, cmd))
	if v == nil {
		return nil, false, nil
	}
	if len(v) <= timeKeyLen {
		return nil, false, corruptf("ledger %x/%x: value is %d bytes", peer, cmd, len(v))
	}
	return clone(v[timeKeyLen:]), true, nil
}

// PutLedger stores or replaces the ledger entry for (peer, cmd), kept until
// PurgeLedger is called with a time after notAfter. A zero notAfter is
// refused: an entry must say how long it guards against replay.
func (tx *Tx) PutLedger(peer, cmd [16]byte, notAfter time.Time, blob []byte) error {
	if err := checkPair(peer, cmd); err != nil {
		return err
	}
	if notAfter.IsZero() {
		return invalidf("ledger entry %x has no expiry", cmd)
	}
	if err := checkBlob("ledger", blob); err != nil {
		return err
	}
	led, exp := tx.bucket(bLedger), tx.bucket(bLedgerExpiry)
	k := pairKey(peer, cmd)
	if old := led.Get(k); old != nil {
		if len(old) < timeKeyLen {
			return corruptf("ledger %x/%x: value is %d bytes", peer, cmd, len(old))
		}
		if err := exp.Delete(append(clone(old[:timeKeyLen]), k...)); err != nil {
			return err
		}
	}
	v := make([]byte, timeKeyLen+len(blob))
	putTimeKey(v, notAfter)
	copy(v[timeKeyLen:], blob)
	if err := led.Put(k, v); err != nil {
		return err
	}
	if err := exp.Put(append(timeKey(notAfter), k...), []byte{}); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_ledger", slog.Any("peer", id16(peer)), slog.Any("cmd_id", id16(cmd)))
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
	}
	if n := len(doomed); n > 0 {
		tx.btx.OnCommit(func() { tx.s.log.Debug("ledger purged", "op", "purge_ledger", "count", n) })
	}
	return len(doomed), nil
}

// ForEachLedger calls fn for every ledger entry in (peer, cmd) order. The
// entries are copied out first, so fn may write to the ledger; an error from
// fn stops the walk and is returned.
func (tx *Tx) ForEachLedger(fn func(peer, cmd [16]byte, blob []byte) error) error {
	type entry struct {
		k, blob []byte
	}
	var all []entry
	err := tx.bucket(bLedger).ForEach(func(k, v []byte) error {
		if len(k) != 32 || len(v) <= timeKeyLen {
			return corruptf("ledger key %x: bad shape", k)
		}
		all = append(all, entry{clone(k), clone(v[timeKeyLen:])})
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range all {
		peer, cmd := splitPair(e.k)
		if err := fn(peer, cmd, e.blob); err != nil {
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
