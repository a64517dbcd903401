package keystore

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Tx is one bbolt transaction seen through keystore's typed accessors. It is
// valid only inside the Update or View callback that received it.
//
// Every value is copied in and out: bbolt values point into the mmap and die
// with the transaction, and bbolt keeps references to Put values until
// commit, so neither side may alias the other.
//
// Caller's contract (see doc.go): one Update per received package, so a
// package's whole effect — ledger entry, session advance, outbox reply —
// commits or vanishes together.
type Tx struct {
	s   *Store
	btx *bolt.Tx
}

func (tx *Tx) bucket(name []byte) *bolt.Bucket { return tx.btx.Bucket(name) }

func (tx *Tx) now() time.Time { return tx.s.now().UTC() }

// debugOn says whether per-operation debug logging is wanted. Call sites
// check it before building attributes so a silent logger costs nothing.
func (tx *Tx) debugOn() bool { return tx.s.log.Enabled(context.Background(), slog.LevelDebug) }

// logOp logs one staged write. Only the op name, ids and counts are ever
// passed here — never a blob, a record or a key.
func (tx *Tx) logOp(op string, attrs ...slog.Attr) {
	tx.s.log.LogAttrs(context.Background(), slog.LevelDebug, "keystore write", append([]slog.Attr{slog.String("op", op)}, attrs...)...)
}

// get returns a copy of b[k] and whether it exists. It seeks with a cursor
// instead of Bucket.Get so an existing empty value is told apart from a
// missing one.
func get(b *bolt.Bucket, k []byte) ([]byte, bool) {
	ck, v := b.Cursor().Seek(k)
	if ck == nil || !bytes.Equal(ck, k) {
		return nil, false
	}
	return append([]byte{}, v...), true
}

// getJSON decodes b[k] into v. json.Unmarshal copies what it keeps, so the
// mmap'd bytes are not retained. Unknown fields are ignored so an older
// build can read a record a newer one wrote.
func getJSON(b *bolt.Bucket, k []byte, what string, v any) (bool, error) {
	raw := b.Get(k)
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, corruptf("%s %q: %v", what, k, err)
	}
	return true, nil
}

func putJSON(b *bolt.Bucket, k []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, raw)
}

// scanPrefix scans b for keys starting with prefix and calls fn with the
// key (valid only during fn).
func scanPrefix(b *bolt.Bucket, prefix []byte, fn func(k []byte)) {
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		fn(k)
	}
}

// deleteExisting deletes bucket[k], or returns ErrNotFound naming what.
func deleteExisting(tx *Tx, name, k []byte, what, op string, attrs ...slog.Attr) error {
	b := tx.bucket(name)
	if b.Get(k) == nil {
		return notFoundf("%s", what)
	}
	if err := b.Delete(k); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp(op, attrs...)
	}
	return nil
}
