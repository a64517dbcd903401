package session

// Store is the state the protocol reads and writes. The engine calls it from inside one of the
// caller's transactions: every change that one received package causes goes through one Store
// value, and the caller commits all of it or none (docs/PROTOCOL.md, "State"). Getters return
// copies the engine may modify; a missing record is (zero, false, nil), never an error.
type Store interface {
	Peer(fp Fingerprint) (PinnedPeer, bool, error)
	PinPeer(p PinnedPeer) error

	Pairing(address string) (*Pairing, bool, error)
	PutPairing(p *Pairing) error
	DeletePairing(address string) error

	Session(id SessionID) (*State, bool, error)
	PutSession(s *State) error
	DeleteSession(id SessionID) error
	SessionsOf(peer Fingerprint) ([]SessionID, error)

	Ledger(peer Fingerprint, cmd CommandID) (*LedgerEntry, bool, error)
	PutLedger(e *LedgerEntry) error

	Pending(cmd CommandID) (*Pending, bool, error)
	PutPending(p *Pending) error
	DeletePending(cmd CommandID) error

	// StreamSecret is the secret of cmd's stream with peer (docs/PROTOCOL.md section 20), for
	// opening its chunks; false when no such stream is open here.
	StreamSecret(peer Fingerprint, cmd CommandID) (*Secret, bool, error)
}
