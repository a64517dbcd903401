package main

import (
	"errors"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"123", 123}, {"10K", 10 << 10}, {"10k", 10 << 10}, {"1M", 1 << 20}, {"10G", 10 << 30},
		{"10GB", 10 << 30}, {"10GiB", 10 << 30}, {"2T", 2 << 40}, {"512B", 512}, {" 3M ", 3 << 20},
		{"8388607T", 8388607 << 40},
	} {
		got, err := parseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
		if err == nil && got > 0 {
			if back, err := parseSize(formatSize(got)); err != nil || back != got {
				t.Errorf("parseSize(formatSize(%d)) = %d, %v", got, back, err)
			}
		}
	}
	for _, in := range []string{"", "-1", "1.5G", "G", "10X", "10iB", "8388608T", "99999999999999999999", "1 G B", "0x10"} {
		if got, err := parseSize(in); !errors.Is(err, errSize) || got != 0 {
			t.Errorf("parseSize(%q) = %d, %v; want errSize", in, got, err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "10G", "1KiB", "7T", "-1", "1.5M"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("parseSize(%q) = %d with an error", s, n)
			}
			return
		}
		if n < 0 {
			t.Fatalf("parseSize(%q) = %d", s, n)
		}
		if back, err := parseSize(formatSize(n)); err != nil || back != n {
			t.Fatalf("parseSize(formatSize(%d)) = %d, %v", n, back, err)
		}
	})
}
