package compress

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/ulikunitz/xz"
)

var update = flag.Bool("update", false, "rewrite testdata/seeds (TestSeedFrames) and testdata/*.vec (TestFrameVectors)")

const seedDir = "testdata/seeds"

// seedFrames are the checked-in starting points for FuzzDecode, each with the
// outcome Decode must give it (nil: decodes).
func seedFrames(t testing.TB) []struct {
	name  string
	frame []byte
	want  error
} {
	small := []byte("echo hello from sealpost; uptime; df -h /var/lib/sealpost\n")
	text := textPayload(4 << 10)
	xzSmall, ok := encodeXZ(textPayload(300), 1<<20)
	if !ok {
		t.Fatal("encodeXZ(300 bytes) failed")
	}
	xz4k := mustXZ(t, text)
	bomb := withHeader(XZ, uint32(len(text)),
		xzSpec{check: xz.CRC32, dictByte: 40, lzma2: rawLZMA2(t, text, 4<<10), plain: text}.build())
	sized := withHeader(XZ, uint32(len(text)),
		xzSpec{check: xz.CRC32, sizes: true, lzma2: rawLZMA2(t, text, 4<<10), plain: text}.build())
	return []struct {
		name  string
		frame []byte
		want  error
	}{
		{"stored-empty.bin", encodeStored(nil), nil},
		{"stored-small.bin", encodeStored(small), nil},
		{"xz-300B.bin", xzSmall, nil},
		{"xz-4KiB.bin", xz4k, nil},
		{"xz-4KiB-size-fields.bin", sized, nil},
		{"xz-dict-4GiB.bin", bomb, ErrDictionary},
		{"xz-truncated-header.bin", xz4k[:HeaderSize+20], ErrTruncated},
		{"xz-truncated-data.bin", xz4k[:len(xz4k)/2], ErrTruncated},
		{"xz-truncated-footer.bin", xz4k[:len(xz4k)-3], ErrTruncated},
		{"xz-trailing-padding.bin", append(bytes.Clone(xz4k), 0, 0, 0, 0), ErrTrailing},
		{"xz-declared-short.bin", withHeader(XZ, 100, xz4k[HeaderSize:]), ErrLength},
	}
}

