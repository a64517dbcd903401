package session

import (
	"crypto/rand"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"
)

// Protocol limits (docs/PROTOCOL.md, "Time").
const (
	// MaxTTL is the longest lifetime (not-after minus created-at) any package may ask for.
	MaxTTL = 30 * 24 * time.Hour
	// DefaultSkew is how far in the future a created-at may lie.
	DefaultSkew = 10 * time.Minute
	// DefaultHandshakeTTL is the lifetime of INIT_REQ and INIT_RESP.
	DefaultHandshakeTTL = 7 * 24 * time.Hour
	// MaxChildren bounds the responder's unconfirmed epochs. Past it commands still run; their
	// responses carry the null share, which creates no child and asks an initiator still on that
	// epoch for a new handshake (docs/PROTOCOL.md, section 7).
	MaxChildren = 32
	// DefaultResendInterval: see Config.ResendInterval.
	DefaultResendInterval = 10 * time.Minute
	// LedgerRetention is how long past its not-after a ledger entry is kept (docs/PROTOCOL.md
	// section 12). The requester retries, and keeps a command pending, until not-after plus the
	// skew by its own clock, which may run up to the skew behind ours; keeping the entry longer
	// than both means every transmission that can still be answered finds it.
	LedgerRetention = 3 * DefaultSkew
)

// Config sets up an Engine. Zero values take the documented defaults.
type Config struct {
	// Identity is this node's long-term key. Required.
	Identity *Identity
	// Address is this node's mail address, sent in PAIR packages. Required for pairing.
	Address string
	// Rand supplies nonces, ids, X25519 shares and the RSA-wrapped key. Nil means crypto/rand.
	// (RSA and ML-KEM key generation and ML-KEM encapsulation always use Go's own source; tests
	// fix it with testing/cryptotest.SetGlobalRandom.)
	Rand io.Reader
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
	// MaxSkew is the allowed clock skew; zero means DefaultSkew.
	MaxSkew time.Duration
	// MaxTTL caps command lifetimes; zero or above the protocol's MaxTTL means MaxTTL.
	MaxTTL time.Duration
	// HandshakeTTL is the lifetime given to INIT_REQ; zero means DefaultHandshakeTTL.
	HandshakeTTL time.Duration
	// ResendInterval is how often a duplicate of one transmission (the relay replaying or
	// redelivering a command mail) is answered with the recorded answer again; zero means
	// DefaultResendInterval. Duplicates in between are accepted and answered with nothing, so
	// replays cannot multiply outgoing mail (THREATS row 38).
	ResendInterval time.Duration
	// Floor, if set, is when this node found its state restored from an older copy: a command
	// created before it that is not in the ledger may already have run, so it is answered
	// "outcome unknown" and never run (docs/PROTOCOL.md, "Restored state").
	Floor time.Time
}

// Engine applies the protocol to packages. It holds configuration only; all state lives in the
// Store passed to each call, so an Engine is safe for concurrent use with separate Stores.
type Engine struct {
	id     *Identity
	fp     Fingerprint
	addr   string
	rand   io.Reader
	now    func() time.Time
	skew   time.Duration
	ttl    time.Duration
	hsTTL  time.Duration
	floor  atomic.Int64 // Unix ms; noFloor when the state was never found restored
	resend time.Duration
}

