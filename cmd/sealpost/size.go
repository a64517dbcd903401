package main

import (
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// errSize: a size flag's value is not a size.
var errSize = errors.New("give a whole number of bytes, or one with K, M, G or T (powers of 1024), like 10G")

// parseSize reads a byte count as the size flags take it: digits, optionally followed by K, M, G
// or T (powers of 1024; a trailing B or iB is allowed: 10G, 10GB, 10GiB). It refuses negative
// numbers, fractions and values that do not fit in an int64.
func parseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.ToUpper(strings.TrimSpace(s)))
	if m == nil {
		return 0, errSize
	}
	shift := map[string]int{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m[2]]
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > math.MaxInt64>>shift {
		return 0, errSize
	}
	return n << shift, nil
}

var sizeRE = regexp.MustCompile(`^([0-9]+)(?:([KMGT])(?:I?B)?|B)?$`)

// formatSize writes n as parseSize reads it, in the largest unit that divides it.
func formatSize(n int64) string {
	for _, u := range []struct {
		shift int
		name  string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n > 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// sizeFlag is a flag.Value of a byte count read by parseSize.
type sizeFlag struct{ n *int64 }

func (f sizeFlag) String() string {
	if f.n == nil || *f.n == 0 {
		return ""
	}
	return formatSize(*f.n)
}

func (f sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*f.n = n
	return nil
}
