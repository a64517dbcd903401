package session

// Test vectors in age's format (testdata/README.md): header lines, a blank line, the package.
// TestVectors runs every testdata/*.vec through Parse (and Marshal) and then through the checks
// of its type, and compares the result with the vector's "expect:" line; a RESPONSE that carries
// the inputs of its child epoch is also checked as the initiator derives the child
// (checkRotationVector), and vectorLinks ties vectors built on one another. The generator below
// writes the files from the real Engine, deterministically:
//
//	go test ./session/ -run TestVectors -update
//
// (The package comes first: go test hands every argument after an unknown flag such as -update
// to the test binary, so "go test -run TestVectors -update ./session/" tests the module root.)

import (
	"bytes"
	"cmp"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/mlkem"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/*.vec from the generator (TestVectors)")

const vectorDir = "testdata"

// The four outcomes a vector may expect.
const (
	expectSuccess   = "success"
	expectParse     = "parse failure"     // Parse or a body decoder: errors.Is(err, ErrMalformed)
	expectAuth      = "auth failure"      // signature, AEAD tag, PAIR MAC or pinned fingerprint
	expectHandshake = "handshake failure" // authentic INIT_RESP whose RSA, ML-KEM or confirmation fails
)

// vectorKeys are the header keys a vector may carry, in the order the generator writes them.
// All values but expect, type and comment are hex.
var vectorKeys = []string{
	"expect", "type",
	"secret", "payload", "share", "error code", "error detail",
	"epoch secret", "command", "command share key", "child secret", "child id",
	"signer", "rsa key", "mlkem seed", "init req hash", "epoch0 secret", "epoch0 id",
	"code", "address a", "address b", "fingerprint",
	"comment",
}

// requiredVectors must exist; a vector that goes missing fails TestVectors instead of silently
// shrinking the suite (and the fuzz seeds).
var requiredVectors = []string{
	"command_ok", "command_bad_tag", "command_bad_header_ad", "command_truncated", "command_trailing_byte",
	"command_unknown_flag", "command_unknown_version", "command_nonzero_padding", "command_wrong_bucket",
	"response_ok", "response_child_ok", "response_null_share_ok", "response_low_order_share", "command_child_ok",
	"error_ok", "error_unknown_code",
	"init_req_ok", "init_req_bad_signature",
	"init_resp_ok", "init_resp_bad_label", "init_resp_bad_confirm",
	"pair_code_ok", "pair_code_wrong", "pair_fingerprint_ok", "pair_fingerprint_nonzero_mac",
}

// vectorLinks are values that two vectors must share, so that vectors built on one another stay
// one chain: {vector, key, vector, key}, where the key "" is the vector's package.
var vectorLinks = [][4]string{
	// response_child_ok answers command_ok, sealed under command_ok's epoch secret...
	{"response_child_ok", "command", "command_ok", ""},
	{"response_child_ok", "epoch secret", "command_ok", "secret"},
	// ...and the initiator's next command goes out under the child it derives.
	{"command_child_ok", "secret", "response_child_ok", "child secret"},
}

// vector is one test vector file.
type vector struct {
	name     string // file name without .vec
	expect   string
	typ      string            // Type.String() of the package
	fields   map[string][]byte // hex keys, decoded
	comments []string
	pkg      []byte
}

func newVector(name, expect string, typ Type, pkg []byte) *vector {
	return &vector{name: name, expect: expect, typ: typ.String(), fields: map[string][]byte{}, pkg: bytes.Clone(pkg)}
}

func (v *vector) set(key string, val []byte) *vector {
	if !slices.Contains(vectorKeys, key) || key == "expect" || key == "type" || key == "comment" {
		panic("vector: not a hex key: " + key)
	}
	v.fields[key] = bytes.Clone(val)
	return v
}

func (v *vector) note(comment string) *vector {
	v.comments = append(v.comments, comment)
	return v
}

// encode renders the file: header lines in vectorKeys order, a blank line, the package bytes.
func (v *vector) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "expect: %s\ntype: %s\n", v.expect, v.typ)
	for _, k := range vectorKeys {
		if val, ok := v.fields[k]; ok {
			fmt.Fprintf(&b, "%s: %s\n", k, hex.EncodeToString(val))
		}
	}
	for _, c := range v.comments {
		fmt.Fprintf(&b, "comment: %s\n", c)
	}
	b.WriteString("\n")
	b.Write(v.pkg)
	return b.Bytes()
}

var typeNames = map[string]Type{}

func init() {
	for t := TypePair; t <= TypeError; t++ {
		typeNames[t.String()] = t
	}
}

// parseVector reads the file format strictly: unknown or repeated keys, bad hex and unknown
// expect or type values are errors.
func parseVector(name string, data []byte) (*vector, error) {
	head, pkg, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("vector %s: no blank line after the header", name)
	}
	v := &vector{name: name, fields: map[string][]byte{}, pkg: pkg}
	for _, line := range strings.Split(string(head), "\n") {
		k, val, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, fmt.Errorf("vector %s: header line %q is not \"key: value\"", name, line)
		}
		_, dup := v.fields[k]
		switch {
		case k == "comment":
			v.comments = append(v.comments, val)
		case k == "expect":
			if v.expect != "" {
				dup = true
			}
			switch val {
			case expectSuccess, expectParse, expectAuth, expectHandshake:
			default:
				return nil, fmt.Errorf("vector %s: unknown expect %q", name, val)
			}
			v.expect = val
		case k == "type":
			if v.typ != "" {
				dup = true
			}
			if _, ok := typeNames[val]; !ok {
				return nil, fmt.Errorf("vector %s: unknown type %q", name, val)
			}
			v.typ = val
		case slices.Contains(vectorKeys, k):
			b, err := hex.DecodeString(val)
			if err != nil {
				return nil, fmt.Errorf("vector %s: %s: %v", name, k, err)
			}
			v.fields[k] = b
		default:
			return nil, fmt.Errorf("vector %s: unknown key %q", name, k)
		}
		if dup {
			return nil, fmt.Errorf("vector %s: key %q repeated", name, k)
		}
	}
	if v.expect == "" || v.typ == "" {
		return nil, fmt.Errorf("vector %s: expect and type are required", name)
	}
	return v, nil
}

