package compress

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// The corpora below stand for what a streamed command output carries in one
// 1 MiB chunk (issue 12): every generator is deterministic.

const corpusSize = 1 << 20

type corpus struct {
	name string
	gen  func(n int) []byte
	// maxFrame guards against regressions: the frame Encode makes today,
	// plus about 2 %. seq's ceiling also keeps its sealed plaintext in
	// the 32 KiB padding bucket.
	maxFrame int
	text     bool // counted in the "near xz -6" goal
}

var corpora = []corpus{
	{"seq", seqOutput, 32 << 10, true},
	{"yes", yesOutput, 320, true},
	{"gosrc", goSource, 256 << 10, true},
	{"syslog", syslogLines, 160 << 10, true},
	{"jsonl", jsonLines, 162 << 10, true},
	{"random", randomBytes, HeaderSize + corpusSize, false},
}

// seqOutput is `seq 1 N`, cut at n bytes.
func seqOutput(n int) []byte {
	b := make([]byte, 0, n+8)
	for i := 1; len(b) < n; i++ {
		b = fmt.Appendf(b, "%d\n", i)
	}
	return b[:n]
}

// yesOutput is `yes sealpost`.
func yesOutput(n int) []byte { return bytes.Repeat([]byte("sealpost\n"), n/9+1)[:n] }

// goSource is the Go files of the toolchain's net/http, in name order,
// concatenated (the toolchain running the test always has them).
func goSource(n int) []byte {
	var files []string
	root := filepath.Join(runtime.GOROOT(), "src", "net", "http")
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			files = append(files, p)
		}
		return nil
	})
	slices.Sort(files)
	var b []byte
	for _, f := range files {
		if len(b) >= n {
			break
		}
		d, err := os.ReadFile(f)
		if err == nil {
			b = append(b, d...)
		}
	}
	for len(b) < n && len(b) > 0 { // a short toolchain tree: repeat
		b = append(b, b...)
	}
	if len(b) < n {
		return nil
	}
	return b[:n]
}

// syslogLines is syslog-like text: timestamps, hosts, daemons, pids and
// messages with varying numbers.
func syslogLines(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	hosts := []string{"web1", "web2", "db1", "cache3"}
	procs := []string{"sshd", "cron", "kernel", "nginx", "postfix/smtpd", "systemd"}
	msgs := []string{
		"Accepted publickey for deploy from 10.0.%d.%d port %d ssh2",
		"pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
		"GET /api/v1/items/%d HTTP/1.1 200 %d",
		"connect from unknown[192.168.%d.%d]",
		"Started Session %d of user deploy.",
		"TCP: request_sock_TCP: Possible SYN flooding on port %d. Sending cookies.",
	}
	t := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	b := make([]byte, 0, n+200)
	for len(b) < n {
		t = t.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
		m := msgs[r.IntN(len(msgs))]
		args := []any{r.IntN(256), r.IntN(65536), r.IntN(65536)}
		m = fmt.Sprintf(m, args[:strings.Count(m, "%d")]...)
		b = fmt.Appendf(b, "%s %s %s[%d]: %s\n", t.Format("Jan _2 15:04:05"),
			hosts[r.IntN(len(hosts))], procs[r.IntN(len(procs))], 1000+r.IntN(30000), m)
	}
	return b[:n]
}

