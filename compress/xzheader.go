package compress

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// scanXZ walks the whole .xz stream structure (xz file format 1.2.0) without
// decompressing anything, so that every size the xz library would trust, and
// allocate from, is checked against our limits first:
//
//   - the LZMA2 dictionary is what the library allocates, and it honours
//     whatever the block header says (up to 4 GiB) regardless of
//     ReaderConfig.DictCap;
//   - a stream with a second block would get a second, unchecked dictionary,
//     so exactly one block is accepted;
//   - every LZMA2 chunk header states its unpacked size, so a bomb is
//     recognised from its headers alone before a single byte is inflated;
//   - each state-resetting chunk makes the library allocate fresh
//     probability tables, so their lc+lp and their number are bounded;
//   - the footer must end exactly at the end of data, which makes trailing
//     bytes (padding, a second stream, garbage) an error even though the
//     library only notices them if it is read past the end.
//
// The library still verifies what it verifies (CRCs of the block data, LZMA2
// chunk sequence, range-coder data); this pass only has to make sure that
// nothing it is handed can make it allocate or work beyond the limits.
func scanXZ(data []byte, declared int) (xzStream, error) {
	var s xzStream
	c := cursor{b: data}

	// Stream header.
	hdr, ok := c.take(xzHeaderLen)
	if !ok {
		return s, fail(ErrTruncated, "xz stream header needs %d bytes, have %d", xzHeaderLen, len(data))
	}
	if !bytes.Equal(hdr[:6], xzMagic) {
		return s, fail(ErrCorrupt, "bad xz magic % x", hdr[:6])
	}
	flags := hdr[6:8]
	if crc32.ChecksumIEEE(flags) != binary.LittleEndian.Uint32(hdr[8:12]) {
		return s, fail(ErrCorrupt, "xz stream header CRC mismatch")
	}
	if flags[0] != 0 || flags[1] != checkCRC32 {
		return s, fail(ErrDictionary, "xz stream flags %#02x %#02x; only CRC32 check is supported", flags[0], flags[1])
	}

	// Block header.
	blockStart := c.off
	sizeByte, ok := c.byte()
	if !ok {
		return s, fail(ErrTruncated, "xz stream ends before the first block")
	}
	if sizeByte == 0 {
		return s, fail(ErrDictionary, "xz stream has no block; exactly one is required")
	}
	bhLen := (int(sizeByte) + 1) * 4
	c.off = blockStart
	bh, ok := c.take(bhLen)
	if !ok {
		return s, fail(ErrTruncated, "xz block header needs %d bytes, have %d", bhLen, len(data)-blockStart)
	}
	if crc32.ChecksumIEEE(bh[:bhLen-4]) != binary.LittleEndian.Uint32(bh[bhLen-4:]) {
		return s, fail(ErrCorrupt, "xz block header CRC mismatch")
	}
	blockFlags := bh[1]
	if blockFlags&0x3c != 0 {
		return s, fail(ErrDictionary, "xz block flags %#02x set reserved bits", blockFlags)
	}
	if n := int(blockFlags&0x03) + 1; n != 1 {
		return s, fail(ErrDictionary, "xz block has %d filters; only a single LZMA2 filter is supported", n)
	}
	fields := cursor{b: bh[2 : bhLen-4]}
	hdrCompressed, hdrUncompressed := int64(-1), int64(-1)
	if blockFlags&0x40 != 0 {
		v, err := fields.uvarint()
		if err != nil || v == 0 {
			return s, fail(ErrCorrupt, "xz block header: bad compressed size")
		}
		hdrCompressed = int64(v)
	}
	if blockFlags&0x80 != 0 {
		v, err := fields.uvarint()
		if err != nil {
			return s, fail(ErrCorrupt, "xz block header: bad uncompressed size")
		}
		hdrUncompressed = int64(v)
	}
	id, err := fields.uvarint()
	if err != nil {
		return s, fail(ErrCorrupt, "xz block header: bad filter id")
	}
	if id != filterLZMA2 {
		return s, fail(ErrDictionary, "xz filter id %#x; only LZMA2 (0x21) is supported", id)
	}
	propSize, err := fields.uvarint()
	if err != nil {
		return s, fail(ErrCorrupt, "xz block header: bad filter properties size")
	}
	if propSize != 1 {
		return s, fail(ErrDictionary, "LZMA2 filter properties size %d; want 1", propSize)
	}
	dictByte, ok := fields.byte()
	if !ok {
		return s, fail(ErrCorrupt, "xz block header: LZMA2 properties overrun the header")
	}
	if dictByte > 40 {
		return s, fail(ErrDictionary, "LZMA2 dictionary byte %d is above 40", dictByte)
	}
	s.dict = lzma2Dict(dictByte)
	if s.dict > MaxDict {
		return s, fail(ErrDictionary, "LZMA2 dictionary %d bytes; at most %d", s.dict, MaxDict)
	}
	if need := dictFor(declared); s.dict > int64(need) {
		return s, fail(ErrDictionary, "LZMA2 dictionary %d bytes for %d plain bytes; at most %d", s.dict, declared, need)
	}
	for _, p := range fields.b[fields.off:] {
		if p != 0 {
			// The spec asks decoders to refuse this: it may be a field
			// we do not know about.
			return s, fail(ErrDictionary, "xz block header padding is not zero")
		}
	}

	// LZMA2 chunks: sizes only, nothing is decoded here.
	dataStart := c.off
	var unpacked int64
	resets := 0
	for {
		ctl, ok := c.byte()
		if !ok {
			return s, fail(ErrTruncated, "LZMA2 data ends without an end marker")
		}
		if ctl == 0x00 {
			break
		}
		var chunkPlain, chunkPacked int
		switch {
		case ctl == 0x01 || ctl == 0x02:
			h, ok := c.take(2)
			if !ok {
				return s, fail(ErrTruncated, "LZMA2 chunk header cut short")
			}
			chunkPlain = int(binary.BigEndian.Uint16(h)) + 1
			chunkPacked = chunkPlain
		case ctl >= 0x80:
			n := 4
			if ctl >= 0xc0 {
				n = 5 // new properties follow
			}
			h, ok := c.take(n)
			if !ok {
				return s, fail(ErrTruncated, "LZMA2 chunk header cut short")
			}
			chunkPlain = (int(ctl&0x1f)<<16 | int(binary.BigEndian.Uint16(h[0:2]))) + 1
			chunkPacked = int(binary.BigEndian.Uint16(h[2:4])) + 1
			if ctl >= 0xa0 { // state reset: the library allocates new tables
				resets++
			}
			if n == 5 {
				// lc+lp > 4 is invalid LZMA2; the library would
				// accept it and allocate up to 6 MiB per chunk.
				p := h[4]
				if p > 224 || p%9+(p/9)%5 > 4 {
					return s, fail(ErrCorrupt, "LZMA2 properties byte %d invalid", p)
				}
			}
		default:
			return s, fail(ErrCorrupt, "LZMA2 control byte %#02x invalid", ctl)
		}
		if _, ok := c.take(chunkPacked); !ok {
			return s, fail(ErrTruncated, "LZMA2 chunk of %d bytes cut short", chunkPacked)
		}
		unpacked += int64(chunkPlain)
		if unpacked > int64(declared) {
			return s, fail(ErrLength, "xz stream holds more than the declared %d bytes", declared)
		}
	}
	packed := int64(c.off - dataStart)
	if maxResets := 2 + int(packed)/resetSpacing; resets > maxResets {
		return s, fail(ErrCorrupt, "%d LZMA2 state resets in %d bytes; at most %d", resets, packed, maxResets)
	}
	if hdrCompressed >= 0 && hdrCompressed != packed {
		return s, fail(ErrCorrupt, "xz block header compressed size %d, data is %d", hdrCompressed, packed)
	}
	if hdrUncompressed >= 0 && hdrUncompressed != unpacked {
		return s, fail(ErrCorrupt, "xz block header uncompressed size %d, data is %d", hdrUncompressed, unpacked)
	}

	// Block padding and check.
	pad, ok := c.take(pad4(c.off - blockStart))
	if !ok {
		return s, fail(ErrTruncated, "xz block padding cut short")
	}
	if !allZero(pad) {
		return s, fail(ErrCorrupt, "xz block padding is not zero")
	}
	if _, ok := c.take(4); !ok {
		return s, fail(ErrTruncated, "xz block check cut short")
	}
	unpadded := int64(bhLen) + packed + 4

	// Index.
	indexStart := c.off
	ind, ok := c.byte()
	if !ok {
		return s, fail(ErrTruncated, "xz stream ends before its index")
	}
	if ind != 0 {
		return s, fail(ErrDictionary, "xz stream has a second block; exactly one is allowed")
	}
	for _, want := range []struct {
		what string
		v    uint64
	}{{"index record count", 1}, {"index unpadded size", uint64(unpadded)}, {"index uncompressed size", uint64(unpacked)}} {
		v, err := c.uvarint()
		if err != nil {
			return s, err2(err, "xz "+want.what)
		}
		if v != want.v {
			return s, fail(ErrCorrupt, "xz %s %d; want %d", want.what, v, want.v)
		}
	}
	pad, ok = c.take(pad4(c.off - indexStart))
	if !ok {
		return s, fail(ErrTruncated, "xz index padding cut short")
	}
	if !allZero(pad) {
		return s, fail(ErrCorrupt, "xz index padding is not zero")
	}
	indexBody := data[indexStart:c.off]
	sum, ok := c.take(4)
	if !ok {
		return s, fail(ErrTruncated, "xz index CRC cut short")
	}
	if crc32.ChecksumIEEE(indexBody) != binary.LittleEndian.Uint32(sum) {
		return s, fail(ErrCorrupt, "xz index CRC mismatch")
	}
	indexLen := c.off - indexStart

	// Stream footer.
	ftr, ok := c.take(xzFooterLen)
	if !ok {
		return s, fail(ErrTruncated, "xz stream footer needs %d bytes, have %d", xzFooterLen, len(data)-c.off)
	}
	if ftr[10] != 'Y' || ftr[11] != 'Z' {
		return s, fail(ErrCorrupt, "bad xz footer magic")
	}
	if crc32.ChecksumIEEE(ftr[4:10]) != binary.LittleEndian.Uint32(ftr[0:4]) {
		return s, fail(ErrCorrupt, "xz stream footer CRC mismatch")
	}
	if got := int64(binary.LittleEndian.Uint32(ftr[4:8])); (got+1)*4 != int64(indexLen) {
		return s, fail(ErrCorrupt, "xz footer backward size %d does not match index of %d bytes", (got+1)*4, indexLen)
	}
	if !bytes.Equal(ftr[8:10], flags) {
		return s, fail(ErrCorrupt, "xz footer flags differ from header flags")
	}
	if rest := len(data) - c.off; rest != 0 {
		return s, fail(ErrTrailing, "%d bytes after the xz stream", rest)
	}

	if unpacked != int64(declared) {
		return s, fail(ErrLength, "xz stream holds %d bytes, header declares %d", unpacked, declared)
	}
	s.plain = unpacked
	return s, nil
}

