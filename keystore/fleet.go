package keystore

import (
	"encoding/json"
	"log/slog"
	"time"
)

// What a controller knows of each peer's host, for the fleet view: the latest sysinfo the peer
// answered or reported, its last ping's round trip, and the status reports asked of it.
//
//	peer_state  peer name -> JSON PeerState
//
// keystore keeps the sysinfo and report parts as the JSON objects node validated (it does not
// import commands); DeletePeerState removes the row with the peer.

// PeerState is one peer's row of the fleet view.
type PeerState struct {
	Name string `json:"name"`
	// SysInfo is the sysinfo object (docs/PROTOCOL.md section 19) last received from the peer,
	// by a sysinfo answer or a status report, at SysInfoAt.
	SysInfo   json.RawMessage `json:"sysinfo,omitempty"`
	SysInfoAt time.Time       `json:"sysinfo_at,omitzero"`
	// RoundTrip is the last answered ping's, from sending to its answer, at PingAt.
	RoundTrip time.Duration `json:"round_trip,omitempty"`
	PingAt    time.Time     `json:"ping_at,omitzero"`
	// ReportEvery is the interval of status reports asked of the peer (0: none asked).
	ReportEvery time.Duration `json:"report_every,omitempty"`
	// LastReport is when the latest report arrived; ReportRun and ReportSeq its numbering and
	// sequence number (a report of the same run not above ReportSeq is older: not kept);
	// Report the report's own part beside the sysinfo (agent version, queue, last error, checks).
	LastReport time.Time       `json:"last_report,omitzero"`
	ReportRun  uint64          `json:"report_run,omitempty"`
	ReportSeq  uint64          `json:"report_seq,omitempty"`
	Report     json.RawMessage `json:"report,omitempty"`
	// ReportAsk: ReportEvery was asked for at `peer add`, before the peer was paired; the
	// request goes to the peer once pairing completes.
	ReportAsk bool `json:"report_ask,omitempty"`
	// MaxOutput is the most bytes of each stream of a command's output (stdout, stderr) this
	// node, as the peer's agent, sends it (`peer add --max-output`); 0: the node's default. A
	// setting of this node's, not a fact about the peer's host: it stays when the report wish
	// of a lapsed pairing is dropped (node/report.go).
	MaxOutput int64 `json:"max_output,omitempty"`
}

func (p PeerState) validate() error {
	if err := checkName(p.Name); err != nil {
		return err
	}
	if err := checkTimes("peer state of "+p.Name, p.SysInfoAt, p.PingAt, p.LastReport); err != nil {
		return err
	}
	for _, raw := range []json.RawMessage{p.SysInfo, p.Report} {
		if len(raw) > 0 && !json.Valid(raw) {
			return invalidf("peer state of %q: a part is not JSON", p.Name)
		}
	}
	if p.RoundTrip < 0 || p.ReportEvery < 0 || p.MaxOutput < 0 {
		return invalidf("peer state of %q: a negative duration", p.Name)
	}
	return nil
}

func decodePeerState(k, v []byte) (PeerState, error) {
	var p PeerState
	if err := json.Unmarshal(v, &p); err != nil {
		return PeerState{}, corruptf("peer_state %q: %v", k, err)
	}
	if p.Name != string(k) {
		return PeerState{}, corruptf("peer_state %q holds the state of %q", k, p.Name)
	}
	if err := p.validate(); err != nil {
		return PeerState{}, corruptf("peer_state %q: %v", k, err)
	}
	return p, nil
}

// PeerState returns the state kept of the peer called name.
func (tx *Tx) PeerState(name string) (PeerState, bool, error) {
	if err := checkName(name); err != nil {
		return PeerState{}, false, err
	}
	v := tx.bucket(bPeerState).Get([]byte(name))
	if v == nil {
		return PeerState{Name: name}, false, nil
	}
	p, err := decodePeerState([]byte(name), v)
	return p, err == nil, err
}

// PutPeerState stores the state of peer p.Name.
func (tx *Tx) PutPeerState(p PeerState) error {
	if err := p.validate(); err != nil {
		return err
	}
	p.SysInfoAt, p.PingAt, p.LastReport = p.SysInfoAt.UTC(), p.PingAt.UTC(), p.LastReport.UTC()
	if err := putJSON(tx.bucket(bPeerState), []byte(p.Name), p); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_peer_state", slog.String("name", p.Name))
	}
	return nil
}

// DeletePeerState removes the state kept of the peer called name, if any.
func (tx *Tx) DeletePeerState(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return tx.bucket(bPeerState).Delete([]byte(name))
}

// ForEachPeerState calls fn with every peer's state, in name order.
func (tx *Tx) ForEachPeerState(fn func(PeerState) error) error {
	return tx.bucket(bPeerState).ForEach(func(k, v []byte) error {
		p, err := decodePeerState(k, v)
		if err != nil {
			return err
		}
		return fn(p)
	})
}
