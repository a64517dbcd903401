package session

import (
	"crypto/ed25519"
	"encoding/json"
)

// Role says which end of a session a node is. Sessions run one way: the initiator sends commands
// and the responder runs them; two directions are two sessions.
type Role uint8

const (
	Initiator Role = 1
	Responder Role = 2
)

func (r Role) String() string {
	if r == Initiator {
		return "initiator"
	}
	return "responder"
}

// Status of a session.
type Status uint8

const (
	// Initializing: the initiator sent INIT_REQ and waits for INIT_RESP; or the responder answered
	// and has not yet seen a command under the new session.
	Initializing Status = 1
	// Confirmed: the initiator verified INIT_RESP; or the responder opened a command under it.
	Confirmed Status = 2
)

func (s Status) String() string {
	switch s {
	case Initializing:
		return "Initializing"
	case Confirmed:
		return "Confirmed"
	}
	return "unknown"
}

// Epoch is one key epoch. Gen counts rotations since the handshake (epoch 0).
type Epoch struct {
	ID     EpochID `json:"id"`
	Secret Secret  `json:"secret"`
	Gen    uint64  `json:"gen"`
}

// State is everything a node keeps about one session. Fields are grouped by role; the other
// role's fields stay zero. It holds secrets: store it, never log it (LogValue redacts).
type State struct {
	ID      SessionID   `json:"id"`
	Peer    Fingerprint `json:"peer"`
	Role    Role        `json:"role"`
	Status  Status      `json:"status"`
	Created int64       `json:"created"` // INIT_REQ created-at, Unix ms: orders handshakes per peer

	// Initiator, while Initializing: the ephemeral private keys and the INIT_REQ hash. Deleted when
	// the session is Confirmed.
	RSAKey      []byte   `json:"rsa_key,omitempty"` // PKCS #1 DER
	MLKEMSeed   []byte   `json:"mlkem_seed,omitempty"`
	InitReqHash [32]byte `json:"init_req_hash"`
	NextSeq     uint64   `json:"next_seq,omitempty"`
	Current     Epoch    `json:"current"` // initiator: the newest epoch the responder is known to hold

	// Responder: the confirmed epoch, its unconfirmed children and the replay window.
	Children []Epoch `json:"children,omitempty"`
	Window   Window  `json:"window"`
}

// Send is one transmission of a pending command: what the initiator needs to open its answer and
// to derive the next epoch, without keeping the epoch secret itself.
type Send struct {
	Session        SessionID `json:"session"`
	Epoch          EpochID   `json:"epoch"`
	Seq            uint64    `json:"seq"`
	CommandHash    [32]byte  `json:"command_hash"`
	ResponseSecret Secret    `json:"response_secret"`
	SharePriv      Secret    `json:"share_priv"`
}

// MaxSends bounds how many transmissions of one command keep their keys; the oldest is
// forgotten first (its answer, if it still comes, is then ignored and the next retry's answer used).
const MaxSends = 16

// Pending is a command the initiator sent and has no answer for yet.
type Pending struct {
	Command  CommandID   `json:"command"`
	Peer     Fingerprint `json:"peer"`
	Payload  []byte      `json:"payload"`
	Created  int64       `json:"created"`
	NotAfter int64       `json:"not_after"`
	Sends    []Send      `json:"sends"`
}

// LedgerState of a command on the responder.
type LedgerState uint8

const (
	// Executing: the command was handed to its program (Engine.Start). After a crash it may or
	// may not have run, so it is answered outcome-unknown and never run again.
	Executing LedgerState = 1
	// Done: answered; the answer is recorded.
	Done LedgerState = 2
	// Accepted: cleared to run and waiting for its turn; it has not run. After a crash it is run
	// then (Payload holds the command), once.
	Accepted LedgerState = 3
)

// Ticket is what the responder needs to answer one command after running it. It is stored with
// the ledger's Executing entry, so that after a crash the node can still send an authenticated
// "outcome unknown".
type Ticket struct {
	Peer           Fingerprint `json:"peer"`
	Session        SessionID   `json:"session"`
	Epoch          EpochID     `json:"epoch"`
	Seq            uint64      `json:"seq"`
	Command        CommandID   `json:"command"`
	CommandHash    [32]byte    `json:"command_hash"`
	ResponseSecret Secret      `json:"response_secret"`
	PeerShare      [32]byte    `json:"peer_share"`
	NotAfter       int64       `json:"not_after"`
}

// LedgerEntry is the responder's record of one command id: Accepted (with the Ticket and the
// command's payload), Executing (with the Ticket), or Done with the answer. A redelivery of the very transmission that ran gets Answer, the sealed bytes,
// again; any other transmission (a retry, perhaps in a later session) gets Payload or Err sealed
// anew for it, because the requester may have forgotten the keys of the transmission that ran.
type LedgerEntry struct {
	Peer     Fingerprint `json:"peer"`
	Command  CommandID   `json:"command"`
	State    LedgerState `json:"state"`
	NotAfter int64       `json:"not_after"`
	Ticket   *Ticket     `json:"ticket,omitempty"`
	Answer   []byte      `json:"answer,omitempty"`
	// Payload is the command's payload while Accepted, and the response payload once Done.
	Payload []byte       `json:"payload,omitempty"`
	Err     *RemoteError `json:"err,omitempty"`
	// AcceptedAt is when the command was accepted (Unix ms, the responder's clock): a node that
	// runs accepted commands after a restart runs each peer's in this order.
	AcceptedAt int64 `json:"accepted_at,omitempty"`
	// Sent is when Answer was last handed out (Unix ms): when it was recorded, and when a
	// duplicate of the transmission was last answered with it. Duplicates get it again at most
	// once per Config.ResendInterval.
	Sent int64 `json:"sent,omitempty"`
}

// PairingMode says how an armed pairing authenticates the peer's PAIR package.
type PairingMode uint8

const (
	PairByCode        PairingMode = 1
	PairByFingerprint PairingMode = 2
)

// Pairing is an armed pairing, keyed by the peer's address. It holds the Argon2id-derived key,
// never the code, and is deleted when it completes, expires or runs out of attempts.
type Pairing struct {
	Name        string      `json:"name"`
	Address     string      `json:"address"`
	Mode        PairingMode `json:"mode"`
	Key         Secret      `json:"key"`
	Fingerprint Fingerprint `json:"fingerprint"`
	Expires     int64       `json:"expires"`
	Attempts    int         `json:"attempts"`
}

// PinnedPeer is a peer whose identity key this node trusts.
type PinnedPeer struct {
	Name      string            `json:"name"`
	Address   string            `json:"address"`
	PublicKey ed25519.PublicKey `json:"public_key"`
}

// Secrets are stored as bytes, not as the redacted string form.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s[:]) }

// UnmarshalJSON reads the form MarshalJSON writes.
func (s *Secret) UnmarshalJSON(b []byte) error {
	var raw []byte
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if len(raw) != len(s) {
		return parseErr("secret", "stored secret is %d bytes", len(raw))
	}
	copy(s[:], raw)
	return nil
}
