package session_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/sealpost/sealpost/session"
)

// TestChunkRoundTrip: a chunk sealed under a command's stream secret opens at the peer that holds
// the stream, as itself, and changes no state there.
func TestChunkRoundTrip(t *testing.T) {
	a, b := pair(t)
	secret := session.Secret{7}
	cmd := cmdID(9)
	a.st.PutStream(b.fp(), cmd, secret)
	c := session.Chunk{Index: 3, Part: session.PartStderr, Offset: 3 << 20, Payload: []byte{0, 0, 0, 0, 2, 'h', 'i'}}
	pkg, err := b.eng.SealChunk(a.fp(), cmd, &secret, c)
	if err != nil {
		t.Fatal(err)
	}
	before := a.st.Snapshot()
	out, err := a.eng.Receive(a.st, pkg)
	if err != nil {
		t.Fatal(err)
	}
	if out.Kind != session.ChunkReceived || out.Chunk == nil || out.Chunk.Peer != b.fp() || out.Chunk.Command != cmd {
		t.Fatalf("outcome %+v", out)
	}
	got := out.Chunk.Chunk
	if got.Index != c.Index || got.Part != c.Part || got.Offset != c.Offset || !bytes.Equal(got.Payload, c.Payload) {
		t.Fatalf("chunk %+v, want %+v", got, c)
	}
	if a.st.Snapshot() != before {
		t.Fatal("receiving a chunk changed the session state")
	}
}

// TestChunkRejections: a chunk opens only at the recipient, from the peer, under the secret of
// that very command's stream, with its header as sent.
func TestChunkRejections(t *testing.T) {
	a, b := pair(t)
	secret := session.Secret{7}
	cmd := cmdID(9)
	a.st.PutStream(b.fp(), cmd, secret)
	c := session.Chunk{Part: session.PartStdout, Payload: []byte{0, 0, 0, 0, 1, 'x'}}

	other := session.Secret{8}
	wrongKey, err := b.eng.SealChunk(a.fp(), cmd, &other, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Receive(a.st, wrongKey); !errors.Is(err, session.ErrAuth) {
		t.Fatalf("chunk under another secret: %v, want ErrAuth", err)
	}
	unknown, err := b.eng.SealChunk(a.fp(), cmdID(10), &secret, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.eng.Receive(a.st, unknown); !errors.Is(err, session.ErrUnknownStream) {
		t.Fatalf("chunk of a stream not held: %v, want ErrUnknownStream", err)
	}
	good, err := b.eng.SealChunk(a.fp(), cmd, &secret, c)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(good)
	copy(tampered[96:104], make([]byte, 8)) // created-at 0: still well-formed, but part of the associated data
	if _, err := a.eng.Receive(a.st, tampered); !errors.Is(err, session.ErrAuth) {
		t.Fatalf("chunk with a changed header: %v, want ErrAuth", err)
	}
	if _, err := b.eng.Receive(b.st, good); !errors.Is(err, session.ErrNotForUs) {
		t.Fatalf("chunk read by its sender: %v, want ErrNotForUs", err)
	}
	if _, err := b.eng.SealChunk(a.fp(), cmd, &secret, session.Chunk{Part: 3, Payload: []byte{1}}); err == nil {
		t.Fatal("SealChunk took part 3")
	}
	if _, err := b.eng.SealChunk(a.fp(), cmd, &secret, session.Chunk{Part: 1}); err == nil {
		t.Fatal("SealChunk took an empty payload")
	}
}
