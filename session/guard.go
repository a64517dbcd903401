package session

// guarded is the Store as Receive sees it: every error a Store call returns is marked as the
// node's own trouble (ErrLocal), unless the Store said the package's content is at fault
// (ErrRefusedRecord). Doing it here, once, is what lets Rejection treat every other error as the
// package's fault (THREATS row 30).
type guarded struct{ st Store }

func guard(st Store) Store {
	if g, ok := st.(guarded); ok {
		return g
	}
	return guarded{st}
}

func (g guarded) Peer(fp Fingerprint) (PinnedPeer, bool, error) {
	p, ok, err := g.st.Peer(fp)
	return p, ok, local("read peer", err)
}

func (g guarded) PinPeer(p PinnedPeer) error { return local("pin peer", g.st.PinPeer(p)) }

func (g guarded) Pairing(address string) (*Pairing, bool, error) {
	p, ok, err := g.st.Pairing(address)
	return p, ok, local("read pairing", err)
}

func (g guarded) PutPairing(p *Pairing) error { return local("store pairing", g.st.PutPairing(p)) }

func (g guarded) DeletePairing(address string) error {
	return local("delete pairing", g.st.DeletePairing(address))
}

func (g guarded) Session(id SessionID) (*State, bool, error) {
	s, ok, err := g.st.Session(id)
	return s, ok, local("read session", err)
}

func (g guarded) PutSession(s *State) error { return local("store session", g.st.PutSession(s)) }

func (g guarded) DeleteSession(id SessionID) error {
	return local("delete session", g.st.DeleteSession(id))
}

func (g guarded) SessionsOf(peer Fingerprint) ([]SessionID, error) {
	ids, err := g.st.SessionsOf(peer)
	return ids, local("list sessions", err)
}

func (g guarded) Ledger(peer Fingerprint, cmd CommandID) (*LedgerEntry, bool, error) {
	le, ok, err := g.st.Ledger(peer, cmd)
	return le, ok, local("read ledger", err)
}

func (g guarded) PutLedger(e *LedgerEntry) error {
	return local("store ledger entry", g.st.PutLedger(e))
}

func (g guarded) Pending(cmd CommandID) (*Pending, bool, error) {
	p, ok, err := g.st.Pending(cmd)
	return p, ok, local("read pending command", err)
}

func (g guarded) PutPending(p *Pending) error {
	return local("store pending command", g.st.PutPending(p))
}

func (g guarded) DeletePending(cmd CommandID) error {
	return local("delete pending command", g.st.DeletePending(cmd))
}

func (g guarded) StreamSecret(peer Fingerprint, cmd CommandID) (*Secret, bool, error) {
	s, ok, err := g.st.StreamSecret(peer, cmd)
	return s, ok, local("read stream", err)
}
