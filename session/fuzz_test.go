package session

// Fuzz targets for every parser of untrusted bytes, and for Engine.Receive as a whole. Each is
// seeded from testdata/*.vec (the packages, and the bodies inside them) plus a few hand-made
// inputs, and asserts: no panic; an error comes with a zero result; a success re-encodes to the
// very bytes it was given. Run one with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 60s ./session/

import (
	"bytes"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// vectorBody returns the body inside a vector's package, as a body decoder sees it: the plaintext
// when the vector's secret opens it, else the body bytes as they stand (for packages that do not
// parse, whatever follows the header).
func vectorBody(v *vector) []byte {
	p, err := Parse(v.pkg)
	if err != nil {
		if len(v.pkg) <= HeaderSize {
			return nil
		}
		return v.pkg[HeaderSize:]
	}
	if !p.Type.signed() {
		if s, err := v.secret("secret"); err == nil {
			if plain, err := open(p, v.pkg, &s); err == nil {
				return plain
			}
		}
	}
	return p.Body
}

// vectorBodies returns the body of every vector of the given types, to seed a body decoder. (Not
// whole packages: the decoders reject those by length at once, and large inputs only make the
// fuzzer's minimization of a new-coverage input, quadratic in its length, eat the run.)
func vectorBodies(f *testing.F, types ...Type) [][]byte {
	var out [][]byte
	for _, v := range loadVectors(f) {
		if slices.Contains(types, typeNames[v.typ]) {
			if b := vectorBody(v); b != nil {
				out = append(out, b)
			}
		}
	}
	if len(out) == 0 {
		f.Fatalf("no %v bodies among the test vectors", types)
	}
	return out
}

// A padded plaintext is fuzzed as (head, zeros): the bytes head followed by zeros zero bytes.
// Every byte string has this form (zeros = 0), but the padding, which is most of every valid
// plaintext, costs the fuzzer's minimizer nothing: minimizing a 4 KiB []byte that the decoder
// accepts takes the fuzzer longer than a 60-second run, and every accepted input is at least
// 256 bytes and cannot shrink.
//
// Heads longer than maxFuzzHead are skipped: the fuzzer's mutator grows them to several KiB, and
// minimizing one such head that finds new coverage takes minutes; every branch of the decoders
// is reachable with a shorter head (an ERROR's longest detail fits, and the content of a payload
// beyond its length field does not matter to decodeInner).
func padded(head []byte, zeros uint16) ([]byte, bool) {
	if len(head) > maxFuzzHead {
		return nil, false
	}
	return append(bytes.Clone(head), make([]byte, zeros)...), true
}

const maxFuzzHead = errHeaderSize + MaxErrorDetail + 64

func addPadded(f *testing.F, plain []byte) {
	head := bytes.TrimRight(plain, "\x00")
	if len(plain)-len(head) > 0xffff {
		head = plain[:len(plain)-0xffff]
	}
	f.Add(head, uint16(len(plain)-len(head)))
}

// addPackageSeeds seeds a target with every vector's package.
func addPackageSeeds(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(v.pkg)
	}
}

func requireMalformed(t *testing.T, what string, err error) {
	t.Helper()
	var pe *ParseError
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &pe) {
		t.Fatalf("%s: error %v is not a *ParseError wrapping ErrMalformed", what, err)
	}
}

func FuzzParse(f *testing.F) {
	addPackageSeeds(f)
	f.Add([]byte{})
	f.Add(magic[:])
	h := Header{Type: TypeCommand, Sender: Fingerprint{1}, Recipient: Fingerprint{2}, Session: SessionID{3}, Epoch: EpochID{4},
		Seq: 1, Command: CommandID{5}, Created: 1, NotAfter: 2, BodyLen: minSealedBody}
	f.Add(append(h.Marshal(), make([]byte, minSealedBody)...))
	h.BodyLen = ^uint32(0)
	f.Add(h.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			if p != nil {
				t.Fatalf("Parse(%x) = %+v, %v: a package with the error", b, p, err)
			}
			requireMalformed(t, "Parse", err)
			return
		}
		if m := p.Marshal(); !bytes.Equal(m, b) {
			t.Fatalf("Parse(%x) then Marshal = %x, want the input", b, m)
		}
		if !bytes.Equal(p.Header.Marshal(), b[:HeaderSize]) {
			t.Fatalf("Parse(%x): Header.Marshal differs from the header bytes", b)
		}
	})
}

