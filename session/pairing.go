package session

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Pairing (docs/PROTOCOL.md, "Pairing") pins a peer's identity key once. Both operators arm a
// pairing for the other's address with the same code (or with the other's fingerprint, read out
// of band); each node mails a PAIR package carrying its identity key and address, signed by that
// key and MACed with a key stretched from the code by Argon2id. The first side to receive a valid
// PAIR answers with its own, so the order in which operators arm does not matter.

// Argon2id parameters for the pairing key. They are part of the protocol: both sides must agree.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 4
)

// Defaults for ArmPairing.
const (
	DefaultPairingTTL      = 24 * time.Hour
	DefaultPairingAttempts = 5
)

// PAIR body modes.
const (
	pairCodeInitial = 1
	pairCodeReply   = 2
	pairFPInitial   = 3
	pairFPReply     = 4
)

// PairRequest arms a pairing with one peer.
type PairRequest struct {
	Name    string // local name for the peer
	Address string // the peer's mail address
	// Code is the shared pairing code; leave empty to pair by Fingerprint instead.
	Code        string
	Fingerprint Fingerprint
	TTL         time.Duration // zero means DefaultPairingTTL
	Attempts    int           // zero means DefaultPairingAttempts
}

// ArmPairing stores an armed pairing and returns the PAIR package to mail to the peer.
func (e *Engine) ArmPairing(st Store, req PairRequest) ([]byte, error) {
	if e.addr == "" {
		return nil, fmt.Errorf("pairing needs this node's address (Config.Address)")
	}
	addr := normalizeAddress(req.Address)
	if req.Name == "" {
		return nil, fmt.Errorf("pairing needs a peer name")
	}
	if err := ValidAddress(addr); err != nil {
		return nil, fmt.Errorf("pairing: %w", err)
	}
	if addr == normalizeAddress(e.addr) {
		return nil, fmt.Errorf("pairing: %s is this node's own address", addr)
	}
	pr := &Pairing{Name: req.Name, Address: addr, Attempts: req.Attempts}
	switch {
	case req.Code != "":
		code := NormalizeCode(req.Code)
		if code == "" {
			return nil, fmt.Errorf("pairing code is empty")
		}
		pr.Mode, pr.Key = PairByCode, pairingKey(code, e.addr, addr)
	case !req.Fingerprint.IsZero():
		pr.Mode, pr.Fingerprint = PairByFingerprint, req.Fingerprint
	default:
		return nil, fmt.Errorf("pairing needs a code or a fingerprint")
	}
	ttl := req.TTL
	if ttl <= 0 || ttl > MaxTTL {
		ttl = DefaultPairingTTL
	}
	if pr.Attempts <= 0 {
		pr.Attempts = DefaultPairingAttempts
	}
	pr.Expires = e.now().Add(ttl).UnixMilli()
	pkg, err := e.pairPackage(pr, false)
	if err != nil {
		return nil, err
	}
	if err := st.PutPairing(pr); err != nil {
		return nil, err
	}
	return pkg, nil
}

func (e *Engine) pairPackage(pr *Pairing, reply bool) ([]byte, error) {
	mode := byte(pairCodeInitial)
	if pr.Mode == PairByFingerprint {
		mode = pairFPInitial
	}
	if reply {
		mode++
	}
	own := normalizeAddress(e.addr)
	bodyLen := 1 + ed25519.PublicKeySize + 1 + len(own) + 32
	h := Header{Type: TypePair, Sender: e.fp, BodyLen: uint32(bodyLen), SigLen: SigSize}
	if err := e.random(h.Nonce[:]); err != nil {
		return nil, err
	}
	now := e.nowMS()
	h.Created, h.NotAfter = now, max(now, pr.Expires)
	raw := h.appendTo(make([]byte, 0, HeaderSize+bodyLen+SigSize))
	raw = append(raw, mode)
	raw = append(raw, e.id.Public()...)
	raw = append(raw, byte(len(own)))
	raw = append(raw, own...)
	if pr.Mode == PairByCode {
		raw = append(raw, pairMAC(&pr.Key, raw)...)
	} else {
		raw = append(raw, make([]byte, 32)...)
	}
	return append(raw, e.id.sign(raw)...), nil
}

// pairBody is a decoded PAIR body.
type pairBody struct {
	mode    byte
	pub     ed25519.PublicKey
	address string
	mac     []byte
}

// decodePairBody is the body decoder for PAIR packages.
func decodePairBody(b []byte) (*pairBody, error) {
	if len(b) < pairMinBody {
		return nil, parseErr("pair", "PAIR body of %d bytes is too short", len(b))
	}
	pb := &pairBody{mode: b[0]}
	if pb.mode < pairCodeInitial || pb.mode > pairFPReply {
		return nil, parseErr("pair", "unknown PAIR mode %d", b[0])
	}
	pb.pub = ed25519.PublicKey(b[1:33])
	n := int(b[33])
	if n == 0 || len(b) != 34+n+32 {
		return nil, parseErr("pair", "PAIR address length %d does not match the %d-byte body", n, len(b))
	}
	pb.address = string(b[34 : 34+n])
	if normalizeAddress(pb.address) != pb.address {
		return nil, parseErr("pair", "PAIR address is not in canonical form")
	}
	if err := ValidAddress(pb.address); err != nil {
		return nil, parseErr("pair", "PAIR address: %v", err)
	}
	pb.mac = b[34+n:]
	if (pb.mode == pairFPInitial || pb.mode == pairFPReply) && !allZero(pb.mac) {
		return nil, parseErr("pair", "fingerprint-mode PAIR must carry a zero MAC")
	}
	return pb, nil
}

