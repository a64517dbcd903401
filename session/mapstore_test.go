package session

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// mapStore is a tiny Store for the internal tests (vectors and fuzz targets), which cannot import
// fixtures (fixtures imports session). Like fixtures.MemStore it keeps every record JSON-encoded,
// so getters return copies the engine may modify, clone is cheap, and dump compares states byte
// for byte.
type mapStore struct {
	peers    map[Fingerprint][]byte
	pairings map[string][]byte
	sessions map[SessionID][]byte
	ledger   map[string][]byte
	pending  map[CommandID][]byte
	streams  map[string]Secret // peer ‖ command → stream secret (chunk tests)
}

var _ Store = (*mapStore)(nil)

func newMapStore() *mapStore {
	return &mapStore{
		peers:    map[Fingerprint][]byte{},
		pairings: map[string][]byte{},
		sessions: map[SessionID][]byte{},
		ledger:   map[string][]byte{},
		pending:  map[CommandID][]byte{},
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("mapStore: encode %T: %v", v, err))
	}
	return b
}

func fromJSON[T any](b []byte) *T {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		panic(fmt.Sprintf("mapStore: stored %T does not decode: %v", v, err))
	}
	return v
}

func (m *mapStore) Peer(fp Fingerprint) (PinnedPeer, bool, error) {
	b, ok := m.peers[fp]
	if !ok {
		return PinnedPeer{}, false, nil
	}
	return *fromJSON[PinnedPeer](b), true, nil
}

func (m *mapStore) PinPeer(p PinnedPeer) error {
	m.peers[FingerprintOf(p.PublicKey)] = mustJSON(p)
	return nil
}

func (m *mapStore) Pairing(addr string) (*Pairing, bool, error) {
	b, ok := m.pairings[addr]
	if !ok {
		return nil, false, nil
	}
	return fromJSON[Pairing](b), true, nil
}

func (m *mapStore) PutPairing(p *Pairing) error {
	m.pairings[p.Address] = mustJSON(p)
	return nil
}

func (m *mapStore) DeletePairing(addr string) error {
	delete(m.pairings, addr)
	return nil
}

func (m *mapStore) Session(id SessionID) (*State, bool, error) {
	b, ok := m.sessions[id]
	if !ok {
		return nil, false, nil
	}
	return fromJSON[State](b), true, nil
}

func (m *mapStore) PutSession(s *State) error {
	m.sessions[s.ID] = mustJSON(s)
	return nil
}

func (m *mapStore) DeleteSession(id SessionID) error {
	delete(m.sessions, id)
	return nil
}

func (m *mapStore) SessionsOf(peer Fingerprint) ([]SessionID, error) {
	var out []SessionID
	for _, id := range slices.SortedFunc(maps.Keys(m.sessions), func(a, b SessionID) int { return bytes.Compare(a[:], b[:]) }) {
		if fromJSON[State](m.sessions[id]).Peer == peer {
			out = append(out, id)
		}
	}
	return out, nil
}

func mapLedgerKey(peer Fingerprint, cmd CommandID) string {
	return hex.EncodeToString(peer[:]) + hex.EncodeToString(cmd[:])
}

func (m *mapStore) Ledger(peer Fingerprint, cmd CommandID) (*LedgerEntry, bool, error) {
	b, ok := m.ledger[mapLedgerKey(peer, cmd)]
	if !ok {
		return nil, false, nil
	}
	return fromJSON[LedgerEntry](b), true, nil
}

func (m *mapStore) PutLedger(e *LedgerEntry) error {
	m.ledger[mapLedgerKey(e.Peer, e.Command)] = mustJSON(e)
	return nil
}

func (m *mapStore) Pending(cmd CommandID) (*Pending, bool, error) {
	b, ok := m.pending[cmd]
	if !ok {
		return nil, false, nil
	}
	return fromJSON[Pending](b), true, nil
}

func (m *mapStore) PutPending(p *Pending) error {
	m.pending[p.Command] = mustJSON(p)
	return nil
}

func (m *mapStore) DeletePending(cmd CommandID) error {
	delete(m.pending, cmd)
	return nil
}

func (m *mapStore) StreamSecret(peer Fingerprint, cmd CommandID) (*Secret, bool, error) {
	s, ok := m.streams[string(peer[:])+string(cmd[:])]
	if !ok {
		return nil, false, nil
	}
	return &s, true, nil
}

