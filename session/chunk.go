package session

import (
	"encoding/binary"
	"fmt"
)

// Streams (docs/PROTOCOL.md section 20). A command whose answer or input is larger than one mail
// carries it as CHUNK packages beside its one COMMAND and one RESPONSE. A chunk is sealed under
// the command's stream secret, which the initiator chose and sent inside the sealed request, so
// it is independent of sessions and epochs: chunks change no epoch, need no transmission record
// and may arrive before or after the RESPONSE, in any order, any number of times. The RESPONSE
// still rotates the session as every response does, and it names how many chunks there are and
// the SHA-256 of what they carry, which the receiver checks.

// Chunk parts: which stream of the command a chunk's bytes belong to.
const (
	PartStdout uint8 = 1 // the program's stdout, or the file of a pull or push
	PartStderr uint8 = 2 // the program's stderr
)

const (
	// MaxChunkData caps the plain bytes one chunk carries (its compression frame's plain_len).
	MaxChunkData = 1 << 20
	// MaxChunkPayload caps a chunk's payload: a compression frame of up to MaxChunkData.
	MaxChunkPayload = MaxChunkData + 64
	// MaxChunkIndex is the largest chunk index: a stream has at most 2^24 chunks.
	MaxChunkIndex = 1<<24 - 1
	// MaxStreamOffset bounds where in its part a chunk's bytes go (1 PiB).
	MaxStreamOffset = 1 << 50

	chunkHeaderSize = 4 + 1 + 8 + 4 // index, part, offset, payload length
)

// maxChunkBody is the ciphertext size of the largest chunk.
var maxChunkBody = bucket(chunkHeaderSize+MaxChunkPayload) + tagSize

// Chunk is one piece of a command's stream.
type Chunk struct {
	// Index numbers the chunks of a stream from 0; the RESPONSE says how many there are.
	Index uint32
	// Part is PartStdout or PartStderr.
	Part uint8
	// Offset is where Payload's plain bytes go in their part.
	Offset uint64
	// Payload is a compression frame (docs/PROTOCOL.md section 10) of the chunk's bytes.
	Payload []byte
}

func (c *Chunk) check() error {
	if c.Index > MaxChunkIndex {
		return parseErr("chunk", "chunk index %d above %d", c.Index, MaxChunkIndex)
	}
	if c.Part != PartStdout && c.Part != PartStderr {
		return parseErr("chunk", "chunk part %d is neither 1 nor 2", c.Part)
	}
	if c.Offset > MaxStreamOffset {
		return parseErr("chunk", "chunk offset %d above %d", c.Offset, uint64(MaxStreamOffset))
	}
	if len(c.Payload) == 0 || len(c.Payload) > MaxChunkPayload {
		return parseErr("chunk", "chunk payload of %d bytes, want 1..%d", len(c.Payload), MaxChunkPayload)
	}
	return nil
}

// ChunkIn is a chunk received and opened.
type ChunkIn struct {
	Peer    Fingerprint
	Command CommandID
	Chunk
}

// SealChunk seals one chunk of cmd's stream for peer under the stream secret. created and
// not_after are now: a chunk has no time check (section 14).
func (e *Engine) SealChunk(peer Fingerprint, cmd CommandID, secret *Secret, c Chunk) ([]byte, error) {
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTooLarge, err)
	}
	size := bucket(chunkHeaderSize + len(c.Payload))
	buf := make([]byte, HeaderSize+size+tagSize)
	plain := buf[HeaderSize : HeaderSize+size]
	binary.BigEndian.PutUint32(plain[0:], c.Index)
	plain[4] = c.Part
	binary.BigEndian.PutUint64(plain[5:], c.Offset)
	binary.BigEndian.PutUint32(plain[13:], uint32(len(c.Payload)))
	copy(plain[chunkHeaderSize:], c.Payload)
	now := e.nowMS()
	h := Header{Type: TypeChunk, Sender: e.fp, Recipient: peer, Command: cmd, Created: now, NotAfter: now}
	return sealInto(buf, &h, secret, e.rand)
}

// decodeChunk is the body decoder for CHUNK plaintext: exactly one encoding of each chunk.
func decodeChunk(plain []byte) (Chunk, error) {
	var c Chunk
	if len(plain) < chunkHeaderSize || !isBucket(len(plain)) {
		return c, parseErr("chunk", "sealed body of %d bytes is not a padded size", len(plain))
	}
	c.Index = binary.BigEndian.Uint32(plain[0:])
	c.Part = plain[4]
	c.Offset = binary.BigEndian.Uint64(plain[5:])
	n := binary.BigEndian.Uint32(plain[13:])
	if n > MaxChunkPayload || int(n) > len(plain)-chunkHeaderSize {
		return c, parseErr("chunk", "payload length %d does not fit the %d-byte body", n, len(plain))
	}
	if bucket(chunkHeaderSize+int(n)) != len(plain) {
		return c, parseErr("chunk", "body padded to %d bytes, want %d", len(plain), bucket(chunkHeaderSize+int(n)))
	}
	if !allZero(plain[chunkHeaderSize+int(n):]) {
		return c, parseErr("chunk", "padding is not zero")
	}
	c.Payload = plain[chunkHeaderSize : chunkHeaderSize+int(n)]
	return c, c.check()
}

// receiveChunk opens a CHUNK from a pinned peer under the stream secret the store holds for
// (sender, command). No state changes here: what to keep of it is the caller's (the node's
// stream records drop a chunk index they already hold).
func (e *Engine) receiveChunk(st Store, p *Package, raw []byte) (Outcome, error) {
	secret, ok, err := st.StreamSecret(p.Sender, p.Command)
	if err != nil {
		return Outcome{}, err
	}
	if !ok {
		return Outcome{}, ErrUnknownStream
	}
	plain, err := open(p, raw, secret)
	if err != nil {
		return Outcome{}, err
	}
	c, err := decodeChunk(plain)
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Kind: ChunkReceived, Peer: p.Sender, Command: p.Command,
		Chunk: &ChunkIn{Peer: p.Sender, Command: p.Command, Chunk: c}}, nil
}