// jsonLines is one JSON object a line, as `--json` listings print.
func jsonLines(n int) []byte {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 0, n+200)
	for i := 0; len(b) < n; i++ {
		b = fmt.Appendf(b, `{"id":%d,"name":"item-%d","price":%d.%02d,"tags":["a%d","b%d"],"active":%v,"owner":{"uid":%d,"team":"t%d"}}`+"\n",
			i, r.IntN(100000), r.IntN(1000), r.IntN(100), r.IntN(10), r.IntN(20), r.IntN(2) == 0, r.IntN(5000), r.IntN(40))
	}
	return b[:n]
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Mail size model for one CHUNK of issue 12: the chunk plaintext (a 17-byte
// header and the frame) is padded to the bucket of PROTOCOL.md section 9 and
// sealed (134-byte header, 16-byte tag); the mail carries that as base64 in
// lines of 76 characters and CRLF, under about 600 bytes of MIME headers.
const (
	chunkHeader = 17
	sealHeader  = 134
	sealTag     = 16
	mimeHeaders = 600
)

func bucket(n int) int {
	if n <= 256 {
		return 256
	}
	if n <= 65536 {
		b := 256
		for b < n {
			b *= 2
		}
		return b
	}
	return (n + 16383) / 16384 * 16384 // above 64 KiB: multiples of 16 KiB
}

func base64Lines(n int) int {
	b := (n + 2) / 3 * 4
	return b + (b+75)/76*2
}

func mailSize(frame int) int {
	return base64Lines(sealHeader+bucket(chunkHeader+frame)+sealTag) + mimeHeaders
}

// xz6 returns the size of `xz -6` on p (with the CRC32 check that frames
// use), or -1 when the xz command is not installed.
func xz6(t testing.TB, p []byte) int {
	path, err := exec.LookPath("xz")
	if err != nil {
		return -1
	}
	c := exec.Command(path, "-6", "--check=crc32", "-c")
	c.Stdin = bytes.NewReader(p)
	out, err := c.Output()
	if err != nil {
		t.Fatalf("xz -6: %v", err)
	}
	return len(out)
}

// libraryFrame is the frame the xz library's own encoder made before
// Encode had its own (HashTable4, dictionary sized to the payload).
func libraryFrame(t testing.TB, p []byte) int {
	var b bytes.Buffer
	w, err := xz.WriterConfig{DictCap: dictFor(len(p)), Matcher: lzma.HashTable4, CheckSum: xz.CRC32,
		BufSize: 1 << 10, BlockSize: MaxPlain + 1}.NewWriter(&b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(p); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return min(HeaderSize+b.Len(), HeaderSize+len(p))
}

// TestEncodeCorpora: each corpus round-trips through Decode, and its frame
// stays within the size it has today.
func TestEncodeCorpora(t *testing.T) {
	for _, c := range corpora {
		t.Run(c.name, func(t *testing.T) {
			plain := c.gen(corpusSize)
			if plain == nil {
				t.Skip("no Go source tree to build the corpus from")
			}
			frame, err := Encode(plain)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(frame, 0)
			if err != nil {
				t.Fatalf("Decode(Encode(%s)): %v", c.name, err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("%s does not round-trip", c.name)
			}
			if len(frame) > c.maxFrame {
				t.Errorf("%s: frame of %d bytes, at most %d expected", c.name, len(frame), c.maxFrame)
			}
		})
	}
}

// TestCorpusTable prints the table of docs/BENCHMARKS.md ("Compression of
// 1 MiB chunks"). It runs the xz library's encoder and the xz command, so it
// only runs when asked:
//
//	SEALPOST_COMPRESS_TABLE=1 go test -run TestCorpusTable -v ./compress/
func TestCorpusTable(t *testing.T) {
	if os.Getenv("SEALPOST_COMPRESS_TABLE") == "" {
		t.Skip("set SEALPOST_COMPRESS_TABLE=1 to print the corpus table")
	}
	if _, err := exec.LookPath("xz"); err != nil {
		t.Log("xz is not installed: the xz -6 columns are left empty")
	}
	t.Log("| corpus | library frame | frame | mail (est.) | xz -6 | xz -6 x 4/3 | `xz -6 \\| base64` | mail / (xz -6 x 4/3) | encode MB/s (library -> ours) |")
	t.Log("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range corpora {
		plain := c.gen(corpusSize)
		if plain == nil {
			continue
		}
		start := time.Now()
		lib := libraryFrame(t, plain)
		libSpeed := float64(len(plain)) / time.Since(start).Seconds() / 1e6
		start = time.Now()
		frame, err := Encode(plain)
		speed := float64(len(plain)) / time.Since(start).Seconds() / 1e6
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(frame, 0); err != nil {
			t.Fatal(err)
		}
		mail := mailSize(len(frame))
		ref, refs, b64, ratio := xz6(t, plain), "-", "-", "-"
		if ref > 0 {
			refs = fmt.Sprint(ref)
			b64 = fmt.Sprint(base64Lines(ref))
			ratio = fmt.Sprintf("%.2f", float64(mail)/(float64(ref)*4/3))
		}
		t.Logf("| %s | %d | %d | %d | %s | %s | %s | %s | %.1f -> %.1f |", c.name, lib, len(frame), mail, refs,
			map[bool]string{true: fmt.Sprint(ref * 4 / 3), false: "-"}[ref > 0], b64, ratio, libSpeed, speed)
	}
}

// BenchmarkEncodeCorpora is Encode's speed on each 1 MiB corpus.
func BenchmarkEncodeCorpora(b *testing.B) {
	for _, c := range corpora {
		plain := c.gen(corpusSize)
		if plain == nil {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(plain)))
			var frame []byte
			for b.Loop() {
				frame, _ = Encode(plain)
			}
			b.ReportMetric(float64(len(frame)), "frame-B")
			b.ReportMetric(float64(mailSize(len(frame))), "mail-B")
		})
	}
}