// NewEngine checks cfg and fills in defaults.
func NewEngine(cfg Config) (*Engine, error) {
	if cfg.Identity == nil {
		return nil, fmt.Errorf("session: Config.Identity is required")
	}
	e := &Engine{
		id:    cfg.Identity,
		fp:    cfg.Identity.Fingerprint(),
		addr:  cfg.Address,
		rand:  cfg.Rand,
		now:   cfg.Now,
		skew:  cfg.MaxSkew,
		ttl:   cfg.MaxTTL,
		hsTTL: cfg.HandshakeTTL,
	}
	if e.rand == nil {
		e.rand = rand.Reader
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.skew <= 0 {
		e.skew = DefaultSkew
	}
	if e.ttl <= 0 || e.ttl > MaxTTL {
		e.ttl = MaxTTL
	}
	if e.hsTTL <= 0 || e.hsTTL > MaxTTL {
		e.hsTTL = DefaultHandshakeTTL
	}
	if e.resend = cfg.ResendInterval; e.resend <= 0 {
		e.resend = DefaultResendInterval
	}
	e.floor.Store(noFloor)
	if !cfg.Floor.IsZero() {
		e.SetFloor(cfg.Floor)
	}
	return e, nil
}

const noFloor = math.MinInt64

// SetFloor sets the restore floor (Config.Floor) of a running engine, when a restore is detected
// after it was made. A floor never moves back.
func (e *Engine) SetFloor(t time.Time) {
	ms := t.UnixMilli()
	for {
		old := e.floor.Load()
		if old >= ms || e.floor.CompareAndSwap(old, ms) {
			return
		}
	}
}

// Fingerprint is this node's fingerprint.
func (e *Engine) Fingerprint() Fingerprint { return e.fp }

// Kind says what a received package amounted to.
type Kind uint8

const (
	// Paired: a peer was pinned. Reply, if set, is our PAIR answer for it.
	Paired Kind = iota + 1
	// HandshakeAccepted: responder side; Reply is the INIT_RESP.
	HandshakeAccepted
	// SessionConfirmed: initiator side; the new session is ready. Pending commands for the peer
	// should be sent again with Retry.
	SessionConfirmed
	// Execute: responder side; run Payload, then answer with Complete or Fail using Ticket.
	Execute
	// Replied: responder side; Reply answers a duplicate, or is an error (Err says which). Nothing runs.
	Replied
	// Delivered: initiator side; Payload is the response to Command. Rekey set: the peer also
	// asks for a new handshake (its window of unconfirmed epochs is full); start one.
	Delivered
	// Failed: initiator side; the peer answered Command with Err, and will not run it.
	Failed
	// RekeyRequested: initiator side; the peer wants a new handshake. Command was not run; it stays
	// pending and is to be retried once the new session is confirmed.
	RekeyRequested
	// ChunkReceived: a CHUNK of a stream the store knows opened; Chunk holds it. Nothing changed:
	// the caller keeps its bytes, or drops a chunk it already holds.
	ChunkReceived
)

var kindNames = [...]string{"", "paired", "handshake-accepted", "session-confirmed", "execute", "replied", "delivered", "failed", "rekey-requested", "chunk-received"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && k > 0 {
		return kindNames[k]
	}
	return "unknown"
}

// Outcome is the result of Receive.
type Outcome struct {
	Kind    Kind
	Peer    Fingerprint
	Session SessionID
	Command CommandID
	// Payload: the command to run (Execute) or the response (Delivered).
	Payload []byte
	// Reply is a package to mail to the peer's pinned address, if not nil.
	Reply []byte
	// Err is the authenticated error a peer sent (Failed, RekeyRequested) or that we reply (Replied).
	Err *RemoteError
	// Ticket answers an Execute outcome.
	Ticket *Ticket
	// Epoch is the session's epoch generation after this package.
	Epoch uint64
	// Status of the session after this package (handshake outcomes).
	Status Status
	// Duplicate (Replied): the package was a copy of a transmission already answered; Reply is
	// the recorded answer, or nil when it was handed out within the resend interval.
	Duplicate bool
	// Chunk (ChunkReceived): the opened chunk.
	Chunk *ChunkIn
	// Rekey (Delivered): the response carried the null share under the current epoch, so the
	// session did not rotate; a new handshake is due.
	Rekey bool
}

// Receive applies one received package to st. A non-nil error means the package is rejected: no
// state changed (except a failed pairing attempt, see ErrPairingCode, and an aborted handshake,
// see ErrHandshakeAborted), nothing is to run and no reply is to be sent; the caller logs it and moves the mail aside. The checks run in the order
// docs/PROTOCOL.md, "Receiving", lists: parse, addressing and sender before any public-key or
// AEAD work, then authentication, then replay and time, then the ledger.
func (e *Engine) Receive(st Store, raw []byte) (Outcome, error) {
	st = guard(st)
	p, err := Parse(raw)
	if err != nil {
		return Outcome{}, err
	}
	if p.Type == TypePair {
		return e.receivePair(st, p, raw)
	}
	if p.Recipient != e.fp {
		return Outcome{}, ErrNotForUs
	}
	if p.Sender == e.fp {
		// Our own package reflected back: we never talk to ourselves.
		return Outcome{}, fmt.Errorf("%w: reflected package from ourselves", ErrUnknownPeer)
	}
	peer, ok, err := st.Peer(p.Sender)
	if err != nil {
		return Outcome{}, err
	}
	if !ok {
		return Outcome{}, ErrUnknownPeer
	}
	switch p.Type {
	case TypeInitReq:
		return e.receiveInitReq(st, p, raw, peer)
	case TypeInitResp:
		return e.receiveInitResp(st, p, raw, peer)
	case TypeCommand:
		return e.receiveCommand(st, p, raw)
	case TypeChunk:
		return e.receiveChunk(st, p, raw)
	default: // TypeResponse, TypeError
		return e.receiveAnswer(st, p, raw)
	}
}

func (e *Engine) nowMS() int64 { return e.now().UnixMilli() }

func (e *Engine) random(b []byte) error {
	if _, err := io.ReadFull(e.rand, b); err != nil {
		return &LocalError{Op: "read randomness", Err: err}
	}
	return nil
}