// loadVectors reads every testdata/*.vec, sorted by name. No vectors at all is an error: the fuzz
// targets take their seeds from here and must not lose them silently.
func loadVectors(tb testing.TB) []*vector {
	tb.Helper()
	paths, err := filepath.Glob(filepath.Join(vectorDir, "*.vec"))
	if err != nil {
		tb.Fatal(err)
	}
	if len(paths) == 0 {
		tb.Fatalf("no test vectors in %s (run go test -run TestVectors -update ./session/)", vectorDir)
	}
	var out []*vector
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		v, err := parseVector(strings.TrimSuffix(filepath.Base(p), ".vec"), data)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

// writeVectors writes vs into dir and removes any other *.vec there.
func writeVectors(dir string, vs []*vector) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.vec"))
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, v := range vs {
		name := filepath.Join(dir, v.name+".vec")
		if keep[name] {
			return fmt.Errorf("vector %s generated twice", v.name)
		}
		keep[name] = true
		if err := os.WriteFile(name, v.encode(), 0o644); err != nil {
			return err
		}
	}
	for _, p := range old {
		if !keep[p] {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestVectors(t *testing.T) {
	if *update {
		if err := writeVectors(vectorDir, generateVectors(t)); err != nil {
			t.Fatal(err)
		}
	}
	vs := loadVectors(t)
	have := map[string]*vector{}
	for _, v := range vs {
		have[v.name] = v
		t.Run(v.name, func(t *testing.T) {
			err := checkVector(v)
			if got := outcomeOf(err); got != v.expect {
				if err != nil {
					got += " (" + err.Error() + ")"
				}
				t.Errorf("vector %s: got %v, want %s", v.name, got, v.expect)
			}
		})
	}
	for _, name := range requiredVectors {
		if have[name] == nil {
			t.Errorf("vector %s: missing from %s", name, vectorDir)
		}
	}
	for _, l := range vectorLinks {
		a, b := have[l[0]], have[l[2]]
		if a == nil || b == nil {
			continue // reported as missing above
		}
		va, oka := a.value(l[1])
		vb, okb := b.value(l[3])
		if !oka || !okb || !bytes.Equal(va, vb) {
			t.Errorf("vector %s: %q is not %s's %q", l[0], l[1], l[2], cmp.Or(l[3], "package"))
		}
	}
}

// value returns a hex key, or the package for the key "".
func (v *vector) value(key string) ([]byte, bool) {
	if key == "" {
		return v.pkg, true
	}
	b, ok := v.fields[key]
	return b, ok
}

// errMismatch: the package checks out but says something other than the vector's keys (a wrong
// payload, epoch, ...). errBadVector: a key the check needs is missing or unusable. Neither is
// one of the four outcomes, so a vector that hits them always fails.
var (
	errMismatch  = errors.New("vector mismatch")
	errBadVector = errors.New("bad vector")
)

// outcomeOf maps a check result to the vector's expect vocabulary.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return expectSuccess
	case errors.Is(err, errMismatch), errors.Is(err, errBadVector):
		return "invalid"
	case errors.Is(err, ErrMalformed):
		return expectParse
	case errors.Is(err, ErrAuth):
		return expectAuth
	case errors.Is(err, ErrHandshakeAborted):
		return expectHandshake
	}
	return "unexpected error"
}

// need returns a key the check cannot do without; n < 0 means any length.
func (v *vector) need(key string, n int) ([]byte, error) {
	b, ok := v.fields[key]
	if !ok {
		return nil, fmt.Errorf("%w: %q is required", errBadVector, key)
	}
	if n >= 0 && len(b) != n {
		return nil, fmt.Errorf("%w: %q is %d bytes, want %d", errBadVector, key, len(b), n)
	}
	return b, nil
}

// compare checks got against an optional key; a success vector must carry it.
func (v *vector) compare(key string, got []byte) error {
	want, ok := v.fields[key]
	if !ok {
		if v.expect == expectSuccess {
			return fmt.Errorf("%w: success vector without %q", errBadVector, key)
		}
		return nil
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%w: %s is %x, want %x", errMismatch, key, got, want)
	}
	return nil
}

func (v *vector) secret(key string) (Secret, error) {
	var s Secret
	b, err := v.need(key, len(s))
	copy(s[:], b)
	return s, err
}

// checkVector runs v's package through Parse, Marshal and the checks of its type, in the order a
// receiver does them, and returns the first failure.
func checkVector(v *vector) error {
	p, err := Parse(v.pkg)
	if err != nil {
		if p != nil {
			return fmt.Errorf("%w: Parse returned a package with its error %v", errMismatch, err)
		}
		return err
	}
	if m := p.Marshal(); !bytes.Equal(m, v.pkg) {
		return fmt.Errorf("%w: Marshal(Parse(b)) != b", errMismatch)
	}
	if p.Type.String() != v.typ {
		return fmt.Errorf("%w: package is a %s, vector says %s", errMismatch, p.Type, v.typ)
	}
	switch p.Type {
	case TypeCommand, TypeResponse:
		return checkInnerVector(v, p)
	case TypeError:
		return checkErrorVector(v, p)
	case TypeInitReq:
		return checkInitReqVector(v, p)
	case TypeInitResp:
		return checkInitRespVector(v, p)
	case TypePair:
		return checkPairVector(v, p)
	}
	return fmt.Errorf("%w: no check for %s", errBadVector, p.Type)
}

// checkInnerVector: COMMAND (secret = epoch secret) or RESPONSE (secret = response secret).
func checkInnerVector(v *vector, p *Package) error {
	s, err := v.secret("secret")
	if err != nil {
		return err
	}
	plain, err := open(p, v.pkg, &s)
	if err != nil {
		return err
	}
	share, payload, err := decodeInner(plain)
	if err != nil {
		return err
	}
	if p.Type == TypeCommand && p.Epoch != epochID(&s) {
		return fmt.Errorf("%w: epoch %s is not the id of the secret (%s)", errMismatch, p.Epoch, epochID(&s))
	}
	if err := v.compare("payload", payload); err != nil {
		return err
	}
	if err := v.compare("share", share[:]); err != nil {
		return err
	}
	return checkRotationVector(v, p, &s, share)
}

// rotationKeys are the keys of a RESPONSE vector that checks the child epoch (section 7).
var rotationKeys = []string{"epoch secret", "command", "command share key", "child secret", "child id"}

// checkRotationVector: a RESPONSE that answers a transmission under the initiator's current epoch,
// checked as the initiator does (section 7, "Child epoch"). From the parent epoch secret S_e, the
// COMMAND as sent and the private key a of its share: the COMMAND opens under S_e and carries
// A = a·G; RS = HKDF(S_e, H_c, "sealpost/v1/response") is the vector's secret (which opened the
// RESPONSE); and then either the RESPONSE's share B is the null share, which yields no child (the
// vector carries no child keys), or
//
//	S_child = HKDF(X25519(a, B), RS, "sealpost/v1/child" ‖ H_c ‖ H_r), child id = HKDF-Expand(S_child, "sealpost/v1/epoch-id", 16)
//
// with H_c and H_r the SHA-256 of the two whole packages. An all-zero X25519(a, B) is malformed.
// The derivations are written out from the key schedule table with crypto/hkdf, not through
// kdf.go's helpers, which made the expected values in the generator (through the Engine).
func checkRotationVector(v *vector, p *Package, rs *Secret, share [32]byte) error {
	if !slices.ContainsFunc(rotationKeys, func(k string) bool { _, ok := v.fields[k]; return ok }) {
		return nil
	}
	if p.Type != TypeResponse {
		return fmt.Errorf("%w: child epoch keys on a %s", errBadVector, p.Type)
	}
	parent, err := v.secret("epoch secret")
	if err != nil {
		return err
	}
	cmd, err := v.need("command", -1)
	if err != nil {
		return err
	}
	a, err := v.need("command share key", 32)
	if err != nil {
		return err
	}
	priv, err := ecdh.X25519().NewPrivateKey(a)
	if err != nil {
		return fmt.Errorf("%w: command share key: %v", errBadVector, err)
	}

	// The COMMAND this RESPONSE answers, and its share.
	cp, err := Parse(cmd)
	if err != nil || cp.Type != TypeCommand {
		return fmt.Errorf("%w: command is not a COMMAND package (%v)", errBadVector, err)
	}
	if cp.Epoch != specEpochID(parent[:]) {
		return fmt.Errorf("%w: command's epoch %s is not the id of the epoch secret", errMismatch, cp.Epoch)
	}
	cplain, err := open(cp, cmd, &parent)
	if err != nil {
		return fmt.Errorf("%w: command does not open under the epoch secret (%v)", errBadVector, err)
	}
	cshare, _, err := decodeInner(cplain)
	if err != nil {
		return fmt.Errorf("%w: command body (%v)", errBadVector, err)
	}
	if !bytes.Equal(cshare[:], priv.PublicKey().Bytes()) {
		return fmt.Errorf("%w: command share %x is not X25519(command share key, 9)", errMismatch, cshare)
	}
	if p.Session != cp.Session || p.Epoch != cp.Epoch || p.Seq != cp.Seq || p.Command != cp.Command ||
		p.Sender != cp.Recipient || p.Recipient != cp.Sender {
		return fmt.Errorf("%w: the RESPONSE header does not answer the command's", errMismatch)
	}

	hc := sha256.Sum256(cmd)
	if want := specHKDF(parent[:], hc[:], "sealpost/v1/response"); !bytes.Equal(want, rs[:]) {
		return fmt.Errorf("%w: secret is not HKDF(epoch secret, SHA-256(command), \"sealpost/v1/response\") = %x", errMismatch, want)
	}
	if share == ([32]byte{}) {
		// The null share: no child.
		for _, k := range []string{"child secret", "child id"} {
			if _, ok := v.fields[k]; ok {
				return fmt.Errorf("%w: a null share yields no child, but the vector has %q", errMismatch, k)
			}
		}
		return nil
	}
	pub, err := ecdh.X25519().NewPublicKey(share[:])
	if err != nil {
		return parseErr("share", "response share: %v", err)
	}
	dh, err := priv.ECDH(pub) // crypto/ecdh refuses an all-zero output
	if err != nil {
		return parseErr("share", "response share: %v", err)
	}
	hr := sha256.Sum256(v.pkg)
	child := specHKDF(dh, rs[:], "sealpost/v1/child"+string(hc[:])+string(hr[:]))
	if err := v.compare("child secret", child); err != nil {
		return err
	}
	id := specEpochID(child)
	return v.compare("child id", id[:])
}

// specHKDF is HKDF(ikm, salt, info) of the primitives table: HKDF-SHA-256, 32 bytes.
func specHKDF(ikm, salt []byte, info string) []byte {
	k, err := hkdf.Key(sha256.New, ikm, salt, info, 32)
	if err != nil {
		panic(err)
	}
	return k
}

// specEpochID is HKDF-Expand(S, "sealpost/v1/epoch-id", 16): S is the PRK, no extract step.
func specEpochID(s []byte) EpochID {
	k, err := hkdf.Expand(sha256.New, s, "sealpost/v1/epoch-id", 16)
	if err != nil {
		panic(err)
	}
	return EpochID(k)
}

// checkErrorVector: ERROR, sealed under the response secret.
func checkErrorVector(v *vector, p *Package) error {
	s, err := v.secret("secret")
	if err != nil {
		return err
	}
	plain, err := open(p, v.pkg, &s)
	if err != nil {
		return err
	}
	re, err := decodeError(plain)
	if err != nil {
		return err
	}
	if err := v.compare("error code", []byte{byte(re.Code)}); err != nil {
		return err
	}
	return v.compare("error detail", []byte(re.Detail))
}

func checkSigner(v *vector, p *Package) (ed25519.PublicKey, error) {
	signer, err := v.need("signer", ed25519.PublicKeySize)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(signer, v.pkg[:len(v.pkg)-SigSize], p.Sig) {
		return nil, fmt.Errorf("%w: %s signature", ErrAuth, p.Type)
	}
	if FingerprintOf(signer) != p.Sender {
		return nil, fmt.Errorf("%w: sender %s is not the signer's fingerprint", errMismatch, p.Sender)
	}
	return signer, nil
}

// checkInitReqVector: the signature, then the RSA modulus and the ML-KEM key, as receiveInitReq.
func checkInitReqVector(v *vector, p *Package) error {
	if _, err := checkSigner(v, p); err != nil {
		return err
	}
	n := new(big.Int).SetBytes(p.Body[:rsaBytes])
	if n.BitLen() != rsaBits || n.Bit(0) == 0 {
		return parseErr("rsa", "INIT_REQ RSA modulus is not a 3072-bit odd number")
	}
	if _, err := mlkem.NewEncapsulationKey768(p.Body[rsaBytes:]); err != nil {
		return parseErr("mlkem", "INIT_REQ ML-KEM key: %v", err)
	}
	return nil
}

// checkInitRespVector: the signature, then RSA-OAEP under the label bound to the INIT_REQ hash,
// ML-KEM decapsulation, the transcript and the key confirmation, as receiveInitResp.
func checkInitRespVector(v *vector, p *Package) error {
	if _, err := checkSigner(v, p); err != nil {
		return err
	}
	der, err := v.need("rsa key", -1)
	if err != nil {
		return err
	}
	rsaKey, err := x509.ParsePKCS1PrivateKey(der)
	if err != nil {
		return fmt.Errorf("%w: rsa key: %v", errBadVector, err)
	}
	seed, err := v.need("mlkem seed", mlkem.SeedSize)
	if err != nil {
		return err
	}
	dk, err := mlkem.NewDecapsulationKey768(seed)
	if err != nil {
		return fmt.Errorf("%w: mlkem seed: %v", errBadVector, err)
	}
	reqHash, err := v.need("init req hash", sha256.Size)
	if err != nil {
		return err
	}
	rsaCT := p.Body[:rsaBytes]
	kemCT := p.Body[rsaBytes : rsaBytes+mlkemCTBytes]
	confirm := p.Body[rsaBytes+mlkemCTBytes:]
	kRSA, err := rsa.DecryptOAEP(sha256.New(), nil, rsaKey, rsaCT, oaepLabel(reqHash))
	if err != nil || len(kRSA) != rsaKeyLen {
		return fmt.Errorf("%w: RSA-OAEP does not open under the key and label (%v)", ErrHandshakeAborted, err)
	}
	kKEM, err := dk.Decapsulate(kemCT)
	if err != nil {
		return fmt.Errorf("%w: ML-KEM: %v", ErrHandshakeAborted, err)
	}
	th := transcriptHash(reqHash, v.pkg[:HeaderSize+rsaBytes+mlkemCTBytes])
	s0, kc := handshakeSecrets(kRSA, kKEM, th[:])
	if !hmac.Equal(confirm, hmacSHA256(kc[:], th[:])) {
		return fmt.Errorf("%w: key confirmation mismatch", ErrHandshakeAborted)
	}
	if err := v.compare("epoch0 secret", s0[:]); err != nil {
		return err
	}
	id := epochID(&s0)
	return v.compare("epoch0 id", id[:])
}

// checkPairVector: the body, the fingerprint of the carried key, the self-signature, then the
// code MAC (code modes, key from code and both addresses) or the pinned fingerprint.
func checkPairVector(v *vector, p *Package) error {
	pb, err := decodePairBody(p.Body)
	if err != nil {
		return err
	}
	if FingerprintOf(pb.pub) != p.Sender {
		return parseErr("pair", "PAIR sender fingerprint is not that of its key")
	}
	signed := v.pkg[:len(v.pkg)-SigSize]
	if !ed25519.Verify(pb.pub, signed, p.Sig) {
		return fmt.Errorf("%w: PAIR signature", ErrAuth)
	}
	if a, ok := v.fields["address a"]; ok && string(a) != pb.address {
		return fmt.Errorf("%w: PAIR address %q, want %q", errMismatch, pb.address, a)
	}
	switch pb.mode {
	case pairCodeInitial, pairCodeReply:
		code, err := v.need("code", -1)
		if err != nil {
			return err
		}
		a, err := v.need("address a", -1)
		if err != nil {
			return err
		}
		b, err := v.need("address b", -1)
		if err != nil {
			return err
		}
		key := pairingKey(NormalizeCode(string(code)), string(a), string(b))
		if !hmac.Equal(pb.mac, pairMAC(&key, signed[:len(signed)-sha256.Size])) {
			return fmt.Errorf("%w: PAIR MAC", ErrAuth)
		}
	default:
		want, err := v.need("fingerprint", len(Fingerprint{}))
		if err != nil {
			return err
		}
		if fp := FingerprintOf(pb.pub); !bytes.Equal(fp[:], want) {
			return fmt.Errorf("%w: PAIR key has fingerprint %s, pinned %x", ErrAuth, fp, want)
		}
	}
	return nil
}

// ---- generator ----

// The fixed world of the vectors. Times are fixed Unix milliseconds; every random byte comes from
// a seeded ChaCha8 (nonces, shares, ids) or from cryptotest.SetGlobalRandom (RSA and ML-KEM).
const (
	vecNowMS      = 1795348800000 // 2026-11-22T12:00:00Z
	vecGlobalSeed = 0x5ea1_9057
	vecCode       = "7KQ2-M9XD-4TRB-W8NC-J6HE-P3YF"
	vecWrongCode  = "7KQ2-M9XD-4TRB-W8NC-J6HE-P3YG"
)

var vecNow = time.UnixMilli(vecNowMS).UTC()

// vecBytes derives fixed bytes from a label.
func vecBytes(label string) [32]byte { return sha256.Sum256([]byte("sealpost/test-vectors/" + label)) }

func vecIdentity(name string) *Identity {
	seed := vecBytes("identity/" + name)
	id, err := IdentityFromKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		panic(err)
	}
	return id
}

