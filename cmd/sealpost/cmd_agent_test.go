package main

import (
	"testing"
	"time"
)

func TestKeepFlag(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		show string
	}{
		{"30d", 30 * 24 * time.Hour, "30d"},
		{"1d", 24 * time.Hour, "1d"},
		{"12h", 12 * time.Hour, "12h0m0s"},
		{"48h", 48 * time.Hour, "2d"},
		{"forever", -1, "forever"},
	} {
		var k keepFlag
		if err := k.Set(c.in); err != nil || time.Duration(k) != c.want || k.String() != c.show {
			t.Errorf("Set(%q) = %v, %v (shown %q); want %v, shown %q", c.in, time.Duration(k), err, k.String(), c.want, c.show)
		}
	}
	for _, bad := range []string{"", "0", "0d", "-1h", "d", "3x", "1.5d", "99999d", "never"} {
		var k keepFlag
		if err := k.Set(bad); err == nil {
			t.Errorf("Set(%q) = %v, want an error", bad, time.Duration(k))
		}
	}
}
