package node

import (
	"context"
	"os"
	"time"

	"github.com/sealpost/sealpost/keystore"
)

// Status is what `sealpost status` prints: this node, where it reads and sends its mail, and
// what is waiting. It answers the operator's first question when nothing seems to happen: is an
// agent running, and is mail stuck in the outbox, and why.
type Status struct {
	Fingerprint string `json:"fingerprint"`
	Address     string `json:"address"`
	StateDir    string `json:"state_dir"`
	// Agent: an agent serves this state (the answer came from it, through its control socket).
	Agent    bool `json:"agent"`
	AgentPID int  `json:"agent_pid,omitempty"`
	// AgentSince is when the agent started serving; Servers how it last found its IMAP and
	// SMTP servers (only from a running agent: they describe that process).
	AgentSince time.Time      `json:"agent_since,omitzero"`
	Servers    []ServerHealth `json:"servers,omitempty"`

	IMAP string `json:"imap"`
	SMTP string `json:"smtp"`
	TLS  string `json:"tls"`

	// NoMail: this node has no mailbox (init --no-mail); its packages are carried as files.
	NoMail bool `json:"no_mail,omitempty"`

	Peers          int `json:"peers"`
	PeersConfirmed int `json:"peers_confirmed"` // Ready: the status peer list shows is Confirmed

	// Waiting counts the commands sent (or queued for a session) without a final result.
	Waiting       int       `json:"commands_waiting"`
	OldestWaiting time.Time `json:"oldest_waiting,omitzero"`

	// Outbox counts the mails not sent yet; NextAttempt is the earliest next try, LastError the
	// latest failure among them.
	Outbox      int       `json:"outbox"`
	NextAttempt time.Time `json:"outbox_next_attempt,omitzero"`
	LastError   string    `json:"outbox_last_error,omitempty"`

	LastPrune time.Time `json:"last_prune,omitzero"` // when old processed mail was last looked for

	// FailedSchedules names the schedules whose last judged run failed (schedule.go).
	FailedSchedules []string `json:"failed_schedules,omitempty"`
}

// Status reports this node's state.
func (n *Node) Status(ctx context.Context) (Status, error) {
	s := Status{
		Fingerprint: n.Fingerprint().String(), Address: n.cfg.Address, StateDir: n.opts.Dir,
		Agent: n.serving.Load(), NoMail: n.cfg.NoMail, IMAP: n.cfg.IMAP, SMTP: n.cfg.SMTP, TLS: n.cfg.TLS,
	}
	if s.Agent {
		s.AgentPID = os.Getpid()
		if t := n.since.Load(); t != nil {
			s.AgentSince = *t
		}
		s.Servers = n.health.snapshot()
		s.Servers[0].Addr, s.Servers[1].Addr = n.cfg.IMAP, n.cfg.SMTP
	}
	// One read transaction, so that the figures agree with each other.
	err := n.view(func(tx *keystore.Tx, st TxStore) error {
		peers, err := n.peersIn(tx, st)
		if err != nil {
			return err
		}
		s.Peers = len(peers)
		for _, p := range peers {
			if p.Ready() {
				s.PeersConfirmed++
			}
		}
		// The records only, never their output: a status costs the history's records, not
		// what its commands printed.
		err = tx.ResultSummaries(nil, func(r keystore.Result, _ []byte) (bool, error) {
			if !Final(r.Status) {
				s.Waiting++
				if s.OldestWaiting.IsZero() || r.Sent.Before(s.OldestWaiting) {
					s.OldestWaiting = r.Sent
				}
			}
			return true, nil
		})
		if err != nil {
			return err
		}
		items, err := tx.Outbox()
		if err != nil {
			return err
		}
		s.Outbox = len(items)
		var lastTry time.Time
		for _, it := range items {
			if s.NextAttempt.IsZero() || it.NextAttempt.Before(s.NextAttempt) {
				s.NextAttempt = it.NextAttempt
			}
			// The latest error is that of the item tried last. Flush scheduled its next
			// attempt one backoff after the failure, so that is when it was tried.
			if it.LastError == "" {
				continue
			}
			if tried := it.NextAttempt.Add(-backoff(outboxBase, outboxMax, it.Attempts)); tried.After(lastTry) {
				lastTry, s.LastError = tried, it.LastError
			}
		}
		if t, ok, err := tx.LastPrune(); err == nil && ok {
			s.LastPrune = t
		}
		s.FailedSchedules, err = failedSchedules(tx)
		return err
	})
	return s, err
}
