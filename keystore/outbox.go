package keystore

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// OutboxItem is a sealed package waiting to be mailed. Package is ciphertext,
// not secret, but it is large, so LogValue shows its size instead.
//
// Layout: outbox: id (8, big-endian) -> JSON. Ids come from the bucket's
// sequence, so they are never reused, even after deletes.
type OutboxItem struct {
	ID          uint64
	To          string
	Package     []byte
	Attempts    int
	NextAttempt time.Time
	Created     time.Time
	LastError   string
}

type outboxRecord struct {
	ID          uint64    `json:"id"`
	To          string    `json:"to"`
	Package     []byte    `json:"package"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt"`
	Created     time.Time `json:"created"`
	LastError   string    `json:"last_error,omitempty"`
}

// LogValue shows the id, recipient, size and attempts, not the package.
func (o OutboxItem) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Uint64("id", o.ID),
		slog.String("to", o.To),
		slog.Int("package_bytes", len(o.Package)),
		slog.Int("attempts", o.Attempts),
	)
}

func (o OutboxItem) validate() error {
	if err := checkAddress("outbox recipient", o.To); err != nil {
		return err
	}
	if err := checkBlob("outbox package", o.Package); err != nil {
		return err
	}
	if o.Attempts < 0 {
		return invalidf("outbox item has %d attempts", o.Attempts)
	}
	return nil
}

func (o OutboxItem) record() outboxRecord {
	return outboxRecord{o.ID, o.To, o.Package, o.Attempts, o.NextAttempt.UTC(), o.Created.UTC(), o.LastError}
}

// Enqueue adds an item and returns the id it assigned. item.ID must be zero.
// A zero Created is set to now and a zero NextAttempt to Created (due now).
func (tx *Tx) Enqueue(item OutboxItem) (uint64, error) {
	if item.ID != 0 {
		return 0, invalidf("Enqueue assigns the id; got %d", item.ID)
	}
	if err := item.validate(); err != nil {
		return 0, err
	}
	b := tx.bucket(bOutbox)
	id, err := b.NextSequence()
	if err != nil {
		return 0, err
	}
	item.ID = id
	if item.Created.IsZero() {
		item.Created = tx.now()
	}
	if item.NextAttempt.IsZero() {
		item.NextAttempt = item.Created
	}
	if err := putJSON(b, u64Key(id), item.record()); err != nil {
		return 0, err
	}
	if tx.debugOn() {
		tx.logOp("enqueue", slog.Uint64("outbox_id", id))
	}
	return id, nil
}

// Outbox lists every item ordered by id (oldest first).
func (tx *Tx) Outbox() ([]OutboxItem, error) {
	var out []OutboxItem
	err := tx.bucket(bOutbox).ForEach(func(k, v []byte) error {
		o, err := decodeOutbox(k, v)
		if err != nil {
			return err
		}
		out = append(out, o)
		return nil
	})
	return out, err
}

// DueOutbox lists the items whose NextAttempt is at or before now, earliest
// NextAttempt first, then by id. Backed-off items therefore do not hold up
// newer ones that are due.
func (tx *Tx) DueOutbox(now time.Time) ([]OutboxItem, error) {
	all, err := tx.Outbox()
	if err != nil {
		return nil, err
	}
	due := slices.DeleteFunc(all, func(o OutboxItem) bool { return o.NextAttempt.After(now) })
	slices.SortStableFunc(due, func(a, b OutboxItem) int {
		if c := a.NextAttempt.Compare(b.NextAttempt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return due, nil
}

// PutOutbox updates an existing item (attempts, next attempt, last error).
// An id that is not in the outbox is ErrNotFound: re-creating a delivered
// item would mail it twice.
func (tx *Tx) PutOutbox(item OutboxItem) error {
	if err := item.validate(); err != nil {
		return err
	}
	b := tx.bucket(bOutbox)
	k := u64Key(item.ID)
	if item.ID == 0 || b.Get(k) == nil {
		return notFoundf("outbox item %d", item.ID)
	}
	if err := putJSON(b, k, item.record()); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_outbox", slog.Uint64("outbox_id", item.ID), slog.Int("attempts", item.Attempts))
	}
	return nil
}

// DeleteOutbox removes a delivered or abandoned item (ErrNotFound if absent).
func (tx *Tx) DeleteOutbox(id uint64) error {
	return deleteExisting(tx, bOutbox, u64Key(id), fmt.Sprintf("outbox item %d", id), "delete_outbox", slog.Uint64("outbox_id", id))
}

func decodeOutbox(k, v []byte) (OutboxItem, error) {
	var r outboxRecord
	if len(k) != 8 {
		return OutboxItem{}, corruptf("outbox key %x is %d bytes", k, len(k))
	}
	if err := json.Unmarshal(v, &r); err != nil {
		return OutboxItem{}, corruptf("outbox item %x: %v", k, err)
	}
	if r.ID != binary.BigEndian.Uint64(k) {
		return OutboxItem{}, corruptf("outbox item under key %d says id %d", binary.BigEndian.Uint64(k), r.ID)
	}
	what := fmt.Sprintf("outbox item %d", r.ID)
	if err := errors.Join(storedTime(what, "next_attempt", r.NextAttempt), storedTime(what, "created", r.Created)); err != nil {
		return OutboxItem{}, err
	}
	return OutboxItem(r), nil
}
