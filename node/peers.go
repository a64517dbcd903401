package node

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// PeerSpec is what `sealpost peer add` asks for.
type PeerSpec struct {
	Name        string   `json:"name"`
	Address     string   `json:"address"`
	Code        string   `json:"code,omitempty"`
	Fingerprint string   `json:"fingerprint,omitempty"`
	Allow       []string `json:"allow,omitempty"`
	Tags        []string `json:"tags,omitempty"` // added to the peer's tags
	// AllowRead and AllowWrite add directories the peer may pull files from and push files
	// into (absolute; cleaned); `peer remove` starts over.
	AllowRead  []string `json:"allow_read,omitempty"`
	AllowWrite []string `json:"allow_write,omitempty"`
	// ReportEvery asks the peer for status reports at this interval once it is paired (0:
	// none); for a peer paired already, `peer report` asks at once.
	ReportEvery time.Duration `json:"report_every,omitempty"`
	// MaxOutput caps each stream of the output of the commands the peer runs here (bytes; 0:
	// unchanged; MaxOutputDefault: back to the node's default; peer_output.go).
	MaxOutput int64 `json:"max_output,omitempty"`
}

// PeerAdded tells the operator what happened and what to do on the other side.
type PeerAdded struct {
	Name          string   `json:"name"`
	GeneratedCode string   `json:"generated_code,omitempty"`
	Allow         []string `json:"allow,omitempty"`
	Tags          []string `json:"tags,omitempty"`
	AllowRead     []string `json:"allow_read,omitempty"`
	AllowWrite    []string `json:"allow_write,omitempty"`
	Pairing       bool     `json:"pairing"`
}

// AddPeer arms pairing with a peer (by code, generating one when none is given, or by
// fingerprint) and mails our PAIR package; for a peer already pinned with neither code nor
// fingerprint given, it only updates the allow list.
func (n *Node) AddPeer(ctx context.Context, spec PeerSpec) (PeerAdded, error) {
	res := PeerAdded{Name: spec.Name}
	if spec.Name == "" || strings.ContainsAny(spec.Name, "/ \t\n") {
		return res, fmt.Errorf("peer name %q: use a short name without spaces or slashes", spec.Name)
	}
	allow, err := commands.ResolveAllow(spec.Allow)
	if err != nil {
		return res, err
	}
	res.Allow = allow
	var fp session.Fingerprint
	if spec.Fingerprint != "" {
		if fp, err = session.ParseFingerprint(spec.Fingerprint); err != nil {
			return res, err
		}
	}
	for _, t := range spec.Tags {
		if err := keystore.CheckTag(t); err != nil {
			return res, err
		}
	}
	if err := checkMaxOutput(spec.MaxOutput); err != nil {
		return res, err
	}
	if spec.ReportEvery != 0 {
		if _, err := encodeRequest(commands.Request{Name: commands.CmdReportEvery, Every: spec.ReportEvery}); err != nil {
			return res, err
		}
	}
	read, err := cleanDirs(spec.AllowRead, "--allow-read")
	if err != nil {
		return res, err
	}
	write, err := cleanDirs(spec.AllowWrite, "--allow-write")
	if err != nil {
		return res, err
	}
	err = n.update(func(tx *keystore.Tx, st TxStore) error {
		if len(read) > 0 || len(write) > 0 {
			paths, err := tx.AddPeerPaths(spec.Name, read, write)
			if err != nil {
				return err
			}
			res.AllowRead, res.AllowWrite = paths.Read, paths.Write
		}
		if spec.ReportEvery > 0 {
			// Asked of the peer when pairing completes (askReportsAtPairing).
			ps, _, err := tx.PeerState(spec.Name)
			if err != nil {
				return err
			}
			ps.ReportEvery, ps.ReportAsk = spec.ReportEvery, true
			if err := tx.PutPeerState(ps); err != nil {
				return err
			}
		} else if err := n.forgetReportAsk(tx, spec.Name); err != nil {
			return err // a new pairing without --report-every does not inherit an earlier one's (report.go)
		}
		if err := setMaxOutput(tx, spec.Name, spec.MaxOutput); err != nil {
			return err
		}
		if len(spec.Tags) > 0 {
			// --tag adds to the peer's tags, as --allow to its allow list.
			old, err := tx.PeerTags(spec.Name)
			if err != nil {
				return err
			}
			if err := tx.PutPeerTags(spec.Name, append(old, spec.Tags...)); err != nil {
				return err
			}
			if res.Tags, err = tx.PeerTags(spec.Name); err != nil {
				return err
			}
		}
		if len(allow) > 0 {
			// --allow adds to what the peer may already run; `peer remove` starts over.
			old, err := n.policyFor(tx, spec.Name)
			if err != nil {
				return err
			}
			for _, a := range old.Allow {
				if !slices.Contains(allow, a) {
					allow = append(allow, a)
				}
			}
			slices.Sort(allow)
			res.Allow = allow
			if err := n.putPolicy(tx, spec.Name, allow); err != nil {
				return err
			}
		}
		existing, pinned, err := tx.Peer(spec.Name)
		if err != nil {
			return err
		}
		if pinned && spec.Code == "" && spec.Fingerprint == "" {
			if spec.Address != "" && !strings.EqualFold(spec.Address, existing.Address) {
				return fmt.Errorf("peer %q is pinned at %s; to change its address run `sealpost peer remove %s` and pair again", spec.Name, existing.Address, spec.Name)
			}
			// Paired already: the reports are asked for now.
			return n.askReportsAtPairing(tx, st, existing)
		}
		if spec.Address == "" {
			return fmt.Errorf("peer add %s: --address is required to pair", spec.Name)
		}
		if pinned {
			return fmt.Errorf("peer %q is already paired; run `sealpost peer remove %s` first to pair again", spec.Name, spec.Name)
		}
		code := spec.Code
		if code == "" && fp.IsZero() {
			if code, err = session.GenerateCode(rand.Reader); err != nil {
				return err
			}
			res.GeneratedCode = code
		}
		pkg, err := n.eng.ArmPairing(st, session.PairRequest{Name: spec.Name, Address: spec.Address, Code: code, Fingerprint: fp})
		if err != nil {
			return err
		}
		res.Pairing = true
		return enqueue(tx, strings.ToLower(strings.TrimSpace(spec.Address)), pkg)
	})
	if err != nil {
		return res, err
	}
	if res.Pairing || spec.ReportEvery > 0 {
		if err := n.Flush(ctx); err != nil {
			return res, fmt.Errorf("pairing armed, but mailing it failed (it stays queued): %w", err)
		}
	}
	return res, nil
}

