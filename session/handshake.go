package session

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Handshake (docs/PROTOCOL.md, "Handshake"): one round trip in RemoteCommand's shape, made sound.
// INIT_REQ carries a fresh RSA-3072 public key and a fresh ML-KEM-768 encapsulation key, signed by
// the initiator; INIT_RESP carries a random key under RSA-OAEP-SHA256 (label bound to the INIT_REQ
// hash), an ML-KEM ciphertext and a key confirmation, signed by the responder. The session secret
// needs both shared secrets, so breaking either RSA or ML-KEM alone gains nothing.

const (
	rsaBits   = 3072
	rsaE      = 65537
	rsaKeyLen = 32
	// maxInitializing bounds the unconfirmed responder sessions kept per peer (handshakes in
	// flight, or replays of recent INIT_REQs).
	maxInitializing = 4
)

// HandshakeKeys are an initiator's ephemeral keys for one handshake: an RSA-3072 key and an
// ML-KEM-768 key. Making the RSA key is the slow part of a handshake (a few tenths of a second),
// so a node opening sessions with many peers at once makes them ahead with NewHandshakeKeys, in
// parallel and outside its state transaction, and hands one to each StartSessionWith. Each is
// used for one handshake only.
type HandshakeKeys struct {
	rsa *rsa.PrivateKey
	dk  *mlkem.DecapsulationKey768
}

// NewHandshakeKeys makes the ephemeral keys of one handshake.
func NewHandshakeKeys() (*HandshakeKeys, error) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, rsaBits)
	if err != nil {
		return nil, fmt.Errorf("generate RSA key: %w", err)
	}
	dk, err := mlkem.GenerateKey768()
	if err != nil {
		return nil, fmt.Errorf("generate ML-KEM key: %w", err)
	}
	return &HandshakeKeys{rsa: rsaKey, dk: dk}, nil
}

// StartSession begins a handshake with a pinned peer: it stores an Initializing initiator session
// holding the ephemeral private keys and returns the INIT_REQ to mail. An existing Confirmed
// session keeps working until the new one is confirmed.
func (e *Engine) StartSession(st Store, peer Fingerprint) ([]byte, SessionID, error) {
	return e.StartSessionWith(st, peer, nil)
}

// StartSessionWith is StartSession with keys made ahead (NewHandshakeKeys); nil makes them here.
// The keys must not have been used before.
func (e *Engine) StartSessionWith(st Store, peer Fingerprint, keys *HandshakeKeys) ([]byte, SessionID, error) {
	var id SessionID
	if _, ok, err := st.Peer(peer); err != nil {
		return nil, id, err
	} else if !ok {
		return nil, id, ErrUnknownPeer
	}
	if keys == nil {
		var err error
		if keys, err = NewHandshakeKeys(); err != nil {
			return nil, id, err
		}
	}
	rsaKey, dk := keys.rsa, keys.dk
	h := Header{Type: TypeInitReq, Sender: e.fp, Recipient: peer, BodyLen: initReqBodyLen, SigLen: SigSize}
	if err := e.random(h.Session[:]); err != nil {
		return nil, id, err
	}
	if err := e.random(h.Nonce[:]); err != nil {
		return nil, id, err
	}
	now := e.nowMS()
	h.Created, h.NotAfter = now, now+e.hsTTL.Milliseconds()

	raw := h.appendTo(make([]byte, 0, HeaderSize+initReqBodyLen+SigSize))
	rsaKey.N.FillBytes(grow(&raw, rsaBytes))
	raw = append(raw, dk.EncapsulationKey().Bytes()...)
	raw = append(raw, e.id.sign(raw)...)

	s := &State{
		ID: h.Session, Peer: peer, Role: Initiator, Status: Initializing, Created: now,
		RSAKey:      x509.MarshalPKCS1PrivateKey(rsaKey),
		MLKEMSeed:   dk.Bytes(),
		InitReqHash: hashPackage(raw),
	}
	if err := st.PutSession(s); err != nil {
		return nil, id, err
	}
	return raw, h.Session, nil
}

// grow extends *b by n bytes and returns the new tail, so FillBytes writes in place.
func grow(b *[]byte, n int) []byte {
	l := len(*b)
	*b = append(*b, make([]byte, n)...)
	return (*b)[l : l+n]
}

