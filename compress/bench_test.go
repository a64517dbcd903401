package compress

import (
	"bytes"
	"testing"

	"github.com/ulikunitz/xz"
)

var benchSizes = []struct {
	name string
	n    int
}{
	{"200B", 200},
	{"4KiB", 4 << 10},
	{"1MiB", 1 << 20},
}

// BenchmarkEncode: "xz" is Encode as callers use it (for 200 B of log text
// it ends up stored: xz does not win at that size); "stored" is the stored
// path alone, for comparison.
func BenchmarkEncode(b *testing.B) {
	for _, s := range benchSizes {
		plain := textPayload(s.n)
		b.Run("xz/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				if _, err := Encode(plain); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("stored/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			for b.Loop() {
				encodeStored(plain)
			}
		})
	}
}

// BenchmarkDecode decodes the frames BenchmarkEncode produces; "xz" frames
// are forced through xz even where Encode would store, to show the cost of
// the xz path itself.
func BenchmarkDecode(b *testing.B) {
	for _, s := range benchSizes {
		plain := textPayload(s.n)
		xzFrame, ok := encodeXZ(plain, 1<<30)
		if !ok {
			b.Fatalf("encodeXZ(%d bytes) failed", s.n)
		}
		storedFrame := encodeStored(plain)
		for _, c := range []struct {
			name  string
			frame []byte
		}{{"xz", xzFrame}, {"stored", storedFrame}} {
			b.Run(c.name+"/"+s.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(plain)))
				for b.Loop() {
					if _, err := Decode(c.frame, 0); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkRoundTrip4KiB is the budget the package is tuned for: Encode plus
// Decode of a 4 KiB command package.
func BenchmarkRoundTrip4KiB(b *testing.B) {
	plain := textPayload(4 << 10)
	b.ReportAllocs()
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		f, err := Encode(plain)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Decode(f, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDefaultWriter4KiB is what the library costs with its defaults
// (8 MiB dictionary, CRC64), to show why Encode sizes everything to the
// payload.
func BenchmarkDefaultWriter4KiB(b *testing.B) {
	plain := textPayload(4 << 10)
	b.ReportAllocs()
	b.SetBytes(int64(len(plain)))
	for b.Loop() {
		var buf bytes.Buffer
		w, err := xz.NewWriter(&buf)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(plain); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