// RemovePeer forgets a peer: its pinned key, sessions, pending and queued commands, allow list
// and any armed pairing. Its results stay in the history.
func (n *Node) RemovePeer(ctx context.Context, name string) error {
	var ended []session.CommandID // commands failed here, whose waiters are woken after the commit
	err := n.update(func(tx *keystore.Tx, st TxStore) error {
		found := false
		var fp session.Fingerprint // the peer's, when pinned
		var pairAddrs []string     // where a pairing mail for it would go
		if p, ok, err := tx.Peer(name); err != nil {
			return err
		} else if ok {
			found = true
			fp, pairAddrs = p.Fingerprint, append(pairAddrs, p.Address)
			ids, err := tx.SessionsOf(p.Fingerprint)
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := tx.DeleteSession(id); err != nil {
					return err
				}
			}
			cmds, err := tx.PendingOf(p.Fingerprint)
			if err != nil {
				return err
			}
			for _, c := range cmds {
				if err := tx.DeletePending(c); err != nil {
					return err
				}
				if err := n.recordResult(tx, c, func(r *keystore.Result) { r.Status, r.Error = StatusFailed, "peer removed before it answered" }); err != nil {
					return err
				}
				ended = append(ended, c)
			}
			// Commands still waiting for a session with it, too.
			waiting, err := tx.DeleteQueuedFor(p.Fingerprint)
			if err != nil {
				return err
			}
			for _, c := range waiting {
				if err := n.recordResult(tx, c, func(r *keystore.Result) { r.Status, r.Error = StatusFailed, "peer removed before it answered" }); err != nil {
					return err
				}
				ended = append(ended, c)
			}
			if err := tx.DeletePeerPaths(name); err != nil {
				return err
			}
			if err := tx.DeletePeer(name); err != nil {
				return err
			}
		}
		var armed []string
		if err := tx.ForEachPairing(func(addr string, blob []byte) error {
			if pr, err := decode[session.Pairing](blob, "pairing"); err == nil && pr.Name == name {
				armed = append(armed, addr)
			}
			return nil
		}); err != nil {
			return err
		}
		for _, addr := range armed {
			found = true
			if err := tx.DeletePairing(addr); err != nil {
				return err
			}
		}
		if !found {
			return fmt.Errorf("no peer named %q (see `sealpost peer list`)", name)
		}
		// Mail still queued for the peer (its pairing, handshakes, commands, answers) goes
		// nowhere now. Sealed mail names its recipient; pairing mail only has the address, which
		// another peer may share, so only pairing mail goes by address.
		pairAddrs = append(pairAddrs, armed...)
		queued, err := tx.Outbox()
		if err != nil {
			return err
		}
		for _, it := range queued {
			pkg, err := session.Parse(it.Package)
			if err != nil {
				continue
			}
			if pkg.Type == session.TypePair && slices.Contains(pairAddrs, it.To) || pkg.Type != session.TypePair && fp != (session.Fingerprint{}) && pkg.Recipient == fp {
				if err := tx.DeleteOutbox(it.ID); err != nil {
					return err
				}
			}
		}
		if err := tx.DeletePeerTags(name); err != nil {
			return err
		}
		if err := tx.DeletePeerState(name); err != nil {
			return err
		}
		if err := tx.DeleteReportTo(name); err != nil {
			return err
		}
		return tx.PutAllow(name, nil)
	})
	if err == nil {
		n.notify(ended...)
	}
	return err
}

