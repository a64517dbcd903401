package session

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
)

// Wire constants of envelope version 1 (docs/PROTOCOL.md, "Envelope").
const (
	Version    = 1
	SuiteV1    = 1 // Ed25519, RSA-3072-OAEP-SHA256 + ML-KEM-768, X25519, HKDF-SHA256, AES-256-GCM
	HeaderSize = 134
	SigSize    = ed25519.SignatureSize

	// MaxPayload caps the opaque payload a command or response carries (a compress frame of at
	// most 16 MiB plus its header, with room to spare).
	MaxPayload = 16<<20 + 64
)

// magic opens every package. It is ASCII so that a package is recognisable in a hex dump.
var magic = [4]byte{'S', 'L', 'P', 'K'}

// Type is the package type.
type Type uint8

// Package types. The numbering is part of the wire format.
const (
	TypePair     Type = 1
	TypeInitReq  Type = 2
	TypeInitResp Type = 3
	TypeCommand  Type = 4
	TypeResponse Type = 5
	TypeError    Type = 6
	TypeChunk    Type = 7
)

func (t Type) String() string {
	switch t {
	case TypePair:
		return "PAIR"
	case TypeInitReq:
		return "INIT_REQ"
	case TypeInitResp:
		return "INIT_RESP"
	case TypeCommand:
		return "COMMAND"
	case TypeResponse:
		return "RESPONSE"
	case TypeError:
		return "ERROR"
	case TypeChunk:
		return "CHUNK"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// signed reports whether the type carries an Ed25519 signature instead of an AEAD body.
func (t Type) signed() bool { return t == TypePair || t == TypeInitReq || t == TypeInitResp }

// Header is the fixed 134-byte header. For sealed types it is the AEAD's associated data, byte for
// byte; for signed types it is the start of the signed message.
type Header struct {
	Type      Type
	Sender    Fingerprint
	Recipient Fingerprint
	Session   SessionID
	Epoch     EpochID
	Seq       uint64
	Command   CommandID
	Created   int64 // Unix milliseconds
	NotAfter  int64 // Unix milliseconds
	Nonce     [16]byte
	BodyLen   uint32
	SigLen    uint16
}

// Package is one parsed envelope. Body is ciphertext for sealed types and the plain body for
// signed types.
type Package struct {
	Header
	Body []byte
	Sig  []byte
}

// appendHeader writes the canonical header encoding.
func (h *Header) appendTo(b []byte) []byte {
	b = append(b, magic[:]...)
	b = append(b, Version, byte(h.Type), SuiteV1, 0)
	b = append(b, h.Sender[:]...)
	b = append(b, h.Recipient[:]...)
	b = append(b, h.Session[:]...)
	b = append(b, h.Epoch[:]...)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = append(b, h.Command[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Created))
	b = binary.BigEndian.AppendUint64(b, uint64(h.NotAfter))
	b = append(b, h.Nonce[:]...)
	b = binary.BigEndian.AppendUint32(b, h.BodyLen)
	b = binary.BigEndian.AppendUint16(b, h.SigLen)
	return b
}

// Marshal returns the header bytes.
func (h *Header) Marshal() []byte { return h.appendTo(make([]byte, 0, HeaderSize)) }

// Marshal returns the package bytes. Marshal(Parse(b)) == b for every b that Parse accepts.
func (p *Package) Marshal() []byte {
	out := make([]byte, 0, HeaderSize+len(p.Body)+len(p.Sig))
	out = p.Header.appendTo(out)
	out = append(out, p.Body...)
	return append(out, p.Sig...)
}

// Body sizes fixed by the handshake and pairing formats.
const (
	rsaBytes        = 384  // RSA-3072 modulus and ciphertext
	mlkemEKBytes    = 1184 // ML-KEM-768 encapsulation key
	mlkemCTBytes    = 1088 // ML-KEM-768 ciphertext
	initReqBodyLen  = rsaBytes + mlkemEKBytes
	initRespBodyLen = rsaBytes + mlkemCTBytes + 32
	maxAddressLen   = 254
	pairMinBody     = 1 + 32 + 1 + 1 + 32
	pairMaxBody     = 1 + 32 + 1 + maxAddressLen + 32
	minSealedBody   = minBucket + tagSize
)

// maxSealedBody is the ciphertext size of the largest payload a command or response may carry.
var maxSealedBody = bucket(innerHeaderSize+MaxPayload) + tagSize

// Parse decodes one package, accepting only the canonical encoding of version 1: every reserved
// bit zero, every field that a type does not use zero, and lengths that add up exactly. It does
// no cryptography; Engine.Receive does that after deciding the sender is worth the work.
func Parse(b []byte) (*Package, error) {
	if len(b) < HeaderSize {
		return nil, parseErr("short", "package is %d bytes, shorter than the %d-byte header", len(b), HeaderSize)
	}
	if !bytes.Equal(b[0:4], magic[:]) {
		return nil, parseErr("magic", "not a sealpost package (bad magic)")
	}
	if b[4] != Version {
		return nil, parseErr("version", "unsupported version %d (this build speaks %d)", b[4], Version)
	}
	var h Header
	h.Type = Type(b[5])
	if h.Type < TypePair || h.Type > TypeChunk {
		return nil, parseErr("type", "unknown package type %d", b[5])
	}
	if b[6] != SuiteV1 {
		return nil, parseErr("suite", "unsupported suite %d", b[6])
	}
	if b[7] != 0 {
		return nil, parseErr("flags", "unknown flag bits %#02x", b[7])
	}
	copy(h.Sender[:], b[8:24])
	copy(h.Recipient[:], b[24:40])
	copy(h.Session[:], b[40:56])
	copy(h.Epoch[:], b[56:72])
	h.Seq = binary.BigEndian.Uint64(b[72:80])
	copy(h.Command[:], b[80:96])
	h.Created = int64(binary.BigEndian.Uint64(b[96:104]))
	h.NotAfter = int64(binary.BigEndian.Uint64(b[104:112]))
	copy(h.Nonce[:], b[112:128])
	h.BodyLen = binary.BigEndian.Uint32(b[128:132])
	h.SigLen = binary.BigEndian.Uint16(b[132:134])

	if err := h.check(); err != nil {
		return nil, err
	}
	if want := HeaderSize + int(h.BodyLen) + int(h.SigLen); len(b) != want {
		return nil, parseErr("length", "package is %d bytes, header declares %d", len(b), want)
	}
	p := &Package{Header: h}
	p.Body = bytes.Clone(b[HeaderSize : HeaderSize+int(h.BodyLen)])
	if h.SigLen > 0 {
		p.Sig = bytes.Clone(b[HeaderSize+int(h.BodyLen):])
	}
	return p, nil
}

// check enforces the per-type field rules of docs/PROTOCOL.md, "Field rules".
func (h *Header) check() error {
	zeroSession := h.Session == SessionID{}
	zeroEpoch := h.Epoch == EpochID{}
	zeroCmd := h.Command == CommandID{}
	if h.Sender.IsZero() {
		return parseErr("sender", "sender fingerprint is zero")
	}
	if h.Created < 0 || h.NotAfter < h.Created {
		return parseErr("time", "not-after %d precedes created-at %d", h.NotAfter, h.Created)
	}
	if h.Type.signed() {
		if h.SigLen != SigSize {
			return parseErr("siglen", "%s needs a %d-byte signature, header declares %d", h.Type, SigSize, h.SigLen)
		}
	} else if h.SigLen != 0 {
		return parseErr("siglen", "%s carries no signature, header declares %d bytes", h.Type, h.SigLen)
	}
	switch h.Type {
	case TypePair:
		if !h.Recipient.IsZero() || !zeroSession || !zeroEpoch || h.Seq != 0 || !zeroCmd {
			return parseErr("field", "PAIR must leave recipient, session, epoch, sequence and command zero")
		}
		if h.BodyLen < pairMinBody || h.BodyLen > pairMaxBody {
			return parseErr("bodylen", "PAIR body is %d bytes, want %d..%d", h.BodyLen, pairMinBody, pairMaxBody)
		}
	case TypeInitReq, TypeInitResp:
		if h.Recipient.IsZero() || zeroSession || !zeroEpoch || h.Seq != 0 || !zeroCmd {
			return parseErr("field", "%s needs recipient and session, and zero epoch, sequence and command", h.Type)
		}
		want := uint32(initReqBodyLen)
		if h.Type == TypeInitResp {
			want = initRespBodyLen
		}
		if h.BodyLen != want {
			return parseErr("bodylen", "%s body is %d bytes, want %d", h.Type, h.BodyLen, want)
		}
	case TypeChunk:
		// A chunk belongs to a command's stream, not to a session: it is sealed under the
		// stream's own secret (docs/PROTOCOL.md section 20), so session, epoch and sequence
		// are zero and the relay learns no more than the command id it already sees.
		if h.Recipient.IsZero() || !zeroSession || !zeroEpoch || h.Seq != 0 || zeroCmd {
			return parseErr("field", "CHUNK needs recipient and command, and zero session, epoch and sequence")
		}
		if h.BodyLen < minSealedBody || int64(h.BodyLen) > int64(maxChunkBody) || !isBucket(int(h.BodyLen)-tagSize) {
			return parseErr("bodylen", "CHUNK body of %d bytes is not a padded size", h.BodyLen)
		}
	default:
		if h.Recipient.IsZero() || zeroSession || zeroEpoch || h.Seq == 0 || zeroCmd {
			return parseErr("field", "%s needs recipient, session, epoch, sequence and command", h.Type)
		}
		if h.BodyLen < minSealedBody || int64(h.BodyLen) > int64(maxSealedBody) || !isBucket(int(h.BodyLen)-tagSize) {
			return parseErr("bodylen", "%s body of %d bytes is not a padded size", h.Type, h.BodyLen)
		}
	}
	return nil
}
