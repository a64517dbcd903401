package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/crc64"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

var sentinels = []error{ErrTruncated, ErrCodec, ErrTooLarge, ErrDictionary, ErrLength, ErrTrailing, ErrCorrupt}

// textPayload returns n bytes of deterministic, log-like text: the kind of
// output a command package carries.
func textPayload(n int) []byte {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	hosts := []string{"alpha", "bravo", "charlie", "delta-07", "echo.internal"}
	units := []string{"sshd", "cron", "backup.sh", "systemd", "kernel", "rsync"}
	msgs := []string{
		"Accepted publickey for deploy from 10.0.%d.%d port %d ssh2",
		"session opened for user root by (uid=0) pid=%d fd=%d code=%d",
		"copied %d files, %d bytes in %d ms",
		"Started Daily apt upgrade and clean activities (job %d/%d/%d).",
		"EXT4-fs (sda%d): mounted filesystem with ordered data mode %d:%d",
		"drwxr-xr-x  %d root root  4096 Jan %2d 12:%02d /var/lib/sealpost",
	}
	var b bytes.Buffer
	b.Grow(n + 200)
	for b.Len() < n {
		fmt.Fprintf(&b, "2026-01-%02d %02d:%02d:%02d.%03d %s %s[%d]: ",
			1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60), r.IntN(1000),
			hosts[r.IntN(len(hosts))], units[r.IntN(len(units))], 100+r.IntN(30000))
		fmt.Fprintf(&b, msgs[r.IntN(len(msgs))], r.IntN(256), r.IntN(256), r.IntN(65536))
		b.WriteByte('\n')
	}
	return b.Bytes()[:n]
}

func randomPayload(n int) []byte {
	p := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(p)
	return p
}

// mustXZ encodes plain and insists that xz was chosen.
func mustXZ(t testing.TB, plain []byte) []byte {
	t.Helper()
	f, err := Encode(plain)
	if err != nil {
		t.Fatalf("Encode(%d bytes) = %v", len(plain), err)
	}
	if f[0] != XZ {
		t.Fatalf("Encode(%d bytes of text) chose codec %d, want XZ", len(plain), f[0])
	}
	return f
}

// withHeader returns a new frame with the given codec and declared length.
func withHeader(codec byte, declared uint32, data []byte) []byte {
	f := make([]byte, HeaderSize, HeaderSize+len(data))
	f[0] = codec
	binary.BigEndian.PutUint32(f[1:], declared)
	return append(f, data...)
}

// xzSpec assembles .xz streams by hand, so that tests can produce shapes the
// library's writer never would (huge dictionaries, foreign filters, size
// fields, other checks).
type xzSpec struct {
	check      byte   // stream flags check type
	blockFlags byte   // ORed into the computed block flags
	sizes      bool   // write compressed and uncompressed size fields
	filters    []byte // filter flags; default LZMA2 with dictByte
	dictByte   byte
	lzma2      []byte // LZMA2 chunks, end marker included
	plain      []byte // what lzma2 decodes to; feeds the check and index
}

func uvarint(v uint64) []byte {
	var p []byte
	for v >= 0x80 {
		p = append(p, byte(v)|0x80)
		v >>= 7
	}
	return append(p, byte(v))
}

func (s xzSpec) build() []byte {
	le := binary.LittleEndian
	flags := []byte{0, s.check}
	out := append([]byte{}, xzMagic...)
	out = append(out, flags...)
	out = le.AppendUint32(out, crc32.ChecksumIEEE(flags))

	body := []byte{s.blockFlags}
	if s.sizes {
		body[0] |= 0xc0
		body = append(body, uvarint(uint64(len(s.lzma2)))...)
		body = append(body, uvarint(uint64(len(s.plain)))...)
	}
	filters := s.filters
	if filters == nil {
		filters = []byte{0x21, 0x01, s.dictByte}
	}
	body = append(body, filters...)
	bh := []byte{0}
	bh = append(bh, body...)
	bh = append(bh, make([]byte, pad4(len(bh)))...)
	bh[0] = byte((len(bh)+4)/4 - 1)
	bh = le.AppendUint32(bh, crc32.ChecksumIEEE(bh))
	out = append(out, bh...)

	out = append(out, s.lzma2...)
	out = append(out, make([]byte, pad4(len(bh)+len(s.lzma2)))...)
	var checkLen int
	switch s.check {
	case xz.CRC32:
		out = le.AppendUint32(out, crc32.ChecksumIEEE(s.plain))
		checkLen = 4
	case xz.CRC64:
		out = le.AppendUint64(out, crc64.Checksum(s.plain, crc64.MakeTable(crc64.ECMA)))
		checkLen = 8
	}

	idx := []byte{0}
	idx = append(idx, uvarint(1)...)
	idx = append(idx, uvarint(uint64(len(bh)+len(s.lzma2)+checkLen))...)
	idx = append(idx, uvarint(uint64(len(s.plain)))...)
	idx = append(idx, make([]byte, pad4(len(idx)))...)
	idx = le.AppendUint32(idx, crc32.ChecksumIEEE(idx))
	out = append(out, idx...)

	ftr := le.AppendUint32(nil, uint32(len(idx)/4-1))
	ftr = append(ftr, flags...)
	out = le.AppendUint32(out, crc32.ChecksumIEEE(ftr))
	out = append(out, ftr...)
	return append(out, 'Y', 'Z')
}