// xzStream is what scanXZ learned about a valid stream.
type xzStream struct {
	dict  int64 // LZMA2 dictionary the decoder will allocate
	plain int64 // sum of the LZMA2 chunks' unpacked sizes
}

const (
	xzHeaderLen = 12
	xzFooterLen = 12
	checkCRC32  = 0x01
	filterLZMA2 = 0x21
	// resetSpacing bounds state-resetting LZMA2 chunks to one per this many
	// bytes of LZMA2 data (plus two). The library's encoder resets the state
	// only in the first chunk and after an uncompressed chunk (~64 KiB), so
	// honest streams stay far below; a hostile one cannot make the decoder
	// allocate much more than a few times its own size in probability tables.
	resetSpacing = 4 << 10
)

var xzMagic = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}

// lzma2Dict decodes the LZMA2 dictionary property byte b (b <= 40).
func lzma2Dict(b byte) int64 {
	return int64(2|b&1) << (b/2 + 11)
}

func pad4(n int) int { return (4 - n%4) % 4 }

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// cursor reads forward through an in-memory byte slice; "not ok" always
// means the slice ran out.
type cursor struct {
	b   []byte
	off int
}

func (c *cursor) take(n int) ([]byte, bool) {
	if n < 0 || n > len(c.b)-c.off {
		return nil, false
	}
	p := c.b[c.off : c.off+n]
	c.off += n
	return p, true
}

func (c *cursor) byte() (byte, bool) {
	p, ok := c.take(1)
	if !ok {
		return 0, false
	}
	return p[0], true
}

// uvarint reads an xz multibyte integer: at most 9 bytes, 7 bits each,
// little-endian groups, and no redundant trailing zero group.
func (c *cursor) uvarint() (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		b, ok := c.byte()
		if !ok {
			return 0, ErrTruncated
		}
		if i > 0 && b == 0 {
			return 0, ErrCorrupt
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return v, nil
		}
	}
	return 0, ErrCorrupt
}

// err2 turns a bare sentinel from cursor.uvarint into an *Error.
func err2(kind error, what string) error {
	if kind == ErrTruncated {
		return fail(ErrTruncated, "%s cut short", what)
	}
	return fail(ErrCorrupt, "%s is not a valid xz integer", what)
}
