package keystore

import (
	"encoding/json"
	"log/slog"
	"slices"
)

// A peer's allow list (the commands it may run here) lives in Peer.Allow. An operator may set it
// before the peer is pinned, while pairing is armed; until then it is held in
//
//	allow_unpinned  peer name -> JSON array of strings
//
// and PutPeer moves it into the new peer. A name is never in both.

// maxAllowEntry bounds one entry (a program name or path).
const maxAllowEntry = 4096

func checkAllow(allow []string) error {
	for _, a := range allow {
		if err := checkText("allow entry", a, maxAllowEntry, true); err != nil {
			return err
		}
	}
	return nil
}

// decodeAllowList decodes an allow_unpinned row. Errors wrap ErrCorrupt and come with nil.
func decodeAllowList(k, v []byte) ([]string, error) {
	if err := checkName(string(k)); err != nil {
		return nil, corruptf("allow_unpinned: %v", err)
	}
	var allow []string
	if err := json.Unmarshal(v, &allow); err != nil {
		return nil, corruptf("allow list of %q: %v", k, err)
	}
	if err := checkAllow(allow); err != nil {
		return nil, corruptf("allow list of %q: %v", k, err)
	}
	if len(allow) == 0 {
		return nil, corruptf("allow list of %q is empty", k) // PutAllow deletes instead
	}
	return allow, nil
}

// Allow returns the allow list of the peer called name: its Peer.Allow if it is pinned, else the
// list held for the name, else nil. nil and empty both allow nothing.
func (tx *Tx) Allow(name string) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	p, ok, err := tx.peer([]byte(name))
	if err != nil || ok {
		return p.Allow, err
	}
	v := tx.bucket(bAllowUnpinned).Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	return decodeAllowList([]byte(name), v)
}

// PutAllow sets the allow list of the peer called name: in its Peer record if it is pinned, else
// held for the name until PutPeer pins it. An empty list allows nothing; for a name not pinned it
// removes the held list.
func (tx *Tx) PutAllow(name string, allow []string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := checkAllow(allow); err != nil {
		return err
	}
	p, ok, err := tx.peer([]byte(name))
	if err != nil {
		return err
	}
	if ok {
		p.Allow = slices.Clone(allow)
		return tx.PutPeer(p)
	}
	if len(allow) == 0 {
		_, err := tx.takeHeldAllow(name)
		return err
	}
	if err := putJSON(tx.bucket(bAllowUnpinned), []byte(name), allow); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_allow_unpinned", slog.String("name", name), slog.Int("entries", len(allow)))
	}
	return nil
}

// takeHeldAllow removes and returns the list held for name (nil if none).
func (tx *Tx) takeHeldAllow(name string) ([]string, error) {
	b := tx.bucket(bAllowUnpinned)
	v := b.Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	allow, err := decodeAllowList([]byte(name), v)
	if err != nil {
		return nil, err
	}
	if err := b.Delete([]byte(name)); err != nil {
		return nil, err
	}
	if tx.debugOn() {
		tx.logOp("delete_allow_unpinned", slog.String("name", name))
	}
	return allow, nil
}
