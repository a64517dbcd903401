package compress

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/bits"

	"github.com/ulikunitz/xz"
)

// Codec identifiers, the first byte of a frame.
const (
	Stored byte = 0 // data is the plain bytes
	XZ     byte = 1 // data is one .xz stream (single LZMA2 filter, check CRC32)
)

const (
	HeaderSize = 5        // codec u8 + plain length u32 big-endian
	MaxPlain   = 16 << 20 // hard cap on the plain length of a frame
	MaxDict    = 1 << 20  // largest LZMA2 dictionary a frame may declare
	MinDict    = 4 << 10
)

// minXZGain: an xz stream as Encode writes it is never shorter than 60 bytes
// (12 stream header + 12 block header + at least 12 of LZMA2 data with its
// end marker + 4 check + 8 index + 12 footer), so for inputs up to that size
// the stored frame always wins and the encoder is not worth building.
const minXZGain = 60

// Encode returns a frame: codec (1 byte) | plain length (uint32 big-endian) |
// data. It tries xz with a dictionary sized to the payload and falls back to
// Stored unless xz is strictly smaller. The only error is ErrTooLarge.
func Encode(plain []byte) ([]byte, error) {
	if len(plain) > MaxPlain {
		return nil, fail(ErrTooLarge, "plain length %d, at most %d", len(plain), MaxPlain)
	}
	if len(plain) > minXZGain && (len(plain) <= probeAbove || compressible(plain)) {
		if frame, ok := encodeXZ(plain, HeaderSize+len(plain)-1); ok {
			return frame, nil
		}
	}
	return encodeStored(plain), nil
}

const (
	// probeAbove: larger inputs are sampled before being compressed whole.
	// Incompressible data is the encoder's slowest case (every position
	// becomes a literal after a fruitless match search) and ends up stored
	// anyway.
	probeAbove = 64 << 10
	// probePieces x probePiece bytes, spread evenly over the input.
	probePieces = 4
	probePiece  = 8 << 10
)

// compressible compresses a sample of plain and reports whether it shrank by
// at least 3%. It can misjudge mixed content (say, a text file next to a
// large JPEG) and store what xz would have shrunk a little; the frame is still
// valid, only larger, and that is the price of not spending seconds on
// already-compressed payloads.
func compressible(plain []byte) bool {
	sample := make([]byte, 0, probePieces*probePiece)
	step := (len(plain) - probePiece) / (probePieces - 1)
	for i := 0; i < probePieces; i++ {
		sample = append(sample, plain[i*step:i*step+probePiece]...)
	}
	_, ok := encodeXZ(sample, HeaderSize+len(sample)*97/100)
	return ok
}

func encodeStored(plain []byte) []byte {
	frame := make([]byte, HeaderSize+len(plain))
	putHeader(frame, Stored, len(plain))
	copy(frame[HeaderSize:], plain)
	return frame
}

// encodeXZ returns the XZ frame of plain, or false if that frame would be
// longer than limit bytes; the encoder gives up as soon as that is certain.
//
// The stream is what the decoder accepts and nothing more: stream flags with
// a CRC32 check, one block whose header carries only the LZMA2 filter with
// the dictionary of dictFor(len(plain)), the LZMA2 chunks (the first resets
// dictionary and state and sets lc=3 lp=0 pb=2, the rest reset nothing), the
// CRC32 of plain, a one-record index and the footer.
func encodeXZ(plain []byte, limit int) ([]byte, bool) {
	dict := dictFor(len(plain))
	// Small frames get their final capacity up front (one allocation);
	// large ones start at a guess so that a well-compressed 16 MiB payload
	// does not pin 16 MiB.
	initial := HeaderSize + len(plain) + xzOverhead
	if initial > 64<<10 {
		initial = HeaderSize + len(plain)/4
	}
	out := make([]byte, HeaderSize, min(initial, limit+1))
	putHeader(out, XZ, len(plain))

	// Stream header.
	out = append(out, xzMagic...)
	out = append(out, 0, checkCRC32)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE([]byte{0, checkCRC32}))

	// Block header: size byte, flags (one filter, no optional sizes),
	// filter ID 0x21 (LZMA2), one property byte, zero padding, CRC32.
	blockStart := len(out)
	bh := []byte{blockHeaderLen/4 - 1, 0x00, 0x21, 0x01, dictByte(dict), 0, 0, 0}
	out = append(out, bh...)
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(bh))

	dataStart := len(out)
	out, ok := newLZMAEncoder(plain, dict).encodeLZMA2(out, limit-xzTrailerMax)
	if !ok {
		return nil, false
	}
	// Unpadded size: block header, compressed data, check.
	unpadded := blockHeaderLen + (len(out) - dataStart) + 4
	for (len(out)-blockStart)%4 != 0 {
		out = append(out, 0) // block padding
	}
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(plain))

	// Index: indicator, one record (unpadded size, uncompressed size),
	// padding to four bytes, CRC32.
	indexStart := len(out)
	out = append(out, 0x00, 0x01)
	out = binary.AppendUvarint(out, uint64(unpadded))
	out = binary.AppendUvarint(out, uint64(len(plain)))
	for (len(out)-indexStart)%4 != 0 {
		out = append(out, 0)
	}
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(out[indexStart:]))
	indexLen := len(out) - indexStart

	// Footer: CRC32 of backward size and flags, backward size, flags, magic.
	var tail [6]byte
	binary.LittleEndian.PutUint32(tail[:4], uint32(indexLen/4-1))
	tail[4], tail[5] = 0, checkCRC32
	out = binary.LittleEndian.AppendUint32(out, crc32.ChecksumIEEE(tail[:]))
	out = append(out, tail[:]...)
	out = append(out, 'Y', 'Z')
	if len(out) > limit {
		return nil, false
	}
	return out, true
}