// TestSeedFrames checks that every seed file still gives its outcome; with
// -update it rewrites them first.
func TestSeedFrames(t *testing.T) {
	seeds := seedFrames(t)
	if *update {
		if err := os.MkdirAll(seedDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range seeds {
			if err := os.WriteFile(filepath.Join(seedDir, s.name), s.frame, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range seeds {
		frame, err := os.ReadFile(filepath.Join(seedDir, s.name))
		if err != nil {
			t.Fatalf("seed %s: %v (run go test -run TestSeedFrames -update ./compress/)", s.name, err)
		}
		got, err := Decode(frame, 0)
		if !errors.Is(err, s.want) || (s.want == nil && got == nil) {
			t.Errorf("Decode(%s) = %d bytes, %v, want %v", s.name, len(got), err, s.want)
		}
	}
}

func addSeedFiles(f *testing.F) {
	entries, err := os.ReadDir(seedDir)
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(seedDir, e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecode(f *testing.F) {
	addSeedFiles(f)
	if bomb, err := os.ReadFile(zeroBombFile); err == nil {
		f.Add(withHeader(XZ, 1<<20, bomb))
	}
	f.Add([]byte{})
	f.Add([]byte{XZ})
	f.Add([]byte{XZ, 0, 0, 0, 0})
	f.Add([]byte{Stored, 0, 0, 0, 3, 'a', 'b', 'c'})
	f.Add(withHeader(XZ, 0, xzMagic))
	f.Add(withHeader(7, 1, []byte{1}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		out, err := Decode(frame, 0)
		if err != nil {
			if out != nil {
				t.Fatalf("Decode(%q) = %d bytes and error %v, want nil bytes", frame, len(out), err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode(%q) error %T, want *Error", frame, err)
			}
			known := false
			for _, s := range sentinels {
				known = known || e.Err == s
			}
			if !known {
				t.Fatalf("Decode(%q) error %v carries no sentinel", frame, err)
			}
			if e.panicked {
				t.Fatalf("Decode(%q): xz library panicked: %v", frame, err)
			}
			return
		}
		if out == nil {
			t.Fatalf("Decode(%q) = nil, nil, want non-nil bytes on success", frame)
		}
		n, err := DeclaredLength(frame)
		if err != nil || n != len(out) {
			t.Fatalf("Decode(%q) = %d bytes, DeclaredLength = %d, %v", frame, len(out), n, err)
		}
		again, err := Encode(out)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) = %v", frame, err)
		}
		back, err := Decode(again, 0)
		if err != nil || !bytes.Equal(back, out) {
			t.Fatalf("Decode(Encode(Decode(%q))) = %d bytes, %v, want the same %d bytes", frame, len(back), err, len(out))
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("a"))
	f.Add(textPayload(61))
	f.Add(textPayload(200))
	f.Add(textPayload(5000))
	f.Add(randomPayload(300))
	f.Add(make([]byte, 1000))
	f.Fuzz(func(t *testing.T, plain []byte) {
		frame, err := Encode(plain)
		if err != nil {
			t.Fatalf("Encode(%q) = %v", plain, err)
		}
		if len(frame) > HeaderSize+len(plain) {
			t.Fatalf("Encode(%q) = %d bytes, longer than stored", plain, len(frame))
		}
		if n, err := DeclaredLength(frame); err != nil || n != len(plain) {
			t.Fatalf("DeclaredLength(Encode(%q)) = %d, %v, want %d", plain, n, err, len(plain))
		}
		out, err := Decode(frame, len(plain))
		if err != nil || !bytes.Equal(out, plain) {
			t.Fatalf("Decode(Encode(%q)) = %q, %v", plain, out, err)
		}
		if len(plain) > 1 { // a cap of 0 means MaxPlain
			out, err := Decode(frame, len(plain)-1)
			if !errors.Is(err, ErrTooLarge) || out != nil {
				t.Fatalf("Decode(Encode(%q), %d) = %q, %v, want %v", plain, len(plain)-1, out, err, ErrTooLarge)
			}
		}
	})
}

// lzma2Unpacked adds up the unpacked sizes in a sequence of LZMA2 chunk
// headers, or reports false if the sequence is malformed.
func lzma2Unpacked(chunks []byte) (int, bool) {
	total := 0
	for i := 0; i < len(chunks); {
		c := chunks[i]
		switch {
		case c == 0:
			return total, i == len(chunks)-1
		case c == 1 || c == 2:
			if i+3 > len(chunks) {
				return 0, false
			}
			n := int(binary.BigEndian.Uint16(chunks[i+1:])) + 1
			total += n
			i += 3 + n
		case c >= 0x80:
			h := 5
			if c >= 0xc0 {
				h = 6
			}
			if i+h > len(chunks) {
				return 0, false
			}
			total += (int(c&0x1f)<<16 | int(binary.BigEndian.Uint16(chunks[i+1:]))) + 1
			i += h + int(binary.BigEndian.Uint16(chunks[i+3:])) + 1
		default:
			return 0, false
		}
	}
	return 0, false
}

// FuzzDecodeLZMA2 wraps fuzzed LZMA2 chunks in a stream whose headers,
// index and footer are all valid, so that mutations reach the chunk walker
// and the xz library instead of dying on a header CRC.
func FuzzDecodeLZMA2(f *testing.F) {
	for _, p := range [][]byte{textPayload(200), textPayload(4 << 10), make([]byte, 3000), randomPayload(100)} {
		f.Add(rawLZMA2(f, p, 4<<10), byte(0), false)
	}
	f.Add([]byte{1, 0, 2, 'a', 'b', 'c', 0}, byte(0), true)
	f.Add([]byte{0}, byte(0), false)
	f.Fuzz(func(t *testing.T, chunks []byte, dictByte byte, sizes bool) {
		n, ok := lzma2Unpacked(chunks)
		if !ok || n > 1<<20 {
			return
		}
		stream := xzSpec{check: xz.CRC32, dictByte: dictByte % 42, sizes: sizes, lzma2: chunks, plain: make([]byte, n)}.build()
		frame := withHeader(XZ, uint32(n), stream)
		out, err := Decode(frame, 0)
		if err == nil {
			if len(out) != n {
				t.Fatalf("Decode(%q) = %d bytes, declared %d", frame, len(out), n)
			}
			return
		}
		var e *Error
		if out != nil || !errors.As(err, &e) || e.panicked {
			t.Fatalf("Decode(%q) = %d bytes, %v (%T)", frame, len(out), err, err)
		}
		if errors.Is(err, ErrTrailing) || errors.Is(err, ErrTruncated) {
			t.Fatalf("Decode(%q) = %v for a complete, well-framed stream", frame, err)
		}
	})
}
