package session

import (
	"crypto/rand"
	"testing"
)

var benchSizes = []struct {
	name string
	n    int
}{{"200B", 200}, {"4KiB", 4 << 10}, {"1MiB", 1 << 20}}

func benchHeader() Header {
	h := Header{Type: TypeCommand, Seq: 1, Created: 1, NotAfter: 2}
	h.Sender[0], h.Recipient[0], h.Session[0], h.Epoch[0], h.Command[0] = 1, 2, 3, 4, 5
	return h
}

// BenchmarkSeal measures the framing and sealing of a command payload: padding, per-message key
// derivation and AES-256-GCM. Compare with BenchmarkRawGCM at the same size.
func BenchmarkSeal(b *testing.B) {
	var secret Secret
	share := make([]byte, 32)
	for _, s := range benchSizes {
		payload := make([]byte, s.n)
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				h := benchHeader()
				buf, _ := encodeInner(share, payload)
				if _, err := sealInto(buf, &h, &secret, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOpen measures Parse, the AEAD and the padded-body decoder.
func BenchmarkOpen(b *testing.B) {
	var secret Secret
	share := make([]byte, 32)
	for _, s := range benchSizes {
		h := benchHeader()
		buf, _ := encodeInner(share, make([]byte, s.n))
		raw, err := sealInto(buf, &h, &secret, rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				p, err := Parse(raw)
				if err != nil {
					b.Fatal(err)
				}
				plain, err := open(p, raw, &secret)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := decodeInner(plain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// paddedSize is the number of bytes the cipher encrypts for a payload of n bytes: the share, the
// length and the payload, padded to their bucket. The raw benchmarks encrypt that many, so that
// they compare the cipher with sealing on the same bytes (for 1 MiB the bucket is 1,088 KiB, and
// a fresh buffer of that size costs the allocator visibly more than one of 1,024 KiB).
func paddedSize(n int) int { return bucket(innerHeaderSize + n) }

// BenchmarkRawGCM is the floor: AES-256-GCM over the same number of bytes (the padded plaintext)
// into a buffer allocated once, with one key set up once.
func BenchmarkRawGCM(b *testing.B) {
	var key Secret
	g := newGCM(&key)
	for _, s := range benchSizes {
		src := make([]byte, paddedSize(s.n))
		dst := make([]byte, 0, len(src)+16)
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				dst = g.Seal(dst[:0], zeroNonce[:], src, nil)
			}
		})
	}
}

// BenchmarkRawGCMAlloc is AES-256-GCM the way most callers use it: Seal(nil, ...), which allocates
// the output on every call; over the padded plaintext's size, like BenchmarkRawGCM.
func BenchmarkRawGCMAlloc(b *testing.B) {
	var key Secret
	g := newGCM(&key)
	for _, s := range benchSizes {
		src := make([]byte, paddedSize(s.n))
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				_ = g.Seal(nil, zeroNonce[:], src, nil)
			}
		})
	}
}

// BenchmarkSealPrepared is the sealing step alone, on a package buffer already laid out (header
// slot, padded plaintext, tag room): per-message key derivation, header encoding and AES-256-GCM
// in place. The difference to BenchmarkSeal is the cost of making the new buffer.
func BenchmarkSealPrepared(b *testing.B) {
	var secret Secret
	share := make([]byte, 32)
	for _, s := range benchSizes {
		buf, _ := encodeInner(share, make([]byte, s.n))
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(s.n))
			b.ReportAllocs()
			for b.Loop() {
				h := benchHeader()
				if _, err := sealInto(buf, &h, &secret, rand.Reader); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
