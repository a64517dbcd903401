package keystore

import (
	"encoding/json"
	"time"
)

// Streams (docs/PROTOCOL.md section 20): a command's output or file carried in CHUNK packages
// beside its one RESPONSE. Node owns what they mean; keystore keeps them, one record per stream,
// small whatever the stream's size: the bytes themselves live in spool files beside state.db.
//
//	streams_in   peer fingerprint ‖ command id -> JSON StreamIn   (a stream this node receives)
//	streams_out  peer fingerprint ‖ command id -> JSON StreamOut  (a stream this node sends)

// MaxStreamChunks bounds the chunks of one stream (session.MaxChunkIndex + 1).
const MaxStreamChunks = 1 << 24

// StreamSeg is where one received chunk's bytes went: Len bytes at Offset in part Part.
type StreamSeg struct {
	Index  uint32 `json:"i"`
	Part   uint8  `json:"p"`
	Offset int64  `json:"o"`
	Len    int64  `json:"n"`
}

// StreamIn is a stream this node receives: a command's output (or pulled file) on the
// requester, a pushed file on the agent.
type StreamIn struct {
	Peer    [16]byte `json:"peer"`
	Command [16]byte `json:"command"`
	Secret  [32]byte `json:"secret"`
	// Have is a bit set of the chunk indices received (bit i of byte i/8, low bit first).
	Have []byte `json:"have,omitempty"`
	// Segs are the received chunks not yet joined to the contiguous prefix of their part.
	Segs []StreamSeg `json:"segs,omitempty"`
	// Contig is, per part (stdout, stderr), how many bytes from the start are all received,
	// and HashState the SHA-256 state over exactly those bytes (encoding.BinaryMarshaler form).
	Contig    [2]int64  `json:"contig"`
	HashState [2][]byte `json:"hash_state"`
	// Answer is the command's final result (its payload, as received), kept here until the
	// stream is complete; nil until it came. Chunks is how many chunks it names.
	Answer []byte `json:"answer,omitempty"`
	Chunks int64  `json:"chunks"`
	// Asked is when this node last asked the peer for missing chunks, Asks how often.
	Asked time.Time `json:"asked,omitzero"`
	Asks  int       `json:"asks,omitempty"`
	// Started is when the stream was opened here.
	Started time.Time `json:"started"`
	// Path is where a pushed file goes (agent side): its final name; Size and SHA256 what it
	// must be. The push command stays Executing until the file is in place (or cannot be).
	Path   string `json:"path,omitempty"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// Joined: a push's chunks are all here; the file is still to go into place.
	Joined bool `json:"joined,omitempty"`
	// Heard is when the last chunk came (or the stream was opened): asks for missing chunks
	// of a push wait for a quiet spell.
	Heard time.Time `json:"heard,omitzero"`
}

// HasChunk reports whether chunk i was received.
func (s *StreamIn) HasChunk(i uint32) bool {
	return int(i/8) < len(s.Have) && s.Have[i/8]&(1<<(i%8)) != 0
}

// SetChunk records chunk i as received.
func (s *StreamIn) SetChunk(i uint32) {
	for int(i/8) >= len(s.Have) {
		s.Have = append(s.Have, 0)
	}
	s.Have[i/8] |= 1 << (i % 8)
}

// Missing lists up to max chunk indices below n not received.
func (s *StreamIn) Missing(n int64, max int) []uint32 {
	var out []uint32
	for i := int64(0); i < n && len(out) < max; i++ {
		if !s.HasChunk(uint32(i)) {
			out = append(out, uint32(i))
		}
	}
	return out
}

// CountMissing counts the chunk indices below n not received, without listing them.
func (s *StreamIn) CountMissing(n int64) int64 {
	var missing int64
	for i := int64(0); i < n; i++ {
		if !s.HasChunk(uint32(i)) {
			missing++
		}
	}
	return missing
}

// StreamChunk is where chunk Index of a sent stream came from: Len bytes at Offset of Part.
type StreamChunk = StreamSeg

// StreamOut is a stream this node sends: a command's output or a pulled file on the agent, a
// pushed file on the requester.
type StreamOut struct {
	Peer    [16]byte `json:"peer"`
	Command [16]byte `json:"command"`
	Secret  [32]byte `json:"secret"`
	// Chunks are the chunks cut so far, by index.
	Chunks []StreamChunk `json:"chunks,omitempty"`
	// Source and SourceRel name the file the bytes are read from for a pull or push: a
	// directory and a path inside it, opened without following a symlink out of the directory
	// (empty: the spool files).
	Source    string `json:"source,omitempty"`
	SourceRel string `json:"source_rel,omitempty"`
	// Size is the source file's size when the transfer began: what it sends; ChunkSize the
	// plain bytes per chunk a push promised (its chunk count depends on it), 0 for the others.
	Size      int64 `json:"size,omitempty"`
	ChunkSize int   `json:"chunk_size,omitempty"`
	// Ended: every chunk is cut and the final answer is recorded.
	Ended bool `json:"ended,omitempty"`
	// Expires is when the spool may go though the requester never confirmed it.
	Expires time.Time `json:"expires"`
	// Resend are the chunk indices the requester asked for again, not queued yet.
	Resend []uint32 `json:"resend,omitempty"`
	// Broken says why the stream cannot be delivered (the mail server refused a chunk for
	// good); the record stays, without spool, so that the requester's asks learn why.
	Broken string `json:"broken,omitempty"`
}

func streamKey(peer, cmd [16]byte) []byte { return append(peer[:16:16], cmd[:]...) }

func (s *StreamIn) validate() error {
	if s.Peer == ([16]byte{}) || s.Command == ([16]byte{}) {
		return invalidf("stream: zero peer or command")
	}
	if len(s.Have) > MaxStreamChunks/8 || s.Chunks < -1 || s.Chunks > MaxStreamChunks {
		return invalidf("stream %x: %d chunks", s.Command, s.Chunks)
	}
	return nil
}

func (s *StreamOut) validate() error {
	if s.Peer == ([16]byte{}) || s.Command == ([16]byte{}) {
		return invalidf("stream: zero peer or command")
	}
	if len(s.Chunks) > MaxStreamChunks {
		return invalidf("stream %x: %d chunks", s.Command, len(s.Chunks))
	}
	return nil
}

// StreamIn returns the stream received from peer for cmd.
func (tx *Tx) StreamIn(peer, cmd [16]byte) (*StreamIn, bool, error) {
	return getStream[StreamIn](tx, bStreamsIn, peer, cmd)
}

// StreamOut returns the stream sent to peer for cmd.
func (tx *Tx) StreamOut(peer, cmd [16]byte) (*StreamOut, bool, error) {
	return getStream[StreamOut](tx, bStreamsOut, peer, cmd)
}

func getStream[T any](tx *Tx, bucket []byte, peer, cmd [16]byte) (*T, bool, error) {
	v := tx.bucket(bucket).Get(streamKey(peer, cmd))
	if v == nil {
		return nil, false, nil
	}
	s := new(T)
	if err := json.Unmarshal(v, s); err != nil {
		return nil, false, corruptf("%s %x: %v", bucket, cmd, err)
	}
	return s, true, nil
}

// PutStreamIn stores s.
func (tx *Tx) PutStreamIn(s *StreamIn) error {
	if err := s.validate(); err != nil {
		return err
	}
	return putJSON(tx.bucket(bStreamsIn), streamKey(s.Peer, s.Command), s)
}

// PutStreamOut stores s.
func (tx *Tx) PutStreamOut(s *StreamOut) error {
	if err := s.validate(); err != nil {
		return err
	}
	return putJSON(tx.bucket(bStreamsOut), streamKey(s.Peer, s.Command), s)
}

// DeleteStreamIn forgets a received stream (its spool files are the caller's).
func (tx *Tx) DeleteStreamIn(peer, cmd [16]byte) error {
	return tx.bucket(bStreamsIn).Delete(streamKey(peer, cmd))
}

// DeleteStreamOut forgets a sent stream (its spool files are the caller's).
func (tx *Tx) DeleteStreamOut(peer, cmd [16]byte) error {
	return tx.bucket(bStreamsOut).Delete(streamKey(peer, cmd))
}

// ForEachStreamIn calls fn with every received stream.
func (tx *Tx) ForEachStreamIn(fn func(*StreamIn) error) error {
	return forEachStream(tx, bStreamsIn, fn)
}

// ForEachStreamOut calls fn with every sent stream.
func (tx *Tx) ForEachStreamOut(fn func(*StreamOut) error) error {
	return forEachStream(tx, bStreamsOut, fn)
}

func forEachStream[T any](tx *Tx, bucket []byte, fn func(*T) error) error {
	return tx.bucket(bucket).ForEach(func(k, v []byte) error {
		s := new(T)
		if err := json.Unmarshal(v, s); err != nil {
			return corruptf("%s %x: %v", bucket, k, err)
		}
		return fn(s)
	})
}
