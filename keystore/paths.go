package keystore

import (
	"encoding/json"
	"path/filepath"
	"slices"
)

// Per-peer file access (docs/PROTOCOL.md section 20, "Files"): the directories a peer may pull
// files from and push files into on this node. Node resolves every path inside one of them
// without following a symlink out of it; keystore keeps the lists.
//
//	peer_paths  peer name -> JSON PeerPaths

// MaxPeerPaths bounds each list.
const MaxPeerPaths = 64

// PeerPaths are the directories one peer may read from (pull) and write into (push). Entries are
// absolute and clean.
type PeerPaths struct {
	Read  []string `json:"read,omitempty"`
	Write []string `json:"write,omitempty"`
}

func (p PeerPaths) validate() error {
	for _, l := range [][]string{p.Read, p.Write} {
		if len(l) > MaxPeerPaths {
			return invalidf("peer paths: %d directories, at most %d", len(l), MaxPeerPaths)
		}
		for _, d := range l {
			if !filepath.IsAbs(d) || filepath.Clean(d) != d || len(d) > 4096 {
				return invalidf("peer path %q: not an absolute, clean path", d)
			}
		}
	}
	return nil
}

// PeerPaths returns what peer name may read and write here (none when nothing is recorded).
func (tx *Tx) PeerPaths(name string) (PeerPaths, error) {
	var p PeerPaths
	v := tx.bucket(bPeerPaths).Get([]byte(name))
	if v == nil {
		return p, nil
	}
	if err := json.Unmarshal(v, &p); err != nil {
		return p, corruptf("peer_paths %q: %v", name, err)
	}
	return p, p.validate()
}

// AddPeerPaths adds directories to peer name's lists (each kept once, sorted).
func (tx *Tx) AddPeerPaths(name string, read, write []string) (PeerPaths, error) {
	p, err := tx.PeerPaths(name)
	if err != nil {
		return p, err
	}
	p.Read = slices.Compact(slices.Sorted(slices.Values(append(p.Read, read...))))
	p.Write = slices.Compact(slices.Sorted(slices.Values(append(p.Write, write...))))
	if err := p.validate(); err != nil {
		return p, err
	}
	if len(p.Read) == 0 && len(p.Write) == 0 {
		return p, tx.bucket(bPeerPaths).Delete([]byte(name))
	}
	return p, putJSON(tx.bucket(bPeerPaths), []byte(name), p)
}

// DeletePeerPaths forgets peer name's lists.
func (tx *Tx) DeletePeerPaths(name string) error {
	return tx.bucket(bPeerPaths).Delete([]byte(name))
}
