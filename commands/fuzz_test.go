package commands

// Fuzz targets for the two payload decoders, seeded from testdata/vectors (and any crashers
// kept under testdata/fuzz/), for ParseOutcome, and, at the end, for sysinfo's /proc parsers. They assert: no panic; an error is a *DecodeError and comes with
// the zero value; a success encodes, and the encoding decodes to an equal value (JSON allows
// several spellings of one value, so the bytes may differ). Run with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzDecodeRequest$' -fuzztime 60s ./commands/

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// maxSeed bounds the vectors used as seeds. The fuzzer minimizes every new-coverage input with
// a pass quadratic in its length (up to -fuzzminimizetime, 60 s by default); mutants of the
// kilobyte-sized limit vectors stalled whole runs that way. TestVectors still runs them all.
const maxSeed = 512

func addVectorSeeds(f *testing.F, typ string) {
	n := 0
	for _, v := range loadVectors(f) {
		if v.typ == typ && len(v.payload) <= maxSeed {
			f.Add(v.payload)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no %s vectors under testdata/vectors", typ)
	}
}

func fuzzDecode(t *testing.T, typ string, b []byte) {
	value, err, stable := decodeVector(typ, b)
	var de *DecodeError
	switch {
	case err != nil && !errors.As(err, &de):
		t.Fatalf("decode %s %q = %v, want a *DecodeError", typ, b, err)
	case !stable && err != nil:
		t.Fatalf("decode %s %q = %+v, %v: an error with a non-zero value, or a re-encoding that fails", typ, b, value, err)
	case !stable:
		t.Fatalf("decode %s %q = %+v: does not survive encode and decode", typ, b, value)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	addVectorSeeds(f, "request")
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, "request", b) })
}

func FuzzDecodeResult(f *testing.F) {
	addVectorSeeds(f, "result")
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, "result", b) })
}

// FuzzParseOutcome: no panic; a token parses exactly when it is one of the outcomes' own
// (String gives it back, and MarshalText the same bytes); anything else gives OutcomeUnknown
// and an *UnknownOutcomeError holding at most 64 bytes of it.
func FuzzParseOutcome(f *testing.F) {
	for o := range numOutcomes {
		f.Add(o.String())
	}
	for _, s := range []string{"", "Exited", "timed_out", "oom-killed", "exited\x00", "\xff", strings.Repeat("x", 100)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseOutcome(s)
		if err != nil {
			var ue *UnknownOutcomeError
			if o != OutcomeUnknown || !errors.As(err, &ue) || len(ue.Token) > maxOutcomeToken {
				t.Fatalf("ParseOutcome(%q) = %v, %v: want OutcomeUnknown and a short *UnknownOutcomeError", s, o, err)
			}
			return
		}
		b, merr := o.MarshalText()
		if o >= numOutcomes || o.String() != s || string(b) != s || merr != nil {
			t.Fatalf("ParseOutcome(%q) = %v, which marshals to %q, %v", s, o, b, merr)
		}
	})
}

// The /proc parsers of sysinfo. The kernel writes those files, but sysinfo must not panic or
// report nonsense whatever they hold (another kernel's format, a container's fake /proc). Seeds
// are samples of the real files; the targets assert: no panic, and what each parser promises of
// its result.

var uptimeSeeds = []string{
	"350735.47 234388.90\n", "0.00 0.00\n", "5.12 18.40\n", "12345678.99 98765432.10\n", "", " \n", "abc 1",
	"-5 1", "-0 0", "NaN 1", "+Inf 1", "1e300 1", "1e9 0", "1000000000.001 0", "0x1p4 0", "1_0 0", "0.004999 0",
}

// FuzzParseUptime: on success, the first field is a number of seconds in [0, 1e9] and the result
// is it, rounded to 10 ms; on failure, zero.
func FuzzParseUptime(f *testing.F) {
	for _, s := range uptimeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseUptime(s)
		if !ok {
			if d != 0 {
				t.Fatalf("parseUptime(%q) = %v, false: want 0 with false", s, d)
			}
			return
		}
		secs, err := strconv.ParseFloat(strings.Fields(s)[0], 64)
		if err != nil || secs < 0 || secs > 1e9 || d < 0 || d > 1e9*time.Second || d%(10*time.Millisecond) != 0 {
			t.Fatalf("parseUptime(%q) = %v, true: want a multiple of 10ms in [0, 1e9 s]", s, d)
		}
		if diff := math.Abs(float64(d) - secs*float64(time.Second)); diff > float64(5*time.Millisecond+time.Microsecond) {
			t.Fatalf("parseUptime(%q) = %v, %v away from %v s", s, d, time.Duration(diff), secs)
		}
	})
}

// FuzzParseLoadavg: on success, the first three fields are the loads, each in [0, 1e9]; on
// failure, all zero.
func FuzzParseLoadavg(f *testing.F) {
	for _, s := range []string{
		"0.12 0.08 0.01 1/123 4567\n", "3.52 2.87 2.41 5/1024 98765\n", "0.00 0.00 0.00 1/1 1\n", "112.30 98.07 64.44 97/2211 3141592\n",
		"1 2", "1 x 3", "1 -2 3", "Inf 1 1", "NaN 0 0", "1e9 1e9 1e9", "0x1p-2 0 0", "", "0.1\t0.2\n0.3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l1, l5, l15, ok := parseLoadavg(s)
		loads := []float64{l1, l5, l15}
		if !ok {
			if l1 != 0 || l5 != 0 || l15 != 0 {
				t.Fatalf("parseLoadavg(%q) = %v, false: want zeros with false", s, loads)
			}
			return
		}
		fields := strings.Fields(s)
		for i, l := range loads {
			want, err := strconv.ParseFloat(fields[i], 64)
			if !(l >= 0 && l <= 1e9) || err != nil || l != want {
				t.Fatalf("parseLoadavg(%q) = %v, true: load %d is not field %q in [0, 1e9]", s, loads, i, fields[i])
			}
		}
	})
}

