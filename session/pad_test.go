package session

import "testing"

// TestBucket: powers of two from 256 bytes to 64 KiB, then multiples of 16 KiB
// (docs/PROTOCOL.md section 9), and isBucket agrees.
func TestBucket(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{0, 256}, {256, 256}, {257, 512}, {40000, 65536}, {65536, 65536},
		{65537, 81920}, {81920, 81920}, {81921, 98304},
		{chunkHeaderSize + MaxChunkPayload, 1_064_960},
		{innerHeaderSize + MaxPayload, 16_793_600},
	} {
		if got := bucket(c.n); got != c.want {
			t.Errorf("bucket(%d) = %d, want %d", c.n, got, c.want)
		}
		if !isBucket(c.want) {
			t.Errorf("isBucket(%d) = false", c.want)
		}
	}
	for _, n := range []int{255, 300, 65536 + 8192, 70000} {
		if isBucket(n) {
			t.Errorf("isBucket(%d) = true", n)
		}
	}
}