// rawLZMA2 compresses plain into bare LZMA2 chunks.
func rawLZMA2(t testing.TB, plain []byte, dictCap int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := lzma.Writer2Config{DictCap: dictCap, Matcher: lzma.HashTable4}.NewWriter2(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// libXZ compresses plain with the xz library's own writer.
func libXZ(t testing.TB, plain []byte, cfg xz.WriterConfig) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := cfg.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(plain); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkErr fails unless err is an *Error carrying want, and out is nil.
func checkErr(t *testing.T, call string, out []byte, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s = %v, want %v", call, err, want)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s error %T is not *Error", call, err)
	}
	if out != nil {
		t.Fatalf("%s returned %d bytes alongside error %v, want nil", call, len(out), err)
	}
}

func TestRoundTrip(t *testing.T) {
	const any = 0xff
	tests := []struct {
		name  string
		plain []byte
		codec byte
		long  bool
	}{
		{"empty", []byte{}, Stored, false},
		{"nil", nil, Stored, false},
		{"1B", []byte{'x'}, Stored, false},
		{"60B-text", textPayload(60), Stored, false},
		{"200B-text", textPayload(200), any, false},
		{"4KiB-text", textPayload(4 << 10), XZ, false},
		{"1MiB-text", textPayload(1 << 20), XZ, false},
		{"MaxPlain-text", textPayload(MaxPlain), XZ, true},
		{"200B-random", randomPayload(200), Stored, false},
		{"4KiB-random", randomPayload(4 << 10), Stored, false},
		{"1MiB-random", randomPayload(1 << 20), Stored, false},
		{"MaxPlain-random", randomPayload(MaxPlain), Stored, true},
		{"4KiB-zeros", make([]byte, 4<<10), XZ, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.long && testing.Short() {
				t.Skip("MaxPlain round trip skipped in -short mode")
			}
			frame, err := Encode(tc.plain)
			if err != nil {
				t.Fatalf("Encode(%d bytes) = %v", len(tc.plain), err)
			}
			if tc.codec != any && frame[0] != tc.codec {
				t.Errorf("Encode(%d bytes) codec = %d, want %d", len(tc.plain), frame[0], tc.codec)
			}
			if len(frame) > HeaderSize+len(tc.plain) {
				t.Errorf("Encode(%d bytes) frame is %d bytes, longer than stored", len(tc.plain), len(frame))
			}
			if n, err := DeclaredLength(frame); err != nil || n != len(tc.plain) {
				t.Errorf("DeclaredLength = %d, %v, want %d, nil", n, err, len(tc.plain))
			}
			got, err := Decode(frame, 0)
			if err != nil {
				t.Fatalf("Decode(Encode(%d bytes)) = %v", len(tc.plain), err)
			}
			if got == nil || !bytes.Equal(got, tc.plain) {
				t.Fatalf("Decode(Encode(%d bytes)) returned %d different bytes", len(tc.plain), len(got))
			}
			t.Logf("%d -> %d bytes (codec %d)", len(tc.plain), len(frame), frame[0])
		})
	}
}

func TestEncodeTooLarge(t *testing.T) {
	f, err := Encode(make([]byte, MaxPlain+1))
	checkErr(t, "Encode(MaxPlain+1 bytes)", f, err, ErrTooLarge)
}

