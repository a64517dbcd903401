package keystore

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"time"
)

// The node bucket holds the engine's single records, each under a fixed key:
//
//	node  "mailbox"        -> JSON object: the mailbox settings (node owns their fields)
//	      "restore_floor"  -> T: commands issued before it that the ledger does not know are
//	                          answered outcome-unknown (docs/PROTOCOL.md section 16)
//	      "last_prune"     -> T: when the agent last looked for old processed mail
//	      "processed_mark" -> JSON ProcessedMark
//	      "failing_mail"   -> JSON FailingMail
//
// Get returns ok false for a missing record; Delete of a missing record is not an error.
var (
	nodeMailbox       = []byte("mailbox")
	nodeRestoreFloor  = []byte("restore_floor")
	nodeLastPrune     = []byte("last_prune")
	nodeProcessedMark = []byte("processed_mark")
	nodeFailingMail   = []byte("failing_mail")
)

// maxMailboxSettings bounds the settings object: a few host names and paths.
const maxMailboxSettings = 64 << 10

// ProcessedMark is the newest processed mail the start-up check has explained by a detected
// restore (node/restore.go): mail up to it is not counted again. Rebase asks the next check to
// record the newest processed mail as the mark.
type ProcessedMark struct {
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
	Rebase      bool   `json:"rebase,omitempty"`
}

// FailingMail counts the failed handlings of the mail at the inbox's head, so that an agent run
// by cron counts across its runs (node/process.go).
type FailingMail struct {
	UIDValidity uint32    `json:"uidvalidity"`
	UID         uint32    `json:"uid"`
	First       time.Time `json:"first"`
	Count       int       `json:"count"`
}

func (f FailingMail) validate() error {
	if f.Count < 0 {
		return invalidf("failing mail count %d", f.Count)
	}
	return jsonTime("failing mail first", f.First)
}

// jsonTime refuses a time JSON cannot hold (years outside 0-9999): json.Marshal would fail at
// commit time, or worse, after other writes in the same transaction had been staged.
func jsonTime(what string, t time.Time) error {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return invalidf("%s %s is outside years 0-9999", what, t.Format(time.RFC3339))
	}
	return nil
}

// decodeNodeEntry decodes one record of the node bucket into its type (json.RawMessage,
// time.Time, ProcessedMark or FailingMail). Errors wrap ErrCorrupt and come with a nil value.
func decodeNodeEntry(k, v []byte) (any, error) {
	switch {
	case bytes.Equal(k, nodeMailbox):
		if err := checkSettings(v); err != nil {
			return nil, corruptf("node/mailbox: %v", err)
		}
		return json.RawMessage(clone(v)), nil
	case bytes.Equal(k, nodeRestoreFloor), bytes.Equal(k, nodeLastPrune):
		if len(v) != timeKeyLen || !canonicalTimeKey(v) {
			return nil, corruptf("node/%s is not a %d-byte time", k, timeKeyLen)
		}
		return parseTimeKey(v), nil
	case bytes.Equal(k, nodeProcessedMark):
		var m ProcessedMark
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, corruptf("node/%s: %v", k, err)
		}
		return m, nil
	case bytes.Equal(k, nodeFailingMail):
		var f FailingMail
		if err := json.Unmarshal(v, &f); err != nil {
			return nil, corruptf("node/%s: %v", k, err)
		}
		if err := f.validate(); err != nil {
			return nil, corruptf("node/%s: %v", k, err)
		}
		return f, nil
	}
	return nil, corruptf("node: unknown key %q", k)
}

// encodeNodeEntry is decodeNodeEntry's inverse.
func encodeNodeEntry(val any) ([]byte, error) {
	switch v := val.(type) {
	case json.RawMessage:
		return clone(v), nil
	case time.Time:
		return timeKey(v), nil
	case FailingMail:
		v.First = v.First.UTC()
		return json.Marshal(v)
	default:
		return json.Marshal(v)
	}
}

// canonicalTimeKey: the nanoseconds are below 1e9, as timeKey writes them.
func canonicalTimeKey(k []byte) bool { return bytes.Equal(timeKey(parseTimeKey(k)), k) }

// checkSettings accepts one JSON object, bounded.
func checkSettings(v []byte) error {
	switch {
	case len(v) > maxMailboxSettings:
		return invalidf("mailbox settings are %d bytes, limit %d", len(v), maxMailboxSettings)
	case !json.Valid(v):
		return invalidf("mailbox settings are not JSON")
	case !bytes.HasPrefix(bytes.TrimLeft(v, " \t\r\n"), []byte("{")):
		return invalidf("mailbox settings are not a JSON object")
	}
	return nil
}