const (
	blockHeaderLen = 12
	// xzOverhead is what a stream adds around the LZMA2 data of a small
	// payload: stream header 12, block header 12, padding up to 3, check
	// 4, index 8 to 12, footer 12.
	xzOverhead = 60
	// xzTrailerMax bounds what follows the LZMA2 data: block padding 3,
	// check 4, index at most 24 (two 9-byte numbers and padding), footer 12.
	xzTrailerMax = 43
)

// dictByte is the LZMA2 filter property for d, which must be a valid LZMA2
// dictionary size (2^k or 2^k+2^(k-1), at least 4 KiB), as dictFor returns.
func dictByte(d int) byte {
	k := bits.Len(uint(d)) - 1 // d is 2^k or 3*2^(k-1)
	b := 2 * (k - 12)
	if d != 1<<k {
		b++
	}
	return byte(b)
}

func putHeader(frame []byte, codec byte, n int) {
	frame[0] = codec
	binary.BigEndian.PutUint32(frame[1:HeaderSize], uint32(n))
}

// dictFor returns the smallest LZMA2 dictionary size (2^k or 2^k+2^(k-1))
// that is >= n, clamped to [MinDict, MaxDict].
func dictFor(n int) int {
	d := MinDict
	for d < n && d < MaxDict {
		if d&(d-1) == 0 {
			d += d / 2 // 2^k -> 3*2^(k-1)
		} else {
			d = d / 3 * 4 // 3*2^(k-1) -> 2^(k+1)
		}
	}
	return d
}

// DeclaredLength returns the plain length a frame declares, without decoding
// it, so callers can budget before calling Decode. The value is never above
// MaxPlain; Decode still checks that the data matches it.
func DeclaredLength(frame []byte) (int, error) {
	_, n, err := parseHeader(frame, MaxPlain)
	return n, err
}

func parseHeader(frame []byte, limit int) (codec byte, n int, err error) {
	if len(frame) < HeaderSize {
		return 0, 0, fail(ErrTruncated, "frame of %d bytes, header needs %d", len(frame), HeaderSize)
	}
	codec = frame[0]
	if codec != Stored && codec != XZ {
		return 0, 0, fail(ErrCodec, "codec byte %#02x", codec)
	}
	declared := binary.BigEndian.Uint32(frame[1:HeaderSize])
	if uint64(declared) > uint64(limit) {
		return 0, 0, fail(ErrTooLarge, "declared plain length %d, limit %d", declared, limit)
	}
	return codec, int(declared), nil
}

// Decode parses a frame and returns the plain bytes in a fresh slice (never
// aliasing frame). max caps the output; max <= 0 or > MaxPlain means
// MaxPlain. On error the result is nil and the error is an *Error.
func Decode(frame []byte, max int) ([]byte, error) {
	if max <= 0 || max > MaxPlain {
		max = MaxPlain
	}
	codec, declared, err := parseHeader(frame, max)
	if err != nil {
		return nil, err
	}
	data := frame[HeaderSize:]
	if codec == Stored {
		if len(data) != declared {
			return nil, fail(ErrLength, "stored frame holds %d bytes, header declares %d", len(data), declared)
		}
		return bytes.Clone(data[:declared:declared]), nil
	}
	if _, err := scanXZ(data, declared); err != nil {
		return nil, err
	}
	return inflate(data, declared)
}

// inflate runs the xz library over a stream that scanXZ has accepted. It
// repeats the length and end-of-input checks on what the library actually
// produced and consumed, so that a disagreement between scanXZ and the
// library cannot turn into more output or unread trailing bytes.
func inflate(data []byte, declared int) (out []byte, err error) {
	// The library has explicit panics on states it considers impossible;
	// a hostile stream reaching one must cost the peer its message, not
	// the receiver its process.
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, &Error{Err: ErrCorrupt, Detail: fmt.Sprintf("xz decoder panicked: %v", r), panicked: true}
		}
	}()
	src := &countingReader{r: bytes.NewReader(data)}
	// DictCap is only a floor for the library (it always allocates what
	// the block header declares); scanXZ is what bounds the dictionary.
	zr, err := xz.ReaderConfig{DictCap: MinDict, SingleStream: true}.NewReader(src)
	if err != nil {
		return nil, libError(err)
	}
	// One byte past the declared length, to see a stream that is longer.
	out = make([]byte, declared+1)
	lr := &io.LimitedReader{R: zr, N: int64(declared) + 1}
	n, stalls := 0, 0
	for {
		k, rerr := lr.Read(out[n:])
		n += k
		if rerr == io.EOF {
			// Either the stream ended cleanly (after the library
			// checked index and footer and found no further input),
			// or the cap was hit.
			break
		}
		if rerr != nil {
			return nil, libError(rerr)
		}
		if k == 0 {
			if stalls++; stalls > 100 {
				return nil, fail(ErrCorrupt, "xz reader makes no progress")
			}
		}
	}
	if n > declared {
		return nil, fail(ErrLength, "xz stream holds more than the declared %d bytes", declared)
	}
	if n < declared {
		return nil, fail(ErrLength, "xz stream holds %d bytes, header declares %d", n, declared)
	}
	if src.n != int64(len(data)) {
		return nil, fail(ErrTrailing, "%d bytes after the xz stream", int64(len(data))-src.n)
	}
	return out[:n:n], nil
}

// libError classifies an error from the xz library. scanXZ has already
// proven the stream complete, so even the library's io.ErrUnexpectedEOF means
// a chunk whose coded data ends before its declared size: corruption, not
// truncation.
func libError(err error) error {
	return fail(ErrCorrupt, "xz decoder: %v", err)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