func TestDictFor(t *testing.T) {
	tests := []struct{ n, want int }{
		{0, 4 << 10}, {1, 4 << 10}, {4 << 10, 4 << 10}, {4<<10 + 1, 6 << 10},
		{6 << 10, 6 << 10}, {6<<10 + 1, 8 << 10}, {10 << 10, 12 << 10},
		{12<<10 + 1, 16 << 10}, {700 << 10, 768 << 10}, {1 << 20, 1 << 20},
		{1<<20 + 1, 1 << 20}, {MaxPlain, 1 << 20},
	}
	valid := map[int64]bool{}
	for b := byte(0); b <= 40; b++ {
		valid[lzma2Dict(b)] = true
	}
	for _, tc := range tests {
		got := dictFor(tc.n)
		if got != tc.want {
			t.Errorf("dictFor(%d) = %d, want %d", tc.n, got, tc.want)
		}
		if !valid[int64(got)] {
			t.Errorf("dictFor(%d) = %d is not a valid LZMA2 dictionary size", tc.n, got)
		}
	}
}

func TestEncodeDictionarySize(t *testing.T) {
	tests := []struct {
		n        int
		wantDict int64
	}{
		{200, 4 << 10},
		{4 << 10, 4 << 10},
		{10 << 10, 12 << 10},
		{100 << 10, 128 << 10},
		{1 << 20, 1 << 20},
		{1<<20 + 1, 1 << 20},
	}
	for _, tc := range tests {
		plain := textPayload(tc.n)
		frame, err := Encode(plain)
		if err != nil {
			t.Fatalf("Encode(%d bytes) = %v", tc.n, err)
		}
		if frame[0] != XZ {
			t.Logf("Encode(%d bytes) stored; nothing to check", tc.n)
			continue
		}
		// The dictionary property is byte 16 of the stream: 12 bytes of
		// stream header, block size, block flags, filter id, props size.
		data := frame[HeaderSize:]
		if data[12+1] != 0 || data[12+2] != 0x21 || data[12+3] != 1 {
			t.Fatalf("Encode(%d bytes) block header % x, want plain LZMA2 filter", tc.n, data[12:24])
		}
		dict := lzma2Dict(data[16])
		if dict != tc.wantDict {
			t.Errorf("Encode(%d bytes) declares dictionary %d, want %d", tc.n, dict, tc.wantDict)
		}
		if tc.n == 10<<10 && (dict > 16<<10 || dict == 8<<20) {
			t.Errorf("Encode(10 KiB) declares dictionary %d, want <= 16 KiB", dict)
		}
		s, err := scanXZ(data, tc.n)
		if err != nil || s.dict != dict {
			t.Errorf("scanXZ(Encode(%d bytes)) = %+v, %v, want dict %d", tc.n, s, err, dict)
		}
	}
}

func TestDecodeTruncated(t *testing.T) {
	frame := mustXZ(t, textPayload(4<<10))
	for n := 0; n < len(frame); n++ {
		got, err := Decode(frame[:n], 0)
		checkErr(t, fmt.Sprintf("Decode(xz frame[:%d] of %d)", n, len(frame)), got, err, ErrTruncated)
	}
	stored := encodeStored(textPayload(100))
	for n := 0; n < len(stored); n++ {
		want := ErrLength
		if n < HeaderSize {
			want = ErrTruncated
		}
		got, err := Decode(stored[:n], 0)
		checkErr(t, fmt.Sprintf("Decode(stored frame[:%d] of %d)", n, len(stored)), got, err, want)
	}
}

func TestDecodeTrailing(t *testing.T) {
	frame := mustXZ(t, textPayload(4<<10))
	stream := frame[HeaderSize:]
	tests := []struct {
		name  string
		extra []byte
	}{
		{"one-byte", []byte{0x42}},
		{"one-zero", []byte{0}},
		{"stream-padding-4", make([]byte, 4)},
		{"stream-padding-8", make([]byte, 8)},
		{"second-stream", stream},
		{"padding-then-stream", append(make([]byte, 4), stream...)},
		{"footer-magic", []byte("YZ")},
	}
	for _, tc := range tests {
		in := append(bytes.Clone(frame), tc.extra...)
		got, err := Decode(in, 0)
		checkErr(t, fmt.Sprintf("Decode(frame + %s)", tc.name), got, err, ErrTrailing)
	}
}