func (e *Engine) receiveInitReq(st Store, p *Package, raw []byte, peer PinnedPeer) (Outcome, error) {
	signed := raw[:len(raw)-SigSize]
	if !ed25519.Verify(peer.PublicKey, signed, p.Sig) {
		return Outcome{}, fmt.Errorf("%w: INIT_REQ signature", ErrAuth)
	}
	if err := e.checkHandshakeTime(&p.Header); err != nil {
		return Outcome{}, err
	}
	// The session id must be new to this node, whoever holds it: a replay names the session it
	// created, and a pinned peer that reused the id of another session (ours to it, or one with
	// another peer) would otherwise overwrite that session.
	if _, ok, err := st.Session(p.Session); err != nil {
		return Outcome{}, err
	} else if ok {
		return Outcome{}, fmt.Errorf("%w: INIT_REQ names session %s, which exists", ErrReplay, p.Session)
	}
	ids, err := st.SessionsOf(p.Sender)
	if err != nil {
		return Outcome{}, err
	}
	var initializing []*State
	for _, sid := range ids {
		s, ok, err := st.Session(sid)
		if err != nil {
			return Outcome{}, err
		}
		if !ok || s.Role != Responder {
			continue
		}
		if s.Created > p.Created {
			// An INIT_REQ older than a handshake we already answered.
			return Outcome{}, fmt.Errorf("%w: INIT_REQ not newer than session %s", ErrReplay, sid)
		}
		if s.Status == Initializing {
			initializing = append(initializing, s)
		}
	}

	n := new(big.Int).SetBytes(p.Body[:rsaBytes])
	if n.BitLen() != rsaBits || n.Bit(0) == 0 {
		return Outcome{}, parseErr("rsa", "INIT_REQ RSA modulus is not a 3072-bit odd number")
	}
	ek, err := mlkem.NewEncapsulationKey768(p.Body[rsaBytes:])
	if err != nil {
		return Outcome{}, parseErr("mlkem", "INIT_REQ ML-KEM key: %v", err)
	}
	reqHash := hashPackage(raw)
	var kRSA [rsaKeyLen]byte
	if err := e.random(kRSA[:]); err != nil {
		return Outcome{}, err
	}
	rsaCT, err := rsa.EncryptOAEP(sha256.New(), e.rand, &rsa.PublicKey{N: n, E: rsaE}, kRSA[:], oaepLabel(reqHash[:]))
	if err != nil {
		return Outcome{}, parseErr("rsa", "INIT_REQ RSA key unusable: %v", err)
	}
	kKEM, kemCT := ek.Encapsulate()

	h := Header{Type: TypeInitResp, Sender: e.fp, Recipient: p.Sender, Session: p.Session, BodyLen: initRespBodyLen, SigLen: SigSize}
	if err := e.random(h.Nonce[:]); err != nil {
		return Outcome{}, err
	}
	now := e.nowMS()
	h.Created, h.NotAfter = now, now+e.hsTTL.Milliseconds()
	resp := h.appendTo(make([]byte, 0, HeaderSize+initRespBodyLen+SigSize))
	resp = append(append(resp, rsaCT...), kemCT...)
	th := transcriptHash(reqHash[:], resp)
	s0, kc := handshakeSecrets(kRSA[:], kKEM, th[:])
	resp = append(resp, hmacSHA256(kc[:], th[:])...)
	resp = append(resp, e.id.sign(resp)...)

	// Keep the newest few unconfirmed sessions: a handshake retried by the initiator may be
	// answered out of order, and the first command decides which one wins.
	if len(initializing) >= maxInitializing {
		oldest := initializing[0]
		for _, s := range initializing[1:] {
			if s.Created < oldest.Created {
				oldest = s
			}
		}
		if err := st.DeleteSession(oldest.ID); err != nil {
			return Outcome{}, err
		}
	}
	s := &State{
		ID: p.Session, Peer: p.Sender, Role: Responder, Status: Initializing, Created: p.Created,
		Current: Epoch{ID: epochID(&s0), Secret: s0},
	}
	if err := st.PutSession(s); err != nil {
		return Outcome{}, err
	}
	return Outcome{Kind: HandshakeAccepted, Peer: p.Sender, Session: p.Session, Reply: resp, Status: Initializing}, nil
}