func (tx *Tx) nodeGet(k []byte) (any, bool, error) {
	v := tx.bucket(bNode).Get(k)
	if v == nil {
		return nil, false, nil
	}
	val, err := decodeNodeEntry(k, v)
	return val, err == nil, err
}

func (tx *Tx) nodePut(k []byte, val any) error {
	raw, err := encodeNodeEntry(val)
	if err != nil {
		return err
	}
	if err := tx.bucket(bNode).Put(k, raw); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_node", slog.String("key", string(k)))
	}
	return nil
}

func (tx *Tx) nodeDelete(k []byte) error {
	if err := tx.bucket(bNode).Delete(k); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("delete_node", slog.String("key", string(k)))
	}
	return nil
}

func (tx *Tx) nodeTime(k []byte) (time.Time, bool, error) {
	v, ok, err := tx.nodeGet(k)
	if !ok {
		return time.Time{}, false, err
	}
	return v.(time.Time), true, nil
}

// MailboxSettings returns the mailbox settings object as stored (a copy).
func (tx *Tx) MailboxSettings() ([]byte, bool, error) {
	v, ok, err := tx.nodeGet(nodeMailbox)
	if !ok {
		return nil, false, err
	}
	return []byte(v.(json.RawMessage)), true, nil
}

// PutMailboxSettings stores the mailbox settings: one JSON object of at most 64 KiB, whose fields
// are node's. It must not hold a password (the node keeps none in the state).
func (tx *Tx) PutMailboxSettings(settings []byte) error {
	if err := checkSettings(settings); err != nil {
		return err
	}
	return tx.nodePut(nodeMailbox, json.RawMessage(settings))
}

// DeleteMailboxSettings removes the mailbox settings.
func (tx *Tx) DeleteMailboxSettings() error { return tx.nodeDelete(nodeMailbox) }

// RestoreFloor returns the restore floor (in UTC).
func (tx *Tx) RestoreFloor() (time.Time, bool, error) { return tx.nodeTime(nodeRestoreFloor) }

// PutRestoreFloor stores the restore floor. Put it in the transaction that drops the sessions
// after a detected restore, so the floor and the remedy commit together.
func (tx *Tx) PutRestoreFloor(t time.Time) error { return tx.nodePut(nodeRestoreFloor, t) }

// DeleteRestoreFloor removes the restore floor.
func (tx *Tx) DeleteRestoreFloor() error { return tx.nodeDelete(nodeRestoreFloor) }

// LastPrune returns when processed mail was last pruned (in UTC).
func (tx *Tx) LastPrune() (time.Time, bool, error) { return tx.nodeTime(nodeLastPrune) }

// PutLastPrune stores when processed mail was last pruned.
func (tx *Tx) PutLastPrune(t time.Time) error { return tx.nodePut(nodeLastPrune, t) }

// DeleteLastPrune removes the last prune time.
func (tx *Tx) DeleteLastPrune() error { return tx.nodeDelete(nodeLastPrune) }

// ProcessedMark returns the processed-folder mark.
func (tx *Tx) ProcessedMark() (ProcessedMark, bool, error) {
	v, ok, err := tx.nodeGet(nodeProcessedMark)
	if !ok {
		return ProcessedMark{}, false, err
	}
	return v.(ProcessedMark), true, nil
}

// PutProcessedMark stores the processed-folder mark.
func (tx *Tx) PutProcessedMark(m ProcessedMark) error { return tx.nodePut(nodeProcessedMark, m) }

// DeleteProcessedMark removes the processed-folder mark.
func (tx *Tx) DeleteProcessedMark() error { return tx.nodeDelete(nodeProcessedMark) }

// FailingMail returns the failed-handling count of the mail at the inbox's head.
func (tx *Tx) FailingMail() (FailingMail, bool, error) {
	v, ok, err := tx.nodeGet(nodeFailingMail)
	if !ok {
		return FailingMail{}, false, err
	}
	return v.(FailingMail), true, nil
}

// PutFailingMail stores the failed-handling count (Count >= 0).
func (tx *Tx) PutFailingMail(f FailingMail) error {
	if err := f.validate(); err != nil {
		return err
	}
	return tx.nodePut(nodeFailingMail, f)
}

// DeleteFailingMail removes the failed-handling count.
func (tx *Tx) DeleteFailingMail() error { return tx.nodeDelete(nodeFailingMail) }