func TestDecodeWrongLength(t *testing.T) {
	plain := textPayload(4 << 10)
	stream := mustXZ(t, plain)[HeaderSize:]
	tests := []struct {
		name     string
		codec    byte
		declared uint32
		data     []byte
		want     error
	}{
		{"xz-smaller-by-1", XZ, 4<<10 - 1, stream, ErrLength},
		{"xz-smaller", XZ, 1000, stream, ErrLength},
		// The 4 KiB payload uses the MinDict dictionary, which any declared
		// length may use, so declaring 0 is a plain length mismatch.
		{"xz-zero", XZ, 0, stream, ErrLength},
		{"xz-larger-by-1", XZ, 4<<10 + 1, stream, ErrLength},
		{"xz-larger", XZ, 1 << 20, stream, ErrLength},
		{"xz-above-MaxPlain", XZ, MaxPlain + 1, stream, ErrTooLarge},
		{"xz-max-uint32", XZ, 1<<32 - 1, stream, ErrTooLarge},
		{"stored-smaller", Stored, uint32(len(plain) - 1), plain, ErrLength},
		{"stored-larger", Stored, uint32(len(plain) + 1), plain, ErrLength},
		{"stored-above-MaxPlain", Stored, MaxPlain + 1, plain, ErrTooLarge},
	}
	for _, tc := range tests {
		got, err := Decode(withHeader(tc.codec, tc.declared, tc.data), 0)
		checkErr(t, fmt.Sprintf("Decode(%s)", tc.name), got, err, tc.want)
	}
}

func TestDecodeCodec(t *testing.T) {
	for _, c := range []byte{2, 3, 0x7f, 0x80, 0xff} {
		frame := withHeader(c, 3, []byte("abc"))
		got, err := Decode(frame, 0)
		checkErr(t, fmt.Sprintf("Decode(codec %d)", c), got, err, ErrCodec)
		if _, err := DeclaredLength(frame); !errors.Is(err, ErrCodec) {
			t.Errorf("DeclaredLength(codec %d) = %v, want %v", c, err, ErrCodec)
		}
	}
}

func TestDecodeMax(t *testing.T) {
	plain := textPayload(4 << 10)
	xzFrame := mustXZ(t, plain)
	storedFrame := encodeStored(plain)
	tests := []struct {
		max  int
		want error
	}{
		{0, nil}, {-1, nil}, {4 << 10, nil}, {MaxPlain, nil}, {MaxPlain + 1, nil}, {1 << 40, nil},
		{4<<10 - 1, ErrTooLarge}, {1, ErrTooLarge},
	}
	for _, tc := range tests {
		for _, frame := range [][]byte{xzFrame, storedFrame} {
			got, err := Decode(frame, tc.max)
			call := fmt.Sprintf("Decode(codec %d, max %d)", frame[0], tc.max)
			if tc.want != nil {
				checkErr(t, call, got, err, tc.want)
				continue
			}
			if err != nil || !bytes.Equal(got, plain) {
				t.Errorf("%s = %d bytes, %v, want the 4 KiB payload", call, len(got), err)
			}
		}
	}
	// With max <= 0 the cap is MaxPlain, not "unlimited".
	big := withHeader(Stored, MaxPlain+1, nil)
	got, err := Decode(big, 0)
	checkErr(t, "Decode(declared MaxPlain+1, max 0)", got, err, ErrTooLarge)
}

func TestDeclaredLength(t *testing.T) {
	tests := []struct {
		frame []byte
		want  int
		err   error
	}{
		{nil, 0, ErrTruncated},
		{[]byte{XZ, 0, 0, 1}, 0, ErrTruncated},
		{withHeader(Stored, 0, nil), 0, nil},
		{withHeader(XZ, 12345, nil), 12345, nil},
		{withHeader(Stored, MaxPlain, nil), MaxPlain, nil},
		{withHeader(Stored, MaxPlain+1, nil), 0, ErrTooLarge},
		{withHeader(9, 1, nil), 0, ErrCodec},
	}
	for _, tc := range tests {
		got, err := DeclaredLength(tc.frame)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("DeclaredLength(%q) = %d, %v, want %v", tc.frame, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("DeclaredLength(%q) = %d, %v, want %d", tc.frame, got, err, tc.want)
		}
	}
}