func (e *Engine) receivePair(st Store, p *Package, raw []byte) (Outcome, error) {
	pb, err := decodePairBody(p.Body)
	if err != nil {
		return Outcome{}, err
	}
	if FingerprintOf(pb.pub) != p.Sender {
		return Outcome{}, parseErr("pair", "PAIR sender fingerprint is not that of its key")
	}
	if p.Sender == e.fp || pb.address == normalizeAddress(e.addr) {
		return Outcome{}, fmt.Errorf("%w: our own PAIR reflected back", ErrUnknownPeer)
	}
	pr, ok, err := st.Pairing(pb.address)
	if err != nil {
		return Outcome{}, err
	}
	if !ok || e.nowMS() > pr.Expires {
		return Outcome{}, fmt.Errorf("%w: no pairing armed for %s", ErrUnknownPeer, pb.address)
	}
	if !ed25519.Verify(pb.pub, raw[:len(raw)-SigSize], p.Sig) {
		return Outcome{}, fmt.Errorf("%w: PAIR signature", ErrAuth)
	}
	if err := e.checkHandshakeTime(&p.Header); err != nil {
		return Outcome{}, err
	}
	codeMode := pb.mode == pairCodeInitial || pb.mode == pairCodeReply
	var match bool
	if pr.Mode == PairByCode {
		match = codeMode && hmac.Equal(pb.mac, pairMAC(&pr.Key, raw[:len(raw)-SigSize-32]))
	} else {
		match = !codeMode && FingerprintOf(pb.pub) == pr.Fingerprint
	}
	if !match {
		pr.Attempts--
		if pr.Attempts <= 0 {
			err = st.DeletePairing(pr.Address)
		} else {
			err = st.PutPairing(pr)
		}
		if err != nil {
			return Outcome{}, err
		}
		return Outcome{}, fmt.Errorf("%w (%d attempts left)", ErrPairingCode, max(pr.Attempts, 0))
	}
	if err := st.PinPeer(PinnedPeer{Name: pr.Name, Address: pr.Address, PublicKey: pb.pub}); err != nil {
		return Outcome{}, err
	}
	out := Outcome{Kind: Paired, Peer: p.Sender}
	if pb.mode == pairCodeInitial || pb.mode == pairFPInitial {
		if out.Reply, err = e.pairPackage(pr, true); err != nil {
			return Outcome{}, err
		}
	}
	if err := st.DeletePairing(pr.Address); err != nil {
		return Outcome{}, err
	}
	return out, nil
}

// pairingKey stretches the code with Argon2id, salted by both addresses so that one code
// pre-computation attacks one pair of nodes only.
func pairingKey(code, addrA, addrB string) Secret {
	a, b := normalizeAddress(addrA), normalizeAddress(addrB)
	if b < a {
		a, b = b, a
	}
	salt := sha256.Sum256([]byte(labelPairSalt + "\x00" + a + "\x00" + b))
	var k Secret
	copy(k[:], argon2.IDKey([]byte(code), salt[:], argonTime, argonMemory, argonThreads, 32))
	return k
}

func pairMAC(key *Secret, msg []byte) []byte {
	return hmacSHA256(key[:], append([]byte(labelPairMAC), msg...))
}

func normalizeAddress(a string) string { return strings.ToLower(strings.TrimSpace(a)) }

// ValidAddress is the one rule for a mail address the protocol carries (docs/PROTOCOL.md section
// 5): 1..254 bytes of valid UTF-8 in canonical form (lower case, no surrounding space), no
// control or space character anywhere, and an "@" with something on both sides of the last one.
// A PAIR whose address breaks it is malformed. The state store keeps addresses under a rule that
// accepts everything this one does (node tests that), so an address decoded from a package can
// never fail there (THREATS row 30).
func ValidAddress(a string) error {
	switch {
	case a == "":
		return errors.New("address is empty")
	case len(a) > maxAddressLen:
		return fmt.Errorf("address is %d bytes, the limit is %d", len(a), maxAddressLen)
	case !utf8.ValidString(a):
		return errors.New("address is not valid UTF-8")
	case normalizeAddress(a) != a:
		return fmt.Errorf("address %q is not in canonical form (lower case, no surrounding space)", a)
	}
	for _, r := range a {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return fmt.Errorf("address %q contains a control or space character", a)
		}
	}
	if at := strings.LastIndexByte(a, '@'); at <= 0 || at == len(a)-1 {
		return fmt.Errorf("address %q is not of the form local@domain", a)
	}
	return nil
}
