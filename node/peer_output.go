package node

import (
	"fmt"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// The per-peer output cap (docs/PROTOCOL.md section 20): how many bytes of each stream of a
// command's output (stdout, stderr) this node, as an agent, sends a peer. Past it the output is
// cut and the result says stdout_truncated / stderr_truncated, which `run --wait` turns into exit
// 77. It is this node's setting for the peer (`peer add NAME --max-output 10G`, `peer set`),
// kept in the peer's peer_state row (keystore.PeerState.MaxOutput) so that it can be given
// before pairing completes, as the allow list can; Options.MaxStreamOutput (default
// DefaultMaxStreamOutput, 1 GiB) applies where none is set.

// MaxOutputDefault, as PeerSpec.MaxOutput, returns the peer's cap to the node's default.
const MaxOutputDefault = -1

// checkMaxOutput accepts a PeerSpec.MaxOutput: 0 (unchanged), MaxOutputDefault, or a cap of 1
// byte up to the largest offset a stream may reach.
func checkMaxOutput(v int64) error {
	if v < MaxOutputDefault || v > session.MaxStreamOffset {
		return fmt.Errorf("output cap %d: give 1 byte to %d (1 PiB), or the default", v, int64(session.MaxStreamOffset))
	}
	return nil
}

// setMaxOutput records name's cap given as PeerSpec.MaxOutput (0 changes nothing).
func setMaxOutput(tx *keystore.Tx, name string, v int64) error {
	if v == 0 {
		return nil
	}
	ps, ok, err := tx.PeerState(name)
	if err != nil {
		return err
	}
	if v == MaxOutputDefault {
		if !ok || ps.MaxOutput == 0 {
			return nil
		}
		v = 0
	}
	ps.MaxOutput = v
	return tx.PutPeerState(ps)
}

// peerMaxOutput is name's cap as set (0: the node's default).
func peerMaxOutput(tx *keystore.Tx, name string) (int64, error) {
	ps, _, err := tx.PeerState(name)
	return ps.MaxOutput, err
}

// maxStreamOutput is the cap of each stream of a command of the peer called name, read when the
// command starts: its own, or the node's default. A state that cannot be read gives the default.
func (n *Node) maxStreamOutput(name string) int64 {
	var max int64
	if err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		max, err = peerMaxOutput(tx, name)
		return err
	}); err != nil {
		n.log.Warn("the peer's output cap is unreadable; the default applies", "op", "execute", "peer", name, "err", err)
	}
	if max > 0 {
		return max
	}
	if n.opts.MaxStreamOutput > 0 {
		return n.opts.MaxStreamOutput
	}
	return DefaultMaxStreamOutput
}

// dropReportWish forgets the report wish of a pairing that never completed (report.go): the
// whole peer_state row, unless it holds an output cap too, which stays.
func dropReportWish(tx *keystore.Tx, ps keystore.PeerState) error {
	if ps.MaxOutput == 0 {
		return tx.DeletePeerState(ps.Name)
	}
	ps.ReportEvery, ps.ReportAsk = 0, false
	return tx.PutPeerState(ps)
}
