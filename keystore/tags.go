package keystore

import (
	"encoding/json"
	"log/slog"
	"slices"
)

// A peer's tags name the groups it belongs to (`web`, `eu`), so that one command can target many
// peers (`@web`). They are the operator's labels, set on this node only, and apply to a name
// whether it is pinned yet or still pairing:
//
//	peer_tags  peer name -> JSON array of tags, sorted, without duplicates, never empty
//
// DeletePeerTags removes them with the peer.

const (
	maxTagLen     = 64
	maxTagsOfPeer = 32
)

// CheckTag reports whether t is a valid tag: 1 to 64 bytes of lower-case ASCII letters, digits,
// '-', '_' and '.', starting with a letter or a digit.
func CheckTag(t string) error {
	if t == "" || len(t) > maxTagLen {
		return invalidf("tag %q: want 1 to %d characters", t, maxTagLen)
	}
	for i, r := range t {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case i > 0 && (r == '-' || r == '_' || r == '.'):
		default:
			return invalidf("tag %q: use lower-case letters, digits, '-', '_' and '.', starting with a letter or digit", t)
		}
	}
	return nil
}

func checkTags(tags []string) error {
	if len(tags) > maxTagsOfPeer {
		return invalidf("%d tags, at most %d per peer", len(tags), maxTagsOfPeer)
	}
	for _, t := range tags {
		if err := CheckTag(t); err != nil {
			return err
		}
	}
	if !slices.IsSorted(tags) || len(slices.Compact(slices.Clone(tags))) != len(tags) {
		return invalidf("tags %q are not sorted and unique", tags)
	}
	return nil
}

// decodeTags decodes a peer_tags row. Errors wrap ErrCorrupt.
func decodeTags(k, v []byte) ([]string, error) {
	if err := checkName(string(k)); err != nil {
		return nil, corruptf("peer_tags: %v", err)
	}
	var tags []string
	if err := json.Unmarshal(v, &tags); err != nil {
		return nil, corruptf("tags of %q: %v", k, err)
	}
	if len(tags) == 0 {
		return nil, corruptf("tags of %q: empty (PutPeerTags deletes instead)", k)
	}
	if err := checkTags(tags); err != nil {
		return nil, corruptf("tags of %q: %v", k, err)
	}
	return tags, nil
}

// PeerTags returns the tags of the peer called name (nil: none).
func (tx *Tx) PeerTags(name string) ([]string, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	v := tx.bucket(bPeerTags).Get([]byte(name))
	if v == nil {
		return nil, nil
	}
	return decodeTags([]byte(name), v)
}

// PutPeerTags sets the tags of the peer called name; they are sorted and made unique first.
// None deletes the row.
func (tx *Tx) PutPeerTags(name string, tags []string) error {
	if err := checkName(name); err != nil {
		return err
	}
	tags = slices.Compact(slices.Sorted(slices.Values(tags)))
	if len(tags) == 0 {
		return tx.DeletePeerTags(name)
	}
	if err := checkTags(tags); err != nil {
		return err
	}
	if err := putJSON(tx.bucket(bPeerTags), []byte(name), tags); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_peer_tags", slog.String("name", name), slog.Int("tags", len(tags)))
	}
	return nil
}

// DeletePeerTags removes the tags of the peer called name, if any.
func (tx *Tx) DeletePeerTags(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return tx.bucket(bPeerTags).Delete([]byte(name))
}

// ForEachPeerTags calls fn with every tagged peer name and its tags, in name order.
func (tx *Tx) ForEachPeerTags(fn func(name string, tags []string) error) error {
	return tx.bucket(bPeerTags).ForEach(func(k, v []byte) error {
		tags, err := decodeTags(k, v)
		if err != nil {
			return err
		}
		return fn(string(k), tags)
	})
}