func vecRand(seed uint64) *mrand.ChaCha8 {
	s := vecBytes("rand")
	binary.LittleEndian.PutUint64(s[:], seed)
	return mrand.NewChaCha8(s)
}

// vecPeer is one node of the vector world: a fixed identity, an engine on the fixed clock with a
// seeded random source, and a store.
type vecPeer struct {
	id   *Identity
	fp   Fingerprint
	addr string
	eng  *Engine
	st   *mapStore
}

func newVecPeer(tb testing.TB, name string, seed uint64, now time.Time) *vecPeer {
	tb.Helper()
	n := &vecPeer{id: vecIdentity(name), addr: name + "@vectors.example", st: newMapStore()}
	n.fp = n.id.Fingerprint()
	eng, err := NewEngine(Config{Identity: n.id, Address: n.addr, Rand: vecRand(seed), Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	n.eng = eng
	return n
}

func (n *vecPeer) pin(tb testing.TB, st *mapStore, other *vecPeer) {
	tb.Helper()
	if err := st.PinPeer(PinnedPeer{Name: "peer", Address: other.addr, PublicKey: other.id.Public()}); err != nil {
		tb.Fatal(err)
	}
}

func (n *vecPeer) resign(pkg []byte) []byte {
	out := bytes.Clone(pkg)
	copy(out[len(out)-SigSize:], n.id.sign(out[:len(out)-SigSize]))
	return out
}

// result carries a (value, error) pair to a test: must(f()).of(t).
type result[T any] struct {
	v   T
	err error
}

func must[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) of(tb testing.TB) T {
	tb.Helper()
	if r.err != nil {
		tb.Fatal(r.err)
	}
	return r.v
}

func mustKind(tb testing.TB, what string, out Outcome, err error, want Kind) Outcome {
	tb.Helper()
	if err != nil || out.Kind != want {
		tb.Fatalf("generator: %s = %v, %v; want %v", what, out.Kind, err, want)
	}
	return out
}

func flipped(pkg []byte, off int, mask byte) []byte {
	out := bytes.Clone(pkg)
	out[off] ^= mask
	return out
}

func cmdIDOf(label string) CommandID {
	b := vecBytes("command/" + label)
	var c CommandID
	copy(c[:], b[:])
	return c
}

// generateVectors builds every vector from the real engine. It resets the global random source,
// so two calls in one test give identical results.
func generateVectors(t *testing.T) []*vector {
	cryptotest.SetGlobalRandom(t, vecGlobalSeed)
	var vs []*vector
	add := func(v *vector) *vector { vs = append(vs, v); return v }
	alice := newVecPeer(t, "alice", 1, vecNow)
	bob := newVecPeer(t, "bob", 2, vecNow)
	craft := vecRand(3) // nonces of the hand-made packages

	// Pairing by code, both directions, then by fingerprint. This also pins the peers.
	pairA := must(alice.eng.ArmPairing(alice.st, PairRequest{Name: "bob", Address: bob.addr, Code: vecCode})).of(t)
	must(bob.eng.ArmPairing(bob.st, PairRequest{Name: "alice", Address: alice.addr, Code: vecCode})).of(t)
	out, err := bob.eng.Receive(bob.st, pairA)
	pairB := mustKind(t, "bob receives alice's PAIR", out, err, Paired).Reply
	out, err = alice.eng.Receive(alice.st, pairB)
	mustKind(t, "alice receives bob's PAIR reply", out, err, Paired)
	pairFP := must(alice.eng.ArmPairing(alice.st, PairRequest{Name: "bob", Address: bob.addr, Fingerprint: bob.fp})).of(t)

	add(newVector("pair_code_ok", expectSuccess, TypePair, pairA)).
		set("code", []byte(vecCode)).set("address a", []byte(alice.addr)).set("address b", []byte(bob.addr)).
		note("alice's initial PAIR (mode 1); the MAC key is Argon2id of NormalizeCode(code), salted by both addresses")
	add(newVector("pair_code_reply_ok", expectSuccess, TypePair, pairB)).
		set("code", []byte(vecCode)).set("address a", []byte(bob.addr)).set("address b", []byte(alice.addr)).
		note("bob's reply PAIR (mode 2) to pair_code_ok")
	add(newVector("pair_code_wrong", expectAuth, TypePair, pairA)).
		set("code", []byte(vecWrongCode)).set("address a", []byte(alice.addr)).set("address b", []byte(bob.addr)).
		note("pair_code_ok checked with a different code: the MAC does not verify")
	add(newVector("pair_fingerprint_ok", expectSuccess, TypePair, pairFP)).
		set("address a", []byte(alice.addr)).set("fingerprint", alice.fp[:]).
		note("alice's PAIR by fingerprint (mode 3): zero MAC; the receiver pins the key whose fingerprint it was given")
	add(newVector("pair_fingerprint_wrong", expectAuth, TypePair, pairFP)).
		set("address a", []byte(alice.addr)).set("fingerprint", bob.fp[:]).
		note("pair_fingerprint_ok checked against another fingerprint")
	badMAC := bytes.Clone(pairFP)
	badMAC[len(badMAC)-SigSize-1] = 0x01
	add(newVector("pair_fingerprint_nonzero_mac", expectParse, TypePair, alice.resign(badMAC))).
		set("address a", []byte(alice.addr)).set("fingerprint", alice.fp[:]).
		note("fingerprint-mode PAIR whose MAC field is not zero, re-signed by alice")

	// Handshake alice -> bob.
	req, sid, err := alice.eng.StartSession(alice.st, bob.fp)
	if err != nil {
		t.Fatal(err)
	}
	ini, ok, err := alice.st.Session(sid)
	if err != nil || !ok {
		t.Fatalf("generator: initiator session missing: %v", err)
	}
	out, err = bob.eng.Receive(bob.st, req)
	resp := mustKind(t, "bob receives INIT_REQ", out, err, HandshakeAccepted).Reply
	out, err = alice.eng.Receive(alice.st, resp)
	mustKind(t, "alice receives INIT_RESP", out, err, SessionConfirmed)
	confirmed, _, _ := alice.st.Session(sid)
	s0 := confirmed.Current

	add(newVector("init_req_ok", expectSuccess, TypeInitReq, req)).set("signer", alice.id.Public()).
		note("alice's INIT_REQ: RSA-3072 modulus, ML-KEM-768 encapsulation key, Ed25519 signature")
	add(newVector("init_req_bad_signature", expectAuth, TypeInitReq, flipped(req, len(req)-1, 0x01))).
		set("signer", alice.id.Public()).note("init_req_ok with the last signature byte flipped")
	even := bytes.Clone(req)
	even[HeaderSize+rsaBytes-1] &^= 1
	add(newVector("init_req_even_modulus", expectParse, TypeInitReq, alice.resign(even))).
		set("signer", alice.id.Public()).note("init_req_ok with an even RSA modulus, re-signed by alice")
	badEK := bytes.Clone(req)
	badEK[HeaderSize+rsaBytes] = 0xff
	badEK[HeaderSize+rsaBytes+1] |= 0x0f
	add(newVector("init_req_bad_mlkem_key", expectParse, TypeInitReq, alice.resign(badEK))).
		set("signer", alice.id.Public()).note("init_req_ok whose first ML-KEM coefficient is 4095 (not below q), re-signed by alice")

	initResp := func(name, expect string, pkg []byte, comment string) *vector {
		return add(newVector(name, expect, TypeInitResp, pkg)).set("signer", bob.id.Public()).
			set("rsa key", ini.RSAKey).set("mlkem seed", ini.MLKEMSeed).set("init req hash", ini.InitReqHash[:]).note(comment)
	}
	initResp("init_resp_ok", expectSuccess, resp, "bob's INIT_RESP to init_req_ok; rsa key and mlkem seed are alice's ephemeral keys").
		set("epoch0 secret", s0.Secret[:]).set("epoch0 id", s0.ID[:])
	initResp("init_resp_bad_signature", expectAuth, flipped(resp, len(resp)-SigSize, 0x80), "init_resp_ok with the first signature byte flipped")

	rsaKey := must(x509.ParsePKCS1PrivateKey(ini.RSAKey)).of(t)
	dk := must(mlkem.NewDecapsulationKey768(ini.MLKEMSeed)).of(t)
	body := resp[HeaderSize : HeaderSize+initRespBodyLen]
	kRSA := must(rsa.DecryptOAEP(sha256.New(), nil, rsaKey, body[:rsaBytes], oaepLabel(ini.InitReqHash[:]))).of(t)
	kKEM := must(dk.Decapsulate(body[rsaBytes : rsaBytes+mlkemCTBytes])).of(t)
	otherReq := sha256.Sum256(flipped(req, len(req)-1, 0x01))
	ct := must(rsa.EncryptOAEP(sha256.New(), craft, &rsaKey.PublicKey, kRSA, oaepLabel(otherReq[:]))).of(t)
	badLabel := bytes.Clone(resp)
	copy(badLabel[HeaderSize:], ct)
	th := transcriptHash(ini.InitReqHash[:], badLabel[:HeaderSize+rsaBytes+mlkemCTBytes])
	_, kc := handshakeSecrets(kRSA, kKEM, th[:])
	copy(badLabel[HeaderSize+rsaBytes+mlkemCTBytes:], hmacSHA256(kc[:], th[:]))
	initResp("init_resp_bad_label", expectHandshake, bob.resign(badLabel),
		"the same RSA key wrapped under the OAEP label of another INIT_REQ hash; confirmation recomputed and re-signed by bob")
	initResp("init_resp_bad_confirm", expectHandshake, bob.resign(flipped(resp, len(resp)-SigSize-1, 0x01)),
		"init_resp_ok with the last key-confirmation byte flipped, re-signed by bob")

	// Commands under a fixed epoch secret, on a fixed session that both stores hold Confirmed.
	epoch := Secret(vecBytes("epoch"))
	var sess SessionID
	sessBytes := vecBytes("session")
	copy(sess[:], sessBytes[:])
	ep := Epoch{ID: epochID(&epoch), Secret: epoch}
	cst, rst := newMapStore(), newMapStore()
	alice.pin(t, cst, bob)
	bob.pin(t, rst, alice)
	if err := cst.PutSession(&State{ID: sess, Peer: bob.fp, Role: Initiator, Status: Confirmed, Created: vecNowMS, NextSeq: 1, Current: ep}); err != nil {
		t.Fatal(err)
	}
	if err := rst.PutSession(&State{ID: sess, Peer: alice.fp, Role: Responder, Status: Confirmed, Created: vecNowMS, Current: ep}); err != nil {
		t.Fatal(err)
	}

	notAfter := vecNow.Add(time.Hour)
	cmdPayload, denyPayload := []byte("uptime"), []byte("reboot")
	cmd := must(alice.eng.Send(cst, bob.fp, cmdIDOf("ok"), cmdPayload, notAfter)).of(t)
	deny := must(alice.eng.Send(cst, bob.fp, cmdIDOf("denied"), denyPayload, notAfter)).of(t)
	pd, _, _ := cst.Pending(cmdIDOf("ok"))
	sharePriv := must(ecdh.X25519().NewPrivateKey(pd.Sends[0].SharePriv[:])).of(t)
	cmdShare := sharePriv.PublicKey().Bytes()

	out, err = bob.eng.Receive(rst, cmd)
	ticket := mustKind(t, "bob receives the command", out, err, Execute).Ticket
	respPayload := []byte("up 3 days, load average 0.01")
	answer := must(bob.eng.Complete(rst, ticket, respPayload)).of(t)
	out, err = bob.eng.Receive(rst, deny)
	ticket = mustKind(t, "bob receives the second command", out, err, Execute).Ticket
	detail := "reboot is not allowed for this peer"
	errPkg := must(bob.eng.Fail(rst, ticket, CodeDenied, detail)).of(t)
	out, err = alice.eng.Receive(cst, answer)
	mustKind(t, "alice receives the response", out, err, Delivered)
	out, err = alice.eng.Receive(cst, errPkg)
	mustKind(t, "alice receives the error", out, err, Failed)

	hc := hashPackage(cmd)
	respSecret := responseSecret(&epoch, hc[:])
	hd := hashPackage(deny)
	errSecret := responseSecret(&epoch, hd[:])
	respShare := func() []byte {
		p := must(Parse(answer)).of(t)
		plain := must(open(p, answer, &respSecret)).of(t)
		share, _, err := decodeInner(plain)
		if err != nil {
			t.Fatal(err)
		}
		return share[:]
	}()

	command := func(name, expect string, pkg []byte, comment string) *vector {
		return add(newVector(name, expect, TypeCommand, pkg)).set("secret", epoch[:]).note(comment)
	}
	command("command_ok", expectSuccess, cmd, "alice's COMMAND, sealed under the epoch secret; share is its X25519 public share").
		set("payload", cmdPayload).set("share", cmdShare)
	command("command_bad_tag", expectAuth, flipped(cmd, len(cmd)-1, 0x01), "command_ok with the last tag byte flipped")
	seqUp := bytes.Clone(cmd)
	binary.BigEndian.PutUint64(seqUp[72:80], binary.BigEndian.Uint64(seqUp[72:80])+1)
	command("command_bad_header_ad", expectAuth, seqUp, "command_ok with the sequence number increased by one: the header is the associated data")
	command("command_truncated", expectParse, cmd[:len(cmd)-tagSize], "command_ok without its 16-byte tag")
	command("command_trailing_byte", expectParse, append(bytes.Clone(cmd), 0), "command_ok with one zero byte appended")
	unknownFlag := bytes.Clone(cmd)
	unknownFlag[7] = 0x01
	command("command_unknown_flag", expectParse, unknownFlag, "command_ok with flag bit 0 set")
	v2 := bytes.Clone(cmd)
	v2[4] = 2
	command("command_unknown_version", expectParse, v2, "command_ok relabelled as version 2")

	cmdHeader := must(Parse(cmd)).of(t).Header
	buf, plain := encodeInner(cmdShare, cmdPayload)
	plain[len(plain)-1] = 0x01
	command("command_nonzero_padding", expectParse, must(sealInto(buf, &cmdHeader, &epoch, craft)).of(t),
		"command_ok's plaintext with its last padding byte set to 1, sealed properly")
	buf = make([]byte, HeaderSize+2*minBucket+tagSize)
	plain = buf[HeaderSize : HeaderSize+2*minBucket]
	copy(plain, cmdShare)
	binary.BigEndian.PutUint32(plain[shareSize:], uint32(len(cmdPayload)))
	copy(plain[innerHeaderSize:], cmdPayload)
	command("command_wrong_bucket", expectParse, must(sealInto(buf, &cmdHeader, &epoch, craft)).of(t),
		"command_ok's 6-byte payload padded to 512 bytes instead of 256, sealed properly")
	relabelled := bytes.Clone(cmd)
	relabelled[5] = byte(TypeResponse)
	add(newVector("command_relabelled_response", expectAuth, TypeResponse, relabelled)).set("secret", epoch[:]).
		note("command_ok with its type byte changed to RESPONSE: the type is in the associated data and the message key")

	add(newVector("response_ok", expectSuccess, TypeResponse, answer)).set("secret", respSecret[:]).
		set("payload", respPayload).set("share", respShare).
		note("bob's RESPONSE to command_ok; secret is the response secret, HKDF(epoch secret, SHA-256(command_ok))")
	add(newVector("response_bad_tag", expectAuth, TypeResponse, flipped(answer, HeaderSize+40, 0x04))).set("secret", respSecret[:]).
		note("response_ok with a ciphertext byte flipped")
	add(newVector("error_ok", expectSuccess, TypeError, errPkg)).set("secret", errSecret[:]).
		set("error code", []byte{byte(CodeDenied)}).set("error detail", []byte(detail)).
		note("bob's ERROR (denied) to alice's second command; secret is its response secret")
	errHeader := must(Parse(errPkg)).of(t).Header
	buf, plain = encodeError(&RemoteError{Code: CodeDenied, Time: vecNow, Detail: detail})
	plain[0] = 99
	add(newVector("error_unknown_code", expectParse, TypeError, must(sealInto(buf, &errHeader, &errSecret, craft)).of(t))).
		set("secret", errSecret[:]).note("error_ok's body with error code 99, sealed properly")

	// Rotation (section 7). Everything below comes after the vectors above in every random
	// stream, so adding to it leaves them unchanged. Alice adopted the child of response_ok when
	// she received it (the ERROR after it changed nothing); bob added the same child when he
	// sealed it.
	after, _, _ := cst.Session(sess)
	child := after.Current
	if child.Gen != 1 || child.ID == ep.ID {
		t.Fatalf("generator: alice's epoch after response_ok is generation %d, %s", child.Gen, child.ID)
	}
	if held, _, _ := rst.Session(sess); len(held.Children) != 1 || held.Children[0] != child {
		t.Fatalf("generator: bob does not hold alice's child epoch as his only child")
	}
	add(newVector("response_child_ok", expectSuccess, TypeResponse, answer)).set("secret", respSecret[:]).
		set("payload", respPayload).set("share", respShare).
		set("epoch secret", epoch[:]).set("command", cmd).set("command share key", sharePriv.Bytes()).
		set("child secret", child.Secret[:]).set("child id", child.ID[:]).
		note("response_ok with what the initiator derives from it: command is command_ok, epoch secret the epoch it was sealed under,").
		note("command share key the X25519 private key a of its share; child secret is HKDF(X25519(a, share), secret, \"sealpost/v1/child\" || SHA-256(command) || SHA-256(package))")
	lowOrder := make([]byte, shareSize)
	lowOrder[0] = 1 // u = 1, a low-order point: X25519 with it is all zero
	answerHeader := must(Parse(answer)).of(t).Header
	buf, _ = encodeInner(lowOrder, respPayload)
	add(newVector("response_low_order_share", expectParse, TypeResponse, must(sealInto(buf, &answerHeader, &respSecret, craft)).of(t))).
		set("secret", respSecret[:]).set("payload", respPayload).set("share", lowOrder).
		set("epoch secret", epoch[:]).set("command", cmd).set("command share key", sharePriv.Bytes()).
		note("response_ok's payload with the share u = 1 (not the null share), sealed properly: X25519(a, share) is all zero,").
		note("so an initiator on the command's epoch rejects the RESPONSE as malformed")

	childPayload := []byte("df -h /")
	next := must(alice.eng.Send(cst, bob.fp, cmdIDOf("child"), childPayload, notAfter)).of(t)
	pd, _, _ = cst.Pending(cmdIDOf("child"))
	nextShare := must(ecdh.X25519().NewPrivateKey(pd.Sends[0].SharePriv[:])).of(t).PublicKey().Bytes()
	out, err = bob.eng.Receive(rst, next)
	mustKind(t, "bob receives the command under the child epoch", out, err, Execute)
	if held, _, _ := rst.Session(sess); held.Current != child || len(held.Children) != 0 {
		t.Fatalf("generator: the command under the child did not confirm it")
	}
	add(newVector("command_child_ok", expectSuccess, TypeCommand, next)).set("secret", child.Secret[:]).
		set("payload", childPayload).set("share", nextShare).
		note("alice's next COMMAND after response_child_ok, sealed under its child epoch: secret is that child secret and the").
		note("header's epoch its child id; bob, receiving it, confirms the child and deletes the parent")

	// The null share: a second session whose fixed epoch gets MaxChildren+1 commands before any
	// answer reaches alice. Bob answers all of them: the first MaxChildren answers each add a
	// child, the last carries the null share.
	nullEpoch := Secret(vecBytes("epoch/null-share"))
	var nullSess SessionID
	nullSessBytes := vecBytes("session/null-share")
	copy(nullSess[:], nullSessBytes[:])
	nst, nrst := newMapStore(), newMapStore()
	alice.pin(t, nst, bob)
	bob.pin(t, nrst, alice)
	nullEp := Epoch{ID: epochID(&nullEpoch), Secret: nullEpoch}
	if err := nst.PutSession(&State{ID: nullSess, Peer: bob.fp, Role: Initiator, Status: Confirmed, Created: vecNowMS, NextSeq: 1, Current: nullEp}); err != nil {
		t.Fatal(err)
	}
	if err := nrst.PutSession(&State{ID: nullSess, Peer: alice.fp, Role: Responder, Status: Confirmed, Created: vecNowMS, Current: nullEp}); err != nil {
		t.Fatal(err)
	}
	var lastCmd, lastAnswer []byte
	var lastKey *ecdh.PrivateKey
	lastPayload := []byte("pong")
	for i := range MaxChildren + 1 {
		id := cmdIDOf(fmt.Sprintf("null-share/%d", i))
		lastCmd = must(alice.eng.Send(nst, bob.fp, id, []byte("ping"), notAfter)).of(t)
		pd, _, _ := nst.Pending(id)
		lastKey = must(ecdh.X25519().NewPrivateKey(pd.Sends[0].SharePriv[:])).of(t)
		out, err := bob.eng.Receive(nrst, lastCmd)
		ticket := mustKind(t, "bob receives a command under the null-share epoch", out, err, Execute).Ticket
		lastAnswer = must(bob.eng.Complete(nrst, ticket, lastPayload)).of(t)
	}
	if held, _, _ := nrst.Session(nullSess); len(held.Children) != MaxChildren {
		t.Fatalf("generator: bob holds %d children, want %d", len(held.Children), MaxChildren)
	}
	out, err = alice.eng.Receive(nst, lastAnswer)
	if mustKind(t, "alice receives the null share", out, err, Delivered); !out.Rekey {
		t.Fatalf("generator: the null share did not ask for a new handshake")
	}
	if held, _, _ := nst.Session(nullSess); held.Current != nullEp {
		t.Fatalf("generator: the null share changed alice's epoch")
	}
	hl := hashPackage(lastCmd)
	nullRS := responseSecret(&nullEpoch, hl[:])
	add(newVector("response_null_share_ok", expectSuccess, TypeResponse, lastAnswer)).set("secret", nullRS[:]).
		set("payload", lastPayload).set("share", make([]byte, shareSize)).
		set("epoch secret", nullEpoch[:]).set("command", lastCmd).set("command share key", lastKey.Bytes()).
		note(fmt.Sprintf("bob's RESPONSE to the last of %d commands sent under one epoch before any answer reached alice: he holds", MaxChildren+1)).
		note(fmt.Sprintf("%d children of that epoch already, so the share is the null share (32 zero bytes) and creates no child;", MaxChildren)).
		note("the initiator delivers the payload, keeps its epoch and starts a new handshake")

	slices.SortFunc(vs, func(a, b *vector) int { return strings.Compare(a.name, b.name) })
	return vs
}

// TestVectorGeneratorDeterministic: running -update twice writes identical files.
func TestVectorGeneratorDeterministic(t *testing.T) {
	if testing.Short() {
		t.Skip("generates RSA-3072 keys twice")
	}
	start := time.Now()
	first := generateVectors(t)
	if d := time.Since(start); d > 10*time.Second {
		t.Skipf("one generation took %s; not running it twice", d.Round(time.Millisecond))
	}
	second := generateVectors(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	if err := writeVectors(dirA, first); err != nil {
		t.Fatal(err)
	}
	if err := writeVectors(dirB, second); err != nil {
		t.Fatal(err)
	}
	for _, v := range first {
		a, errA := os.ReadFile(filepath.Join(dirA, v.name+".vec"))
		b, errB := os.ReadFile(filepath.Join(dirB, v.name+".vec"))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("vector %s: two generator runs differ (%v, %v)", v.name, errA, errB)
		}
		// The checked-in file may differ if Go changes how its crypto draws randomness; that is
		// worth knowing, not a failure (the checked-in vectors are checked by TestVectors).
		if c, err := os.ReadFile(filepath.Join(vectorDir, v.name+".vec")); err != nil || !bytes.Equal(a, c) {
			t.Logf("vector %s: generator output differs from %s (run -update to refresh)", v.name, vectorDir)
		}
	}
	if len(first) != len(second) {
		t.Errorf("two generator runs made %d and %d vectors", len(first), len(second))
	}
}
