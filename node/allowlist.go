package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
)

// ErrUnknownPeer: the name given is neither a pinned peer nor one with a pairing armed.
var ErrUnknownPeer = errors.New("no such peer")

// ErrNotAllowed: a program to take off a peer's allow list is not on it. Nothing was changed:
// a typo in `peer deny` must not pass for a revoked right.
var ErrNotAllowed = errors.New("not on the allow list")

// Allow changes the list of programs the peer called name may run on this node, in one
// transaction, and returns the list as it is then (sorted, absolute paths). add is resolved
// like PeerSpec.Allow (an absolute path, or a bare name looked up in this process's PATH now).
// An entry of remove takes away what it names: an absolute path that entry exactly, a bare name
// every entry with that base name (so `deny bob uptime` revokes /usr/bin/uptime whatever PATH
// found it as). A removal that matches nothing is an error wrapping ErrNotAllowed; an unknown
// peer one wrapping ErrUnknownPeer; either way nothing changes. The running agent reads the
// list for every command, so the change applies to the next command that starts.
func (n *Node) Allow(ctx context.Context, name string, add, remove []string) ([]string, error) {
	resolved, err := commands.ResolveAllow(add)
	if err != nil {
		return nil, err
	}
	var out []string
	err = n.update(func(tx *keystore.Tx, _ TxStore) error {
		if _, pinned, err := tx.Peer(name); err != nil {
			return err
		} else if !pinned && !n.pairingArmed(tx, name) {
			return fmt.Errorf("%w named %q (see `sealpost peer list`)", ErrUnknownPeer, name)
		}
		pol, err := n.policyFor(tx, name)
		if err != nil {
			return err
		}
		list := slices.Clone(pol.Allow)
		for _, r := range remove {
			match, err := allowMatcher(r)
			if err != nil {
				return err
			}
			before := len(list)
			list = slices.DeleteFunc(list, match)
			if len(list) == before {
				return fmt.Errorf("%s: %w of %s (%s)", r, ErrNotAllowed, name, describeAllow(pol.Allow))
			}
		}
		for _, a := range resolved {
			if !slices.Contains(list, a) {
				list = append(list, a)
			}
		}
		slices.Sort(list)
		out = list
		return n.putPolicy(tx, name, list)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// allowMatcher says which allow-list entries a `peer deny` argument names.
func allowMatcher(prog string) (func(string) bool, error) {
	switch {
	case prog == "":
		return nil, errors.New("deny: empty program name")
	case filepath.IsAbs(prog):
		p := filepath.Clean(prog)
		return func(e string) bool { return e == p }, nil
	case strings.ContainsRune(prog, '/') || strings.ContainsRune(prog, filepath.Separator):
		return nil, fmt.Errorf("deny %q: a relative path; give an absolute path, or a bare name", prog)
	}
	return func(e string) bool { return filepath.Base(e) == prog }, nil
}

func describeAllow(list []string) string {
	if len(list) == 0 {
		return "it may run no programs"
	}
	return "it may run " + strings.Join(list, " ")
}