func FuzzDecodeInner(f *testing.F) {
	for _, b := range vectorBodies(f, TypeCommand, TypeResponse, TypeError) {
		addPadded(f, b)
	}
	_, plain := encodeInner(make([]byte, shareSize), nil)
	addPadded(f, plain)
	_, plain = encodeInner(bytes.Repeat([]byte{9}, shareSize), bytes.Repeat([]byte{7}, minBucket))
	addPadded(f, plain)
	f.Add([]byte{}, uint16(2*minBucket))
	f.Fuzz(func(t *testing.T, head []byte, zeros uint16) {
		plain, ok := padded(head, zeros)
		if !ok {
			return
		}
		in := bytes.Clone(plain)
		share, payload, err := decodeInner(plain)
		if err != nil {
			if share != [32]byte{} || payload != nil {
				t.Fatalf("decodeInner(%x) = %x, %x, %v: a result with the error", in, share, payload, err)
			}
			requireMalformed(t, "decodeInner", err)
			return
		}
		if !bytes.Equal(plain, in) {
			t.Fatalf("decodeInner modified its input")
		}
		if _, re := encodeInner(share[:], payload); !bytes.Equal(re, in) {
			t.Fatalf("decodeInner(%x) = share %x, %d-byte payload; encodeInner gives %x", in, share, len(payload), re)
		}
	})
}

func FuzzDecodeError(f *testing.F) {
	for _, b := range vectorBodies(f, TypeCommand, TypeResponse, TypeError) {
		addPadded(f, b)
	}
	for c := CodeDenied; c <= CodeBadCommand; c++ {
		_, plain := encodeError(&RemoteError{Code: c, Time: vecNow, Detail: c.String()})
		addPadded(f, plain)
	}
	_, plain := encodeError(&RemoteError{Code: CodeClock, Time: time.UnixMilli(-1), Detail: strings.Repeat("x", MaxErrorDetail)})
	addPadded(f, plain)
	f.Fuzz(func(t *testing.T, head []byte, zeros uint16) {
		plain, ok := padded(head, zeros)
		if !ok {
			return
		}
		re, err := decodeError(plain)
		if err != nil {
			if re != nil {
				t.Fatalf("decodeError(%x) = %+v, %v: a result with the error", plain, re, err)
			}
			requireMalformed(t, "decodeError", err)
			return
		}
		if _, out := encodeError(&RemoteError{Code: re.Code, Time: re.Time, Detail: re.Detail}); !bytes.Equal(out, plain) {
			t.Fatalf("decodeError(%x) = %+v; encodeError gives %x", plain, re, out)
		}
		if re.Error() == "" {
			t.Fatal("RemoteError.Error is empty")
		}
	})
}

func FuzzDecodePairBody(f *testing.F) {
	for _, b := range vectorBodies(f, TypePair) {
		f.Add(b)
	}
	body := append([]byte{pairCodeInitial}, make([]byte, 32)...)
	body = append(append(body, 1, 'a'), make([]byte, 32)...)
	f.Add(body)
	f.Add(append([]byte{pairFPReply}, make([]byte, pairMaxBody-1)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		pb, err := decodePairBody(b)
		if err != nil {
			if pb != nil {
				t.Fatalf("decodePairBody(%x) = %+v, %v: a result with the error", b, pb, err)
			}
			requireMalformed(t, "decodePairBody", err)
			return
		}
		if len(pb.pub) != 32 || len(pb.mac) != 32 || len(pb.address) == 0 || len(pb.address) > 255 {
			t.Fatalf("decodePairBody(%x) = key %d bytes, address %d bytes, MAC %d bytes", b, len(pb.pub), len(pb.address), len(pb.mac))
		}
		re := append([]byte{pb.mode}, pb.pub...)
		re = append(append(re, byte(len(pb.address))), pb.address...)
		re = append(re, pb.mac...)
		if !bytes.Equal(re, b) {
			t.Fatalf("decodePairBody(%x) = %+v; re-assembled %x", b, pb, re)
		}
	})
}

