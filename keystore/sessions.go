package keystore

// Session returns the protocol's session blob for id. A missing id is
// (nil, false, nil).
func (tx *Tx) Session(id [16]byte) ([]byte, bool, error) { return sessionBlobs.get(tx, id) }

// PutSession stores or replaces session id, owned by peer. Reusing an id for
// a different peer is refused with ErrConflict.
func (tx *Tx) PutSession(id, peer [16]byte, blob []byte) error {
	return sessionBlobs.put(tx, id, peer, blob)
}

// DeleteSession removes session id and its index row (ErrNotFound if absent).
func (tx *Tx) DeleteSession(id [16]byte) error { return sessionBlobs.delete(tx, id) }

// SessionsOf lists the session ids of peer, in id order.
func (tx *Tx) SessionsOf(peer [16]byte) ([][16]byte, error) { return sessionBlobs.of(tx, peer) }

// DeleteAllSessions drops every session (the remedy for a detected rollback
// or a compromised key) and returns how many there were.
func (tx *Tx) DeleteAllSessions() (int, error) {
	n := 0
	c := tx.bucket(bSessions).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	// Recreating the buckets is cheaper than deleting key by key and leaves
	// no half-emptied index behind.
	for _, name := range [][]byte{bSessions, bSessionsByPeer} {
		if err := tx.btx.DeleteBucket(name); err != nil {
			return 0, err
		}
		if _, err := tx.btx.CreateBucket(name); err != nil {
			return 0, err
		}
	}
	// Logged on commit: a rolled-back wipe did not happen.
	tx.btx.OnCommit(func() { tx.s.log.Info("all sessions deleted", "op", "delete_all_sessions", "count", n) })
	return n, nil
}