func (n *Node) putPolicy(tx *keystore.Tx, name string, allow []string) error {
	return tx.PutAllow(name, allow)
}

func (n *Node) policyFor(tx *keystore.Tx, name string) (commands.Policy, error) {
	allow, err := tx.Allow(name)
	return commands.Policy{Peer: name, Allow: allow}, err
}

// PeerInfo is one row of `sealpost peer list`.
type PeerInfo struct {
	Name        string       `json:"name"`
	Address     string       `json:"address"`
	Fingerprint string       `json:"fingerprint,omitempty"`
	Status      string       `json:"status"` // pairing, paired, Initializing, Confirmed
	Epoch       uint64       `json:"epoch"`
	LastSeen    time.Time    `json:"last_seen,omitzero"`
	Allow       []string     `json:"allow,omitempty"`
	Tags        []string     `json:"tags,omitempty"`
	Outbound    *SessionInfo `json:"outbound,omitempty"` // we command the peer
	Inbound     *SessionInfo `json:"inbound,omitempty"`  // the peer commands us

	// MaxOutput is the peer's output cap here (peer_output.go); 0: the default.
	MaxOutput int64 `json:"max_output,omitempty"`
}

// Ready reports that the peer's row in `peer list` says Confirmed: a session with it is open,
// in the direction it is used (ours to command it, or its to command us). status counts these.
func (p PeerInfo) Ready() bool { return p.Status == session.Confirmed.String() }

// SessionInfo describes one session with a peer.
type SessionInfo struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Epoch  uint64 `json:"epoch"`
}

// Peers lists pinned peers and armed pairings.
func (n *Node) Peers(ctx context.Context) ([]PeerInfo, error) {
	var out []PeerInfo
	err := n.view(func(tx *keystore.Tx, st TxStore) error {
		var err error
		out, err = n.peersIn(tx, st)
		return err
	})
	return out, err
}

// peersIn lists the peers as tx sees them, sorted by name.
func (n *Node) peersIn(tx *keystore.Tx, st TxStore) ([]PeerInfo, error) {
	var out []PeerInfo
	peers, err := tx.Peers()
	if err != nil {
		return nil, err
	}
	for _, p := range peers {
		pi := PeerInfo{Name: p.Name, Address: p.Address, Fingerprint: session.Fingerprint(p.Fingerprint).String(), Status: "paired", LastSeen: p.LastSeen}
		pol, err := n.policyFor(tx, p.Name)
		if err != nil {
			return nil, err
		}
		pi.Allow = pol.Allow
		if pi.Tags, err = tx.PeerTags(p.Name); err != nil {
			return nil, err
		}
		if pi.MaxOutput, err = peerMaxOutput(tx, p.Name); err != nil {
			return nil, err
		}
		ids, err := st.SessionsOf(p.Fingerprint)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			s, ok, err := st.Session(id)
			if err != nil {
				return nil, err
			}
			if !ok {
				continue
			}
			si := &SessionInfo{ID: s.ID.String(), Status: s.Status.String(), Epoch: s.Current.Gen}
			switch {
			case s.Role == session.Initiator && (pi.Outbound == nil || s.Status == session.Confirmed):
				pi.Outbound = si
			case s.Role == session.Responder && (pi.Inbound == nil || s.Status == session.Confirmed):
				pi.Inbound = si
			}
		}
		if s := cmp.Or(pi.Outbound, pi.Inbound); s != nil {
			pi.Status, pi.Epoch = s.Status, s.Epoch
		}
		out = append(out, pi)
	}
	err = tx.ForEachPairing(func(addr string, blob []byte) error {
		pr, err := decode[session.Pairing](blob, "pairing")
		if err != nil {
			return err
		}
		pol, err := n.policyFor(tx, pr.Name)
		if err != nil {
			return err
		}
		tags, err := tx.PeerTags(pr.Name)
		if err != nil {
			return err
		}
		maxOut, err := peerMaxOutput(tx, pr.Name)
		if err != nil {
			return err
		}
		out = append(out, PeerInfo{Name: pr.Name, Address: addr, Status: "pairing", Allow: pol.Allow, Tags: tags, MaxOutput: maxOut})
		return nil
	})
	slices.SortFunc(out, func(a, b PeerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, err
}

func (n *Node) pairingArmed(tx *keystore.Tx, name string) bool {
	armed := false
	_ = tx.ForEachPairing(func(_ string, blob []byte) error {
		if pr, err := decode[session.Pairing](blob, "pairing"); err == nil && pr.Name == name {
			armed = true
		}
		return nil
	})
	return armed
}

// cleanDirs checks a list of directories given for --allow-read or --allow-write: absolute,
// and cleaned (what is compared later is the clean form).
func cleanDirs(dirs []string, flag string) ([]string, error) {
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("%s %q: give an absolute directory", flag, d)
		}
		out = append(out, filepath.Clean(d))
	}
	return out, nil
}