// TestDecodeStreamShapes covers every structural rule of the xz profile with
// hand-built streams, valid ones included so that the builder is known good.
func TestDecodeStreamShapes(t *testing.T) {
	plain := textPayload(4 << 10)
	chunks := rawLZMA2(t, plain, 4<<10)
	good := xzSpec{check: xz.CRC32, lzma2: chunks, plain: plain}
	declared := uint32(len(plain))

	mutate := func(f func(s *xzSpec)) []byte { s := good; f(&s); return s.build() }
	patch := func(b []byte, off int, v byte) []byte { b = bytes.Clone(b); b[off] ^= v; return b }
	goodStream := good.build()
	dataStart := 12 + 12

	// Props byte of the first chunk: control, 2 bytes unpacked, 2 packed.
	badProps := bytes.Clone(chunks)
	if badProps[0] < 0xe0 {
		t.Fatalf("first LZMA2 chunk control %#x, expected a reset with properties", badProps[0])
	}
	badProps[5] = 4*9 + 1 // lc 4 + lp 1

	multiBlock := libXZ(t, plain, xz.WriterConfig{DictCap: 4 << 10, CheckSum: xz.CRC32, BlockSize: 1024})
	emptyBlock := libXZ(t, nil, xz.WriterConfig{DictCap: 4 << 10, CheckSum: xz.CRC32})
	// Zero blocks: header, an index with no records, footer.
	noBlock := append([]byte{}, goodStream[:12]...)
	index := []byte{0, 0, 0, 0}
	noBlock = append(noBlock, index...)
	noBlock = binary.LittleEndian.AppendUint32(noBlock, crc32.ChecksumIEEE(index))
	backward := []byte{1, 0, 0, 0, 0, xz.CRC32}
	noBlock = binary.LittleEndian.AppendUint32(noBlock, crc32.ChecksumIEEE(backward))
	noBlock = append(append(noBlock, backward...), 'Y', 'Z')

	tests := []struct {
		name     string
		stream   []byte
		declared uint32
		want     error // nil: must decode to plain
	}{
		{"built-valid", goodStream, declared, nil},
		{"size-fields", mutate(func(s *xzSpec) { s.sizes = true }), declared, nil},
		{"dict-6KiB-for-1B", xzSpec{check: xz.CRC32, dictByte: 1, lzma2: rawLZMA2(t, plain[:1], 4<<10), plain: plain[:1]}.build(), 1, ErrDictionary},
		{"dict-8MiB-library-default", libXZ(t, plain, xz.WriterConfig{CheckSum: xz.CRC32}), declared, ErrDictionary},
		{"dict-1MiB-for-4KiB", mutate(func(s *xzSpec) { s.dictByte = 18 }), declared, ErrDictionary},
		{"dict-4GiB", mutate(func(s *xzSpec) { s.dictByte = 40 }), declared, ErrDictionary},
		{"dict-byte-41", mutate(func(s *xzSpec) { s.dictByte = 41 }), declared, ErrDictionary},
		{"dict-reserved-bits", mutate(func(s *xzSpec) { s.dictByte = 0x40 }), declared, ErrDictionary},
		{"check-crc64", mutate(func(s *xzSpec) { s.check = xz.CRC64 }), declared, ErrDictionary},
		{"check-none", mutate(func(s *xzSpec) { s.check = xz.None }), declared, ErrDictionary},
		{"two-filters", mutate(func(s *xzSpec) { s.blockFlags = 1; s.filters = []byte{0x03, 0x00, 0x21, 0x01, 0x00} }), declared, ErrDictionary},
		{"filter-x86", mutate(func(s *xzSpec) { s.filters = []byte{0x04, 0x00} }), declared, ErrDictionary},
		{"filter-lzma1-id", mutate(func(s *xzSpec) { s.filters = []byte{0x01, 0x01, 0x00} }), declared, ErrDictionary},
		{"props-size-2", mutate(func(s *xzSpec) { s.filters = []byte{0x21, 0x02, 0x00, 0x00} }), declared, ErrDictionary},
		{"block-reserved-flag", mutate(func(s *xzSpec) { s.blockFlags = 0x04 }), declared, ErrDictionary},
		{"block-header-padding", mutate(func(s *xzSpec) { s.filters = []byte{0x21, 0x01, 0x00, 0x07} }), declared, ErrDictionary},
		{"multi-block", multiBlock, declared, ErrDictionary},
		{"library-empty-block", emptyBlock, 0, nil},
		{"no-block", noBlock, 0, ErrDictionary},
		{"lc-plus-lp-5", mutate(func(s *xzSpec) { s.lzma2 = badProps }), declared, ErrCorrupt},
		{"bad-magic", patch(goodStream, 0, 0x01), declared, ErrCorrupt},
		{"stream-header-crc", patch(goodStream, 9, 0x01), declared, ErrCorrupt},
		{"block-header-crc", patch(goodStream, 12+9, 0x01), declared, ErrCorrupt},
		{"lzma-payload-bit", patch(goodStream, dataStart+40, 0x10), declared, ErrCorrupt},
		{"block-check", patch(goodStream, len(goodStream)-12-8-1, 0x01), declared, ErrCorrupt},
		{"index-crc", patch(goodStream, len(goodStream)-12-1, 0x01), declared, ErrCorrupt},
		{"footer-crc", patch(goodStream, len(goodStream)-12, 0x01), declared, ErrCorrupt},
		{"footer-magic", patch(goodStream, len(goodStream)-1, 0x01), declared, ErrCorrupt},
		{"lzma2-control-byte", patch(goodStream, dataStart, 0x60), declared, ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(withHeader(XZ, tc.declared, tc.stream), 0)
			if tc.want == nil {
				if err != nil || !bytes.Equal(got, plain[:tc.declared]) {
					t.Fatalf("Decode(%s) = %d bytes, %v, want the payload", tc.name, len(got), err)
				}
				return
			}
			checkErr(t, "Decode("+tc.name+")", got, err, tc.want)
		})
	}
}

