package keystore

import (
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"time"
)

// QueuedCommand is a command waiting for a session with its peer: the request frame to seal once
// a session is confirmed, its lifetime, and when it was issued. Commands for one peer go out, and
// so run, in the order they were issued. Frame is the command in the clear, so LogValue shows its
// size only.
//
// Layout:
//
//	send_queue          cmd id (16)                    -> JSON
//	send_queue_by_peer  peer (16) || T(queued) || cmd id -> ""
//
// Records written before the issue time was kept have a zero Queued: they order first.
type QueuedCommand struct {
	ID       [16]byte
	Peer     [16]byte // the peer's fingerprint
	Frame    []byte
	NotAfter time.Time
	Queued   time.Time
}

type queuedRecord struct {
	Peer     string    `json:"peer"` // hex
	Frame    []byte    `json:"frame"`
	NotAfter time.Time `json:"not_after"`
	Queued   time.Time `json:"queued,omitzero"`
}

const queueIndexLen = 16 + timeKeyLen + 16

// LogValue shows the ids and the frame's size, never the frame.
func (q QueuedCommand) LogValue() slog.Value {
	return slog.GroupValue(slog.Any("cmd_id", id16(q.ID)), slog.Any("peer", id16(q.Peer)), slog.Int("frame_bytes", len(q.Frame)))
}

func (q QueuedCommand) validate() error {
	if err := checkID("command", q.ID); err != nil {
		return err
	}
	if err := checkID("peer", q.Peer); err != nil {
		return err
	}
	if err := checkBlob("queued frame", q.Frame); err != nil {
		return err
	}
	if err := jsonTime("queued command not-after", q.NotAfter); err != nil {
		return err
	}
	return jsonTime("queued command issue time", q.Queued)
}

func (q QueuedCommand) record() queuedRecord {
	return queuedRecord{hex.EncodeToString(q.Peer[:]), q.Frame, q.NotAfter.UTC(), q.Queued.UTC()}
}

// indexKey is the command's row in send_queue_by_peer.
func (q QueuedCommand) indexKey() []byte {
	k := make([]byte, queueIndexLen)
	copy(k, q.Peer[:])
	putTimeKey(k[16:], q.Queued)
	copy(k[16+timeKeyLen:], q.ID[:])
	return k
}

// decodeQueued decodes a send_queue record under its key. Errors wrap ErrCorrupt and come with
// the zero value.
func decodeQueued(k, v []byte) (QueuedCommand, error) {
	if len(k) != 16 {
		return QueuedCommand{}, corruptf("queued command key %x is %d bytes", k, len(k))
	}
	var rec queuedRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return QueuedCommand{}, corruptf("queued command %x: %v", k, err)
	}
	q := QueuedCommand{Frame: rec.Frame, NotAfter: rec.NotAfter, Queued: rec.Queued}
	copy(q.ID[:], k)
	if err := decodeHexID(rec.Peer, &q.Peer); err != nil {
		return QueuedCommand{}, corruptf("queued command %x: peer %q: %v", k, rec.Peer, err)
	}
	if err := q.validate(); err != nil {
		return QueuedCommand{}, corruptf("queued command %x: %v", k, err)
	}
	return q, nil
}

// decodeHexID decodes 32 lowercase hex digits, the only form keystore writes.
func decodeHexID(s string, dst *[16]byte) error {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 || hex.EncodeToString(b) != s {
		return invalidf("not 32 lowercase hex digits")
	}
	copy(dst[:], b)
	return nil
}

func (tx *Tx) queued(id []byte) (QueuedCommand, bool, error) {
	v := tx.bucket(bSendQueue).Get(id)
	if v == nil {
		return QueuedCommand{}, false, nil
	}
	q, err := decodeQueued(id, v)
	return q, err == nil, err
}

// Queued returns the queued command id.
func (tx *Tx) Queued(id [16]byte) (QueuedCommand, bool, error) {
	if err := checkID("command", id); err != nil {
		return QueuedCommand{}, false, err
	}
	return tx.queued(id[:])
}

// PutQueued queues q, or replaces the queued command with its id. The same id under another
// peer is refused (ErrConflict), as for pending commands.
func (tx *Tx) PutQueued(q QueuedCommand) error {
	if err := q.validate(); err != nil {
		return err
	}
	old, ok, err := tx.queued(q.ID[:])
	if err != nil {
		return err
	}
	if ok {
		if old.Peer != q.Peer {
			return conflictf("queued command %x already belongs to another peer", q.ID)
		}
		if err := tx.bucket(bSendQueueByPeer).Delete(old.indexKey()); err != nil {
			return err
		}
	}
	if err := putJSON(tx.bucket(bSendQueue), clone(q.ID[:]), q.record()); err != nil {
		return err
	}
	if err := tx.bucket(bSendQueueByPeer).Put(q.indexKey(), []byte{}); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_queued", slog.Any("peer", id16(q.Peer)), slog.Any("cmd_id", id16(q.ID)))
	}
	return nil
}

// DeleteQueued removes a queued command (ErrNotFound if absent).
func (tx *Tx) DeleteQueued(id [16]byte) error {
	if err := checkID("command", id); err != nil {
		return err
	}
	q, ok, err := tx.queued(id[:])
	if err != nil {
		return err
	}
	if !ok {
		return notFoundf("queued command %x", id)
	}
	if err := tx.bucket(bSendQueue).Delete(id[:]); err != nil {
		return err
	}
	if err := tx.bucket(bSendQueueByPeer).Delete(q.indexKey()); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("delete_queued", slog.Any("peer", id16(q.Peer)), slog.Any("cmd_id", id16(id)))
	}
	return nil
}

// QueuedFor calls fn with peer's queued commands in the order they were issued (Queued, then
// id), walking that peer's part of the index only. The commands are read before the first call,
// so fn may delete or put queued commands; an error from fn stops the walk and is returned.
func (tx *Tx) QueuedFor(peer [16]byte, fn func(QueuedCommand) error) error {
	if err := checkID("peer", peer); err != nil {
		return err
	}
	var ids [][]byte
	scanPrefix(tx.bucket(bSendQueueByPeer), peer[:], func(k []byte) {
		if len(k) == queueIndexLen {
			ids = append(ids, clone(k[16+timeKeyLen:]))
		}
	})
	return tx.eachQueued(ids, fn)
}

// ForEachQueued calls fn with every queued command, in id order; like QueuedFor, fn may change
// the queue.
func (tx *Tx) ForEachQueued(fn func(QueuedCommand) error) error {
	var ids [][]byte
	_ = tx.bucket(bSendQueue).ForEach(func(k, _ []byte) error {
		ids = append(ids, clone(k))
		return nil
	})
	return tx.eachQueued(ids, fn)
}

func (tx *Tx) eachQueued(ids [][]byte, fn func(QueuedCommand) error) error {
	qs := make([]QueuedCommand, 0, len(ids))
	for _, id := range ids {
		q, ok, err := tx.queued(id)
		if err != nil {
			return err
		}
		if !ok {
			return corruptf("send_queue_by_peer names missing command %x", id)
		}
		qs = append(qs, q)
	}
	for _, q := range qs {
		if err := fn(q); err != nil {
			return err
		}
	}
	return nil
}

// DeleteQueuedFor removes every command queued for peer and returns their ids, in issue order.
func (tx *Tx) DeleteQueuedFor(peer [16]byte) ([][16]byte, error) {
	var ids [][16]byte
	err := tx.QueuedFor(peer, func(q QueuedCommand) error {
		ids = append(ids, q.ID)
		return tx.DeleteQueued(q.ID)
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}
