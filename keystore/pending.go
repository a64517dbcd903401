package keystore

// Pending returns the blob of a command that was sent or received but not
// yet completed.
func (tx *Tx) Pending(cmd [16]byte) ([]byte, bool, error) { return pendingBlobs.get(tx, cmd) }

// PutPending stores or replaces pending command cmd, owned by peer.
func (tx *Tx) PutPending(cmd, peer [16]byte, blob []byte) error {
	return pendingBlobs.put(tx, cmd, peer, blob)
}

// DeletePending removes pending command cmd (ErrNotFound if absent).
func (tx *Tx) DeletePending(cmd [16]byte) error { return pendingBlobs.delete(tx, cmd) }

// PendingOf lists the pending command ids of peer, in id order.
func (tx *Tx) PendingOf(peer [16]byte) ([][16]byte, error) { return pendingBlobs.of(tx, peer) }