// receiveReasons are the sentinels a Receive error wraps exactly one of.
var receiveReasons = []error{
	ErrMalformed, ErrNotForUs, ErrUnknownPeer, ErrUnknownSession, ErrUnknownEpoch, ErrAuth, ErrReplay,
	ErrExpired, ErrPairingCode, ErrHandshakeAborted, ErrClock,
}

// fuzzWorld is alice (initiator) and bob (responder) with the vectors' identities, on the vectors'
// clock, after a real handshake and a few commands; seeds are packages each of them has not seen
// yet or has seen once.
type fuzzWorld struct {
	alice, bob *vecPeer
	seeds      [][]byte
}

func newFuzzWorld(tb testing.TB) *fuzzWorld {
	tb.Helper()
	alice := newVecPeer(tb, "alice", 11, vecNow)
	bob := newVecPeer(tb, "bob", 12, vecNow)
	alice.pin(tb, alice.st, bob)
	bob.pin(tb, bob.st, alice)
	// An armed pairing, so that the pair_code vectors get through to the PAIR logic.
	must(bob.eng.ArmPairing(bob.st, PairRequest{Name: "alice", Address: alice.addr, Code: vecCode})).of(tb)

	req, sid, err := alice.eng.StartSession(alice.st, bob.fp)
	if err != nil {
		tb.Fatal(err)
	}
	out, err := bob.eng.Receive(bob.st, req)
	resp := mustKind(tb, "bob receives INIT_REQ", out, err, HandshakeAccepted).Reply
	out, err = alice.eng.Receive(alice.st, resp)
	mustKind(tb, "alice receives INIT_RESP", out, err, SessionConfirmed)

	notAfter := vecNow.Add(time.Hour)
	send := func(i byte, payload string) []byte {
		return must(alice.eng.Send(alice.st, bob.fp, CommandID{0xc0, i}, []byte(payload), notAfter)).of(tb)
	}
	execute := func(pkg []byte) *Ticket {
		out, err := bob.eng.Receive(bob.st, pkg)
		return mustKind(tb, "bob receives a command", out, err, Execute).Ticket
	}
	// 1: ran and delivered (it confirms the session on bob and rotates the epoch).
	cmd1 := send(1, "uptime")
	resp1 := must(bob.eng.Complete(bob.st, execute(cmd1), []byte("up"))).of(tb)
	out, err = alice.eng.Receive(alice.st, resp1)
	mustKind(tb, "alice receives response 1", out, err, Delivered)
	// 2: not received yet. 3: denied, error not received yet. 4: ran, response not received yet.
	cmd2 := send(2, "df -h")
	cmd3 := send(3, "reboot")
	err3 := must(bob.eng.Fail(bob.st, execute(cmd3), CodeDenied, "no")).of(tb)
	cmd4 := send(4, "date")
	resp4 := must(bob.eng.Complete(bob.st, execute(cmd4), []byte("today"))).of(tb)
	// 5: still executing on bob; its retry is a second transmission.
	cmd5 := send(5, "sleep 60")
	execute(cmd5)
	cmd5b := must(alice.eng.Retry(alice.st, CommandID{0xc0, 5})).of(tb)
	// A second handshake, answered by bob and not yet received by alice.
	req2, _, err := alice.eng.StartSession(alice.st, bob.fp)
	if err != nil {
		tb.Fatal(err)
	}
	out, err = bob.eng.Receive(bob.st, req2)
	resp2 := mustKind(tb, "bob receives INIT_REQ 2", out, err, HandshakeAccepted).Reply
	if s, ok, _ := alice.st.Session(sid); !ok || s.Status != Confirmed {
		tb.Fatal("fuzz world: alice's first session is not confirmed")
	}
	// An authentic INIT_RESP that does not complete (bob "signed" a wrong confirmation): alice aborts.
	aborted := bob.resign(flipped(resp2, len(resp2)-SigSize-1, 0x01))
	seeds := [][]byte{req, resp, cmd1, resp1, cmd2, cmd3, err3, cmd4, resp4, cmd5, cmd5b, req2, resp2, aborted}
	return &fuzzWorld{alice: alice, bob: bob, seeds: seeds}
}