func (e *Engine) receiveInitResp(st Store, p *Package, raw []byte, peer PinnedPeer) (Outcome, error) {
	s, ok, err := st.Session(p.Session)
	if err != nil {
		return Outcome{}, err
	}
	if !ok || s.Role != Initiator || s.Status != Initializing || s.Peer != p.Sender {
		return Outcome{}, ErrUnknownSession
	}
	// The signature comes before any RSA or ML-KEM work, so forged mail costs us one Ed25519 check.
	if !ed25519.Verify(peer.PublicKey, raw[:len(raw)-SigSize], p.Sig) {
		return Outcome{}, fmt.Errorf("%w: INIT_RESP signature", ErrAuth)
	}
	if err := e.checkHandshakeTime(&p.Header); err != nil {
		return Outcome{}, err
	}
	// From here the package is the peer's own: if it does not complete, the handshake is dead.
	abort := func(why string) (Outcome, error) {
		if err := st.DeleteSession(s.ID); err != nil {
			return Outcome{}, err
		}
		return Outcome{}, fmt.Errorf("%w: %s", ErrHandshakeAborted, why)
	}
	rsaKey, err := x509.ParsePKCS1PrivateKey(s.RSAKey)
	if err != nil {
		return Outcome{}, fmt.Errorf("stored RSA key: %w", err)
	}
	rsaCT := p.Body[:rsaBytes]
	kemCT := p.Body[rsaBytes : rsaBytes+mlkemCTBytes]
	confirm := p.Body[rsaBytes+mlkemCTBytes:]
	kRSA, err := rsa.DecryptOAEP(sha256.New(), nil, rsaKey, rsaCT, oaepLabel(s.InitReqHash[:]))
	if err != nil || len(kRSA) != rsaKeyLen {
		return abort("RSA-OAEP ciphertext does not open under this handshake's key and label")
	}
	dk, err := mlkem.NewDecapsulationKey768(s.MLKEMSeed)
	if err != nil {
		return Outcome{}, fmt.Errorf("stored ML-KEM key: %w", err)
	}
	kKEM, err := dk.Decapsulate(kemCT)
	if err != nil {
		return abort("ML-KEM ciphertext malformed")
	}
	th := transcriptHash(s.InitReqHash[:], raw[:HeaderSize+rsaBytes+mlkemCTBytes])
	s0, kc := handshakeSecrets(kRSA, kKEM, th[:])
	if !hmac.Equal(confirm, hmacSHA256(kc[:], th[:])) {
		return abort("key confirmation mismatch")
	}
	s.Status = Confirmed
	s.Current = Epoch{ID: epochID(&s0), Secret: s0}
	s.NextSeq = 1
	s.RSAKey, s.MLKEMSeed = nil, nil // the ephemeral private keys die here
	if err := e.deleteOtherSessions(st, s.Peer, Initiator, s.ID); err != nil {
		return Outcome{}, err
	}
	if err := st.PutSession(s); err != nil {
		return Outcome{}, err
	}
	return Outcome{Kind: SessionConfirmed, Peer: s.Peer, Session: s.ID, Status: Confirmed}, nil
}

// ErrClock: a handshake package whose created-at lies beyond the allowed skew. (A command in that
// state gets an authenticated "clock" error instead; a handshake has no key to send one with.)
var ErrClock = errors.New("created-at beyond the allowed clock skew")

func (e *Engine) checkHandshakeTime(h *Header) error {
	now := e.nowMS()
	switch {
	case h.Created > now+e.skew.Milliseconds():
		return fmt.Errorf("%w: %s created %s ahead of our clock", ErrClock, h.Type, time.Duration(h.Created-now)*time.Millisecond)
	case now > h.NotAfter:
		return fmt.Errorf("%w: %s", ErrExpired, h.Type)
	case h.NotAfter-h.Created > MaxTTL.Milliseconds():
		return fmt.Errorf("%w: %s lifetime above the cap", ErrExpired, h.Type)
	}
	return nil
}

// deleteOtherSessions removes every session of role r with peer except keep.
func (e *Engine) deleteOtherSessions(st Store, peer Fingerprint, r Role, keep SessionID) error {
	ids, err := st.SessionsOf(peer)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if id == keep {
			continue
		}
		s, ok, err := st.Session(id)
		if err != nil {
			return err
		}
		if ok && s.Role == r {
			if err := st.DeleteSession(id); err != nil {
				return err
			}
		}
	}
	return nil
}

func oaepLabel(reqHash []byte) []byte {
	return append([]byte(labelInitRSA), reqHash...)
}

// transcriptHash binds the INIT_REQ (by hash) and the INIT_RESP up to its key confirmation.
func transcriptHash(reqHash, respPrefix []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(labelTranscript))
	h.Write(reqHash)
	h.Write(respPrefix)
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// handshakeSecrets derives epoch 0 and the confirmation key from both shared secrets.
func handshakeSecrets(kRSA, kKEM, th []byte) (s0, kc Secret) {
	ikm := bytes.Join([][]byte{kRSA, kKEM}, nil)
	return mustHKDF(ikm, th, labelEpoch0), mustHKDF(ikm, th, labelConfirm)
}