// putStream opens a stream for the chunk tests.
func (m *mapStore) putStream(peer Fingerprint, cmd CommandID, s Secret) {
	if m.streams == nil {
		m.streams = map[string]Secret{}
	}
	m.streams[string(peer[:])+string(cmd[:])] = s
}

// clone returns an independent copy. Stored values are never modified in place, only replaced,
// so copying the maps is enough.
func (m *mapStore) clone() *mapStore {
	return &mapStore{
		peers:    maps.Clone(m.peers),
		pairings: maps.Clone(m.pairings),
		sessions: maps.Clone(m.sessions),
		ledger:   maps.Clone(m.ledger),
		pending:  maps.Clone(m.pending),
		streams:  maps.Clone(m.streams),
	}
}

// equal reports whether m and o hold byte-identical records, optionally ignoring pairings.
func (m *mapStore) equal(o *mapStore, ignorePairings bool) bool {
	return maps.EqualFunc(m.peers, o.peers, bytes.Equal) &&
		(ignorePairings || maps.EqualFunc(m.pairings, o.pairings, bytes.Equal)) &&
		maps.EqualFunc(m.sessions, o.sessions, bytes.Equal) &&
		maps.EqualFunc(m.ledger, o.ledger, bytes.Equal) &&
		maps.EqualFunc(m.pending, o.pending, bytes.Equal)
}

// dump renders the whole store deterministically, one record a line: equal dumps mean
// byte-identical state.
func (m *mapStore) dump() string {
	var b strings.Builder
	section := func(name string, kv map[string][]byte) {
		for _, k := range slices.Sorted(maps.Keys(kv)) {
			fmt.Fprintf(&b, "%s/%s = %s\n", name, k, kv[k])
		}
	}
	section("peers", hexKeys(m.peers))
	section("pairings", m.pairings)
	section("sessions", hexKeys(m.sessions))
	section("ledger", m.ledger)
	section("pending", hexKeys(m.pending))
	return b.String()
}

func hexKeys[K ~[16]byte](kv map[K][]byte) map[string][]byte {
	out := make(map[string][]byte, len(kv))
	for k, v := range kv {
		out[hex.EncodeToString(k[:])] = v
	}
	return out
}

// cowStore reads base until the first write and its own copy of base from then on, so that a
// package rejected without a write (most fuzz inputs) costs no copy of the store.
type cowStore struct {
	base, own *mapStore
}

var _ Store = (*cowStore)(nil)

func (c *cowStore) r() *mapStore {
	if c.own != nil {
		return c.own
	}
	return c.base
}

func (c *cowStore) w() *mapStore {
	if c.own == nil {
		c.own = c.base.clone()
	}
	return c.own
}

func (c *cowStore) Peer(fp Fingerprint) (PinnedPeer, bool, error) { return c.r().Peer(fp) }
func (c *cowStore) PinPeer(p PinnedPeer) error                    { return c.w().PinPeer(p) }
func (c *cowStore) Pairing(a string) (*Pairing, bool, error)      { return c.r().Pairing(a) }
func (c *cowStore) PutPairing(p *Pairing) error                   { return c.w().PutPairing(p) }
func (c *cowStore) DeletePairing(a string) error                  { return c.w().DeletePairing(a) }
func (c *cowStore) Session(id SessionID) (*State, bool, error)    { return c.r().Session(id) }
func (c *cowStore) PutSession(s *State) error                     { return c.w().PutSession(s) }
func (c *cowStore) DeleteSession(id SessionID) error              { return c.w().DeleteSession(id) }
func (c *cowStore) SessionsOf(p Fingerprint) ([]SessionID, error) { return c.r().SessionsOf(p) }
func (c *cowStore) PutLedger(e *LedgerEntry) error                { return c.w().PutLedger(e) }
func (c *cowStore) Pending(cmd CommandID) (*Pending, bool, error) { return c.r().Pending(cmd) }
func (c *cowStore) PutPending(p *Pending) error                   { return c.w().PutPending(p) }
func (c *cowStore) DeletePending(cmd CommandID) error             { return c.w().DeletePending(cmd) }
func (c *cowStore) StreamSecret(p Fingerprint, cmd CommandID) (*Secret, bool, error) {
	return c.r().StreamSecret(p, cmd)
}
func (c *cowStore) Ledger(p Fingerprint, cmd CommandID) (*LedgerEntry, bool, error) {
	return c.r().Ledger(p, cmd)
}