// checkReceive feeds pkg to n on a copy-on-write view of its store and asserts Receive's
// contract: no panic; a rejection wraps exactly one reason, returns the zero Outcome, and changes
// nothing but what its reason documents (ErrPairingCode: the pairing's attempts;
// ErrHandshakeAborted: the aborted Initializing session is deleted).
func checkReceive(t *testing.T, name string, n *vecPeer, pkg []byte) {
	st := &cowStore{base: n.st}
	out, err := n.eng.Receive(st, pkg)
	if err == nil {
		if out.Kind == 0 {
			t.Fatalf("%s: Receive accepted %x with no outcome", name, pkg)
		}
		return
	}
	var reasons []error
	for _, r := range receiveReasons {
		if errors.Is(err, r) {
			reasons = append(reasons, r)
		}
	}
	if len(reasons) != 1 {
		t.Fatalf("%s: Receive error %v wraps %d reasons (%v), want exactly one", name, err, len(reasons), reasons)
	}
	if !reflect.DeepEqual(out, Outcome{}) {
		t.Fatalf("%s: Receive error %v came with outcome %+v", name, err, out)
	}
	if st.own == nil {
		return // not a single write
	}
	want := n.st
	if errors.Is(err, ErrHandshakeAborted) {
		p, perr := Parse(pkg)
		if perr != nil || p.Type != TypeInitResp {
			t.Fatalf("%s: ErrHandshakeAborted for a package that is not an INIT_RESP", name)
		}
		want = n.st.clone()
		delete(want.sessions, p.Session)
	}
	if !st.own.equal(want, errors.Is(err, ErrPairingCode)) {
		t.Fatalf("%s: Receive rejected %x with %v and changed the store\nbefore:\n%s\nafter:\n%s", name, pkg, err, want.dump(), st.own.dump())
	}
}

func FuzzReceive(f *testing.F) {
	addPackageSeeds(f)
	w := newFuzzWorld(f)
	for _, s := range w.seeds {
		f.Add(s)
	}
	// A valid command with its sequence number far ahead, and one with every byte of the body zero.
	far := bytes.Clone(w.seeds[4])
	binary.BigEndian.PutUint64(far[72:80], 1<<40)
	f.Add(far)
	zero := bytes.Clone(w.seeds[4])
	clear(zero[HeaderSize:])
	f.Add(zero)
	f.Fuzz(func(t *testing.T, pkg []byte) {
		checkReceive(t, "alice", w.alice, pkg)
		checkReceive(t, "bob", w.bob, pkg)
	})
}

// The id parsers: ParseFingerprint and ParseCommandID read what people type and what the node
// keeps as text (command ids in config keys), UnmarshalText reads the ids stored as JSON. They
// assert: no panic; an error comes with the zero id; a success is an id whose String (and
// MarshalText) parses back to it, and whose hex digits are the input's, case aside (and, for a
// fingerprint, its separators aside).

func idSeeds() []string {
	fp := vecIdentity("alice").Fingerprint()
	hexFP := hex.EncodeToString(fp[:])
	return []string{
		fp.String(), hexFP, strings.ToUpper(fp.String()), CommandID{0xc0, 5}.String(),
		strings.Repeat("0", 32), strings.Repeat("F", 32), "", "0", strings.Repeat("0", 31), strings.Repeat("0", 33),
		strings.Repeat("0", 31) + "g", "ff" + strings.Repeat("zz", 15),
		"00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff", "0011 2233 4455 6677 8899 aabb ccdd eeff",
		"--" + hexFP + "--", hexFP[:31] + "\xff", strings.Repeat("\u00e9", 16),
	}
}

// idText is a pointer to an id type: its text form (a value method) and its parser.
type idText[T any] interface {
	*T
	encoding.TextUnmarshaler
	MarshalText() ([]byte, error)
}

// requireTextRoundTrip checks that v's MarshalText is 32 lower-case hex digits that
// UnmarshalText turns back into v.
func requireTextRoundTrip[T comparable, P idText[T]](t *testing.T, v T) {
	t.Helper()
	text, err := P(&v).MarshalText()
	if err != nil || len(text) != 32 || !bytes.Equal(text, bytes.ToLower(text)) {
		t.Fatalf("%T %v: MarshalText = %q, %v, want 32 lower-case hex digits", v, v, text, err)
	}
	var back T
	if err := P(&back).UnmarshalText(text); err != nil || back != v {
		t.Fatalf("%T %v: UnmarshalText(MarshalText) = %v, %v", v, v, back, err)
	}
}

