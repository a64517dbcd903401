package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sealpost/sealpost/keystore"
)

// Targets: one command to many peers. A target names peers the way ansible and salt users expect:
//
//	bob            the peer called bob
//	@web           every peer tagged web
//	@all           every pinned peer
//	bob,@web,db1   the union of the parts, each peer once
//
// A peer name or tag that names nobody is an error (a typo must not quietly shrink a fleet
// command); peers still pairing have no session yet and are named only by their own name.

// ErrNoTarget: a target names no peer.
var ErrNoTarget = errors.New("the target names no peer")

// TargetError says which part of a target is wrong and why.
type TargetError struct {
	Target string // the whole target as given
	Part   string // the part that is wrong ("" for the target as a whole)
	Reason string
}

func (e *TargetError) Error() string {
	if e.Part == "" {
		return fmt.Sprintf("target %q: %s", e.Target, e.Reason)
	}
	return fmt.Sprintf("target %q: %q %s", e.Target, e.Part, e.Reason)
}

// TargetPart is one comma-separated part of a target: a peer name, or a tag (Tag set), where
// the tag "all" means every peer.
type TargetPart struct {
	Name string
	Tag  bool
}

// badTagReason is a TargetError's Reason for an @TAG whose tag keystore.CheckTag refuses, in
// this package's words (keystore's error names keystore and repeats the tag).
const badTagReason = "is not a tag: use 1 to 64 lower-case letters, digits, '-', '_' and '.', starting with a letter or digit"

// ParseTarget splits a target into its parts and checks their form; which peers they name is
// ResolveTarget's business.
func ParseTarget(target string) ([]TargetPart, error) {
	if strings.TrimSpace(target) == "" {
		return nil, &TargetError{Target: target, Reason: "is empty; give a peer name, @TAG or @all"}
	}
	var parts []TargetPart
	for _, p := range strings.Split(target, ",") {
		if p == "" {
			return nil, &TargetError{Target: target, Reason: "has an empty part (two commas, or one at an end)"}
		}
		if tag, ok := strings.CutPrefix(p, "@"); ok {
			if keystore.CheckTag(tag) != nil {
				return nil, &TargetError{Target: target, Part: p, Reason: badTagReason}
			}
			parts = append(parts, TargetPart{Name: tag, Tag: true})
			continue
		}
		if strings.ContainsAny(p, "/ \t\n@") || strings.TrimSpace(p) != p {
			return nil, &TargetError{Target: target, Part: p, Reason: "is not a peer name (no spaces, slashes or @ inside; @TAG names a tag)"}
		}
		parts = append(parts, TargetPart{Name: p})
	}
	return parts, nil
}

// ResolveTarget returns the names of the peers a target names, sorted, each once.
func (n *Node) ResolveTarget(ctx context.Context, target string) ([]string, error) {
	var names []string
	err := n.view(func(tx *keystore.Tx, _ TxStore) error {
		var err error
		names, err = n.resolveTarget(tx, target)
		return err
	})
	return names, err
}

func (n *Node) resolveTarget(tx *keystore.Tx, target string) ([]string, error) {
	parts, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	peers, err := tx.Peers()
	if err != nil {
		return nil, err
	}
	var tagged map[string][]string // tag -> pinned peer names, read once when a tag is asked for
	var out []string
	for _, p := range parts {
		switch {
		case p.Tag && p.Name == "all":
			if len(peers) == 0 {
				return nil, &TargetError{Target: target, Part: "@all", Reason: "names no peer: none is paired yet (sealpost peer add)"}
			}
			for _, pr := range peers {
				out = append(out, pr.Name)
			}
		case p.Tag:
			if tagged == nil {
				tagged = map[string][]string{}
				if err := tx.ForEachPeerTags(func(name string, tags []string) error {
					for _, t := range tags {
						tagged[t] = append(tagged[t], name)
					}
					return nil
				}); err != nil {
					return nil, err
				}
			}
			if len(tagged[p.Name]) == 0 {
				return nil, &TargetError{Target: target, Part: "@" + p.Name, Reason: fmt.Sprintf("names no peer: none is tagged %s (sealpost peer tag NAME %s)", p.Name, p.Name)}
			}
			out = append(out, tagged[p.Name]...)
		default:
			if !slices.ContainsFunc(peers, func(pr keystore.Peer) bool { return pr.Name == p.Name }) && !n.pairingArmed(tx, p.Name) {
				return nil, &TargetError{Target: target, Part: p.Name, Reason: "is no peer (see `sealpost peer list`)"}
			}
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// Tag adds tags to and removes them from the peer called name, in one transaction, and returns
// its tags as they are then (sorted). A tag to remove that the peer does not have is an error,
// and nothing changes; so is an unknown peer (ErrUnknownPeer).
func (n *Node) Tag(ctx context.Context, name string, add, remove []string) ([]string, error) {
	for _, t := range append(slices.Clone(add), remove...) {
		if err := keystore.CheckTag(t); err != nil {
			return nil, err
		}
	}
	var out []string
	err := n.update(func(tx *keystore.Tx, _ TxStore) error {
		if _, pinned, err := tx.Peer(name); err != nil {
			return err
		} else if !pinned && !n.pairingArmed(tx, name) {
			return fmt.Errorf("%w named %q (see `sealpost peer list`)", ErrUnknownPeer, name)
		}
		tags, err := tx.PeerTags(name)
		if err != nil {
			return err
		}
		for _, r := range remove {
			i := slices.Index(tags, r)
			if i < 0 {
				return fmt.Errorf("%s has no tag %q (its tags: %s)", name, r, describeTags(tags))
			}
			tags = slices.Delete(tags, i, i+1)
		}
		tags = append(tags, add...)
		if err := tx.PutPeerTags(name, tags); err != nil {
			return err
		}
		out, err = tx.PeerTags(name)
		return err
	})
	return out, err
}

func describeTags(tags []string) string {
	if len(tags) == 0 {
		return "none"
	}
	return strings.Join(tags, " ")
}