// TestStateResetBound: every state-resetting LZMA2 chunk makes the library
// allocate new probability tables, so a stream of tiny resetting chunks is an
// allocation amplifier even with a small dictionary.
func TestStateResetBound(t *testing.T) {
	// Each chunk: LZMA, state reset + props, 1 plain byte. Its payload is
	// junk; scanXZ must refuse the shape before any decoding.
	const n = 4000
	var chunks []byte
	for i := 0; i < n; i++ {
		chunks = append(chunks, 0xc0, 0, 0, 0, 4, 0x5d, 0, 0, 0, 0, 0)
	}
	chunks = append(chunks, 0)
	stream := xzSpec{check: xz.CRC32, lzma2: chunks, plain: make([]byte, n)}.build()
	got, err := Decode(withHeader(XZ, n, stream), 0)
	checkErr(t, "Decode(4000 resetting chunks)", got, err, ErrCorrupt)
}

func TestErrorType(t *testing.T) {
	_, err := Decode([]byte{1, 2}, 0)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Decode(short) error %T, want *Error", err)
	}
	if e.Err != ErrTruncated || e.Unwrap() != ErrTruncated {
		t.Errorf("Decode(short) Err = %v, want %v", e.Err, ErrTruncated)
	}
	if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
		t.Errorf("Decode(short) message %q, want one non-empty line", msg)
	}
	if (&Error{}).Error() == "" {
		t.Errorf("zero Error has empty message")
	}
	for i, a := range sentinels {
		for j, b := range sentinels {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
}

func TestDecodeDoesNotAlias(t *testing.T) {
	frame := encodeStored([]byte("command"))
	got, err := Decode(frame, 0)
	if err != nil {
		t.Fatal(err)
	}
	got[0] = 'X'
	if frame[HeaderSize] != 'c' {
		t.Errorf("Decode result aliases its input")
	}
}

// memDelta runs f after a GC and reports how much it allocated in total and
// how much the in-use heap grew. Nothing else in the package runs
// concurrently (no t.Parallel), so the numbers are f's own.
func memDelta(f func()) (total, inuse int64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc), int64(after.HeapInuse) - int64(before.HeapInuse)
}