const meminfoSample = `MemTotal:       16318412 kB
MemFree:         1204728 kB
MemAvailable:    9876544 kB
Buffers:          512000 kB
Cached:          7901232 kB
SwapCached:            0 kB
Active:          6012348 kB
Inactive:        7543200 kB
SwapTotal:       2097148 kB
SwapFree:        2097148 kB
HugePages_Total:       0
HugePages_Free:        0
Hugepagesize:       2048 kB
`

// FuzzParseMeminfo: each figure is zero when its "Key:" line is missing, else a number of at
// most 2^53 (times 1024 for kB), so it never overflows.
func FuzzParseMeminfo(f *testing.F) {
	for _, s := range []string{
		meminfoSample, "MemTotal:        8009012 kB\nMemFree:          123456 kB\nMemAvailable:    5347728 kB\n",
		"MemAvailable: 1\nMemTotal: 2 MB\n", "MemTotal: 9007199254740992 kB\n", "MemTotal: 9007199254740993 kB\n",
		"MemTotal: 99999999999999999999 kB\n", "MemTotal:\nMemAvailable: -1 kB\n", "MemTotal: 1 kB\r\nMemTotal: 2 kB", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		total, avail := parseMeminfo(s)
		for _, c := range []struct {
			key string
			v   uint64
		}{{"MemTotal", total}, {"MemAvailable", avail}} {
			if c.v > 1<<53*1024 || c.v > 1<<53 && c.v%1024 != 0 {
				t.Fatalf("parseMeminfo(%q): %s = %d, not a 53-bit number of bytes or kB", s, c.key, c.v)
			}
			if c.v != 0 && !strings.HasPrefix(s, c.key+":") && !strings.Contains(s, "\n"+c.key+":") {
				t.Fatalf("parseMeminfo(%q): %s = %d with no %s line", s, c.key, c.v, c.key)
			}
		}
	})
}

const mountsSample = `sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
udev /dev devtmpfs rw,nosuid,relatime,size=8123456k,nr_inodes=2030864,mode=755,inode64 0 0
/dev/nvme0n1p2 / ext4 rw,relatime,errors=remount-ro 0 0
/dev/nvme0n1p1 /boot/efi vfat rw,relatime,fmask=0077,dmask=0077,codepage=437,iocharset=iso8859-1,shortname=mixed,errors=remount-ro 0 0
tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=1634568k,mode=755,inode64 0 0
/dev/sdb1 /media/user/My\040Disk exfat rw,nosuid,nodev,relatime,uid=1000,gid=1000 0 0
overlay /var/lib/docker/overlay2/3f1c/merged overlay rw,relatime,lowerdir=/var/lib/docker/overlay2/l/ABC,upperdir=/var/lib/docker/overlay2/3f1c/diff 0 0
//server/share /mnt/tab\011and\012newline\134 cifs rw,relatime,vers=3.1.1 0 0
`

// escapeMount writes s for /proc/self/mounts, escaping in octal every byte that is not
// printable ASCII, and the backslash: a field with no white space that unescapes to s.
func escapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			fmt.Fprintf(&b, "\\%03o", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// FuzzParseMounts: no more entries than lines; every field non-empty, the type a field of the
// input; written back escaped, each entry parses to itself; and diskCandidates keeps only
// absolute, valid UTF-8 mount points within MaxMountBytes, "/" first.
func FuzzParseMounts(f *testing.F) {
	f.Add(mountsSample)
	for _, line := range strings.SplitAfter(mountsSample, "\n") {
		f.Add(line)
	}
	f.Add("a b\nc d e\n\\ \\1 \\12 \\123 \\1234\n\\777 \\400 x\n")
	f.Add("/dev/sda1 / ext4\r\n\n\t\n")
	f.Fuzz(func(t *testing.T, s string) {
		mounts := parseMounts(s)
		if lines := strings.Count(s, "\n") + 1; len(mounts) > lines {
			t.Fatalf("parseMounts(%q) = %d entries from %d lines", s, len(mounts), lines)
		}
		for _, m := range mounts {
			if m.source == "" || m.dir == "" || m.fstype == "" || len(strings.Fields(m.fstype)) != 1 || m.fstype != strings.Fields(m.fstype)[0] {
				t.Fatalf("parseMounts(%q): entry %+v", s, m)
			}
			line := escapeMount(m.source) + " " + escapeMount(m.dir) + " " + m.fstype + " rw 0 0\n"
			if again := parseMounts(line); len(again) != 1 || again[0] != m {
				t.Fatalf("parseMounts(%q): entry %+v written as %q parses to %+v", s, m, line, again)
			}
		}
		dirs := diskCandidates(mounts)
		if len(dirs) == 0 || dirs[0] != "/" {
			t.Fatalf("diskCandidates(parseMounts(%q)) = %q, want \"/\" first", s, dirs)
		}
		for _, d := range dirs[1:] {
			if d == "/" || !strings.HasPrefix(d, "/") || len(d) > MaxMountBytes || !utf8.ValidString(d) {
				t.Fatalf("diskCandidates(parseMounts(%q)) = %q: %q", s, dirs, d)
			}
		}
	})
}