var fingerprintSeparators = strings.NewReplacer("-", "", ":", "", " ", "")

func FuzzParseFingerprint(f *testing.F) {
	for _, s := range idSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := ParseFingerprint(s)
		if err != nil {
			if !fp.IsZero() || !errors.Is(err, ErrBadFingerprint) {
				t.Fatalf("ParseFingerprint(%q) = %x, %v: want the zero fingerprint and ErrBadFingerprint", s, fp, err)
			}
			return
		}
		if digits := fingerprintSeparators.Replace(s); !strings.EqualFold(digits, hex.EncodeToString(fp[:])) {
			t.Fatalf("ParseFingerprint(%q) = %x: not the input's digits", s, fp)
		}
		str := fp.String()
		if len(str) != 39 || strings.Count(str, "-") != 7 {
			t.Fatalf("Fingerprint(%x).String() = %q, want eight groups of four digits", fp, str)
		}
		if back, err := ParseFingerprint(str); err != nil || back != fp {
			t.Fatalf("ParseFingerprint(%q) = %x, %v, want %x", str, back, err, fp)
		}
		requireTextRoundTrip(t, fp)
	})
}

func FuzzParseCommandID(f *testing.F) {
	for _, s := range idSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommandID(s)
		if err != nil {
			if !c.IsZero() {
				t.Fatalf("ParseCommandID(%q) = %x, %v: want the zero id with the error", s, c, err)
			}
			return
		}
		str := c.String()
		if !strings.EqualFold(s, str) {
			t.Fatalf("ParseCommandID(%q) = %x: not the input's digits", s, c)
		}
		if back, err := ParseCommandID(str); err != nil || back != c {
			t.Fatalf("ParseCommandID(%q) = %x, %v, want %x", str, back, err, c)
		}
		requireTextRoundTrip(t, c)
	})
}

// FuzzIDUnmarshalText: the four id types share one text form, so they accept the same inputs,
// exactly those ParseCommandID accepts, as the same 16 bytes. On an error the id is left zero if
// the input has the wrong length; a hex digit error can leave the bytes before it written (that is
// hex.Decode's way, and the only caller, encoding/json, drops the value with the error), so that
// case asserts only the error.
func FuzzIDUnmarshalText(f *testing.F) {
	for _, s := range idSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var (
			fp  Fingerprint
			sid SessionID
			eid EpochID
			cid CommandID
		)
		errs := []error{fp.UnmarshalText(b), sid.UnmarshalText(b), eid.UnmarshalText(b), cid.UnmarshalText(b)}
		parsed, perr := ParseCommandID(string(b))
		if errs[0] != nil || errs[1] != nil || errs[2] != nil || errs[3] != nil {
			for _, err := range errs {
				if err == nil {
					t.Fatalf("UnmarshalText(%q): the id types disagree: %v", b, errs)
				}
			}
			if perr == nil {
				t.Fatalf("UnmarshalText(%q) = %v, but ParseCommandID accepts it", b, errs[0])
			}
			if hex.DecodedLen(len(b)) != 16 && (!fp.IsZero() || sid != SessionID{} || eid != EpochID{} || !cid.IsZero()) {
				t.Fatalf("UnmarshalText(%q) of the wrong length changed the id", b)
			}
			return
		}
		if fp != Fingerprint(cid) || sid != SessionID(cid) || eid != EpochID(cid) {
			t.Fatalf("UnmarshalText(%q): the id types disagree: %x %x %x %x", b, fp, sid, eid, cid)
		}
		if perr != nil || parsed != cid {
			t.Fatalf("UnmarshalText(%q) = %x, but ParseCommandID = %x, %v", b, cid, parsed, perr)
		}
		if pfp, err := ParseFingerprint(string(b)); err != nil || pfp != fp {
			t.Fatalf("UnmarshalText(%q) = %x, but ParseFingerprint = %x, %v", b, fp, pfp, err)
		}
		if !strings.EqualFold(string(b), cid.String()) {
			t.Fatalf("UnmarshalText(%q) = %x: not the input's digits", b, cid)
		}
		requireTextRoundTrip(t, fp)
		requireTextRoundTrip(t, sid)
		requireTextRoundTrip(t, eid)
		requireTextRoundTrip(t, cid)
	})
}