func TestEncodeDecodeBudget4KiB(t *testing.T) {
	plain := textPayload(4 << 10)
	Encode(plain) // warm up lazily built tables (CRC, ...)
	var err error
	total, _ := memDelta(func() {
		var f []byte
		if f, err = Encode(plain); err == nil {
			_, err = Decode(f, 0)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Encode+Decode of 4 KiB allocated %d bytes", total)
	if total > 3<<19 {
		t.Errorf("Encode+Decode of 4 KiB allocated %d bytes, want < 1.5 MiB", total)
	}
}

const zeroBombFile = "testdata/bomb-zeros-64MiB.xz"

// zeroBomb returns 64 MiB of zeros compressed by the xz library's own writer
// with a 1 MiB dictionary: about 10 KB that inflate 6000-fold. Building it
// takes 16 s under the race detector, so it is checked in and rebuilt only
// with -update.
func zeroBomb(t *testing.T) []byte {
	t.Helper()
	if *update {
		var b bytes.Buffer
		w, err := xz.WriterConfig{DictCap: 1 << 20, CheckSum: xz.CRC32, Matcher: lzma.HashTable4}.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		zeros := make([]byte, 1<<20)
		for i := 0; i < 64; i++ {
			if _, err := w.Write(zeros); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(zeroBombFile, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bomb, err := os.ReadFile(zeroBombFile)
	if err != nil {
		t.Fatalf("%v (run go test ./compress/ -run TestThreat24XZBomb -update)", err)
	}
	// The file is a flawless xz stream of exactly 64 MiB by every rule
	// Decode applies, so only the length check can stop it.
	if _, err := scanXZ(bomb, 64<<20); err != nil {
		t.Fatalf("scanXZ(%s, 64 MiB) = %v, want a valid 64 MiB stream", zeroBombFile, err)
	}
	return bomb
}

// TestThreat24XZBomb is row 24 of the threat list: an xz bomb from an
// authenticated peer; a declared length that does not match stops at the cap;
// peak memory stays below the cap plus a small margin.
func TestThreat24XZBomb(t *testing.T) {
	plain := textPayload(4 << 10)

	t.Run("a-dictionary-4GiB", func(t *testing.T) {
		// Dictionary byte 40 declares 4 GiB, which ulikunitz/xz would
		// allocate whatever ReaderConfig.DictCap says.
		stream := xzSpec{check: xz.CRC32, dictByte: 40, lzma2: rawLZMA2(t, plain, 4<<10), plain: plain}.build()
		frame := withHeader(XZ, uint32(len(plain)), stream)
		var got []byte
		var err error
		total, inuse := memDelta(func() { got, err = Decode(frame, 0) })
		checkErr(t, "Decode(4 GiB dictionary)", got, err, ErrDictionary)
		t.Logf("allocated %d bytes, heap in use grew %d", total, inuse)
		if total >= 4<<20 || inuse >= 4<<20 {
			t.Errorf("Decode(4 GiB dictionary) allocated %d, heap grew %d, want < 4 MiB", total, inuse)
		}
	})

	t.Run("b-zeros-64MiB-declared-1MiB", func(t *testing.T) {
		bomb := zeroBomb(t)
		t.Logf("bomb: 64 MiB of zeros in %d bytes", len(bomb))
		const declared = 1 << 20
		const budget = 8 << 20 // cap 1 MiB + dictionary 1 MiB + margin
		var got []byte
		var err error
		total, inuse := memDelta(func() { got, err = Decode(withHeader(XZ, declared, bomb), 0) })
		checkErr(t, "Decode(64 MiB bomb, declared 1 MiB)", got, err, ErrLength)
		t.Logf("Decode: allocated %d bytes, heap in use grew %d", total, inuse)
		if total >= budget || inuse >= budget {
			t.Errorf("Decode(bomb) allocated %d, heap grew %d, want < %d", total, inuse, budget)
		}
		// The same bomb straight into the library path, as if scanXZ had
		// missed it: the output cap must still stop it.
		total, inuse = memDelta(func() { got, err = inflate(bomb, declared) })
		checkErr(t, "inflate(64 MiB bomb, declared 1 MiB)", got, err, ErrLength)
		t.Logf("inflate: allocated %d bytes, heap in use grew %d", total, inuse)
		if total >= budget || inuse >= budget {
			t.Errorf("inflate(bomb) allocated %d, heap grew %d, want < %d", total, inuse, budget)
		}
	})

	stream := mustXZ(t, plain)[HeaderSize:]
	for _, tc := range []struct {
		name     string
		declared int
	}{
		{"c-declared-smaller", len(plain) - 100},
		{"d-declared-larger", len(plain) + 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(withHeader(XZ, uint32(tc.declared), stream), 0)
			checkErr(t, fmt.Sprintf("Decode(declared %d of %d)", tc.declared, len(plain)), got, err, ErrLength)
			got, err = inflate(stream, tc.declared)
			checkErr(t, fmt.Sprintf("inflate(declared %d of %d)", tc.declared, len(plain)), got, err, ErrLength)
		})
	}
}
