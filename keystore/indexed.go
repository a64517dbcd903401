package keystore

import (
	"bytes"
	"log/slog"
)

// indexedBlobs is the shared shape of sessions and pending commands: an opaque
// protocol blob owned by one peer, looked up by its own id and listed by peer.
//
//	main bucket:  id (16)            -> peer (16) || blob
//	index bucket: peer (16) || id (16) -> "" (empty)
//
// The peer is kept in the main value so a delete knows which index row to
// remove without decoding the blob (keystore cannot decode it).
type indexedBlobs struct {
	main, index []byte
	kind        string // for errors
	idKey       string // log attribute for the id
	putOp       string
	deleteOp    string
}

var (
	sessionBlobs = indexedBlobs{bSessions, bSessionsByPeer, "session", "session_id", "put_session", "delete_session"}
	pendingBlobs = indexedBlobs{bPending, bPendingByPeer, "pending command", "cmd_id", "put_pending", "delete_pending"}
)

func (ix indexedBlobs) get(tx *Tx, id [16]byte) ([]byte, bool, error) {
	if err := checkID(ix.kind, id); err != nil {
		return nil, false, err
	}
	v := tx.bucket(ix.main).Get(id[:])
	if v == nil {
		return nil, false, nil
	}
	if len(v) <= 16 {
		return nil, false, corruptf("%s %x: value is %d bytes", ix.kind, id, len(v))
	}
	return clone(v[16:]), true, nil
}

func (ix indexedBlobs) put(tx *Tx, id, peer [16]byte, blob []byte) error {
	if err := checkID(ix.kind, id); err != nil {
		return err
	}
	if err := checkID("peer", peer); err != nil {
		return err
	}
	if err := checkBlob(ix.kind, blob); err != nil {
		return err
	}
	main := tx.bucket(ix.main)
	if old := main.Get(id[:]); old != nil {
		// Ids are random 16-byte values; the same id under another peer is
		// a bug or an attack, never a legitimate move, so refuse it.
		if len(old) < 16 || !bytes.Equal(old[:16], peer[:]) {
			return conflictf("%s %x already belongs to another peer", ix.kind, id)
		}
	}
	v := make([]byte, 16+len(blob))
	copy(v, peer[:])
	copy(v[16:], blob)
	if err := main.Put(clone(id[:]), v); err != nil {
		return err
	}
	if err := tx.bucket(ix.index).Put(pairKey(peer, id), []byte{}); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp(ix.putOp, slog.Any("peer", id16(peer)), slog.Any(ix.idKey, id16(id)))
	}
	return nil
}

func (ix indexedBlobs) delete(tx *Tx, id [16]byte) error {
	if err := checkID(ix.kind, id); err != nil {
		return err
	}
	main := tx.bucket(ix.main)
	old := main.Get(id[:])
	if old == nil {
		return notFoundf("%s %x", ix.kind, id)
	}
	if len(old) < 16 {
		return corruptf("%s %x: value is %d bytes", ix.kind, id, len(old))
	}
	var peer [16]byte
	copy(peer[:], old)
	if err := main.Delete(id[:]); err != nil {
		return err
	}
	if err := tx.bucket(ix.index).Delete(pairKey(peer, id)); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp(ix.deleteOp, slog.Any("peer", id16(peer)), slog.Any(ix.idKey, id16(id)))
	}
	return nil
}

// of lists the ids belonging to peer, in id order.
func (ix indexedBlobs) of(tx *Tx, peer [16]byte) ([][16]byte, error) {
	if err := checkID("peer", peer); err != nil {
		return nil, err
	}
	var ids [][16]byte
	scanPrefix(tx.bucket(ix.index), peer[:], func(k []byte) {
		_, id := splitPair(k)
		ids = append(ids, id)
	})
	return ids, nil
}
