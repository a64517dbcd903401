package compress

// Frame vectors (testdata/README.md): compression frames (docs/PROTOCOL.md section 10), each with
// what a receiver must make of it, in the format of session/testdata (age's test-vector format):
// header lines, a blank line, then the frame bytes to the end of the file. TestFrameVectors checks
// every testdata/*.vec; the generator below writes them from Encode, deterministically:
//
//	go test ./compress/ -run TestFrameVectors -update
//
// (-update also tells TestSeedFrames to rewrite testdata/seeds; with -run it does not run.)

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

const frameVectorDir = "testdata"

// The outcomes a frame vector may expect.
const (
	frameExpectSuccess = "success"
	frameExpectFailure = "decode failure" // Decode rejects the frame (any *Error)
)

// frameVectorKeys are the header keys, in the order the generator writes them. plaintext is hex.
var frameVectorKeys = []string{"expect", "plaintext", "comment"}

// requiredFrameVectors must exist; one that goes missing fails TestFrameVectors.
var requiredFrameVectors = []string{"frame_stored_ok", "frame_xz_ok", "frame_xz_stream_padding"}

type frameVector struct {
	name     string
	expect   string
	plain    []byte
	hasPlain bool
	comments []string
	frame    []byte
}

func (v *frameVector) encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "expect: %s\n", v.expect)
	if v.hasPlain {
		fmt.Fprintf(&b, "plaintext: %s\n", hex.EncodeToString(v.plain))
	}
	for _, c := range v.comments {
		fmt.Fprintf(&b, "comment: %s\n", c)
	}
	b.WriteString("\n")
	b.Write(v.frame)
	return b.Bytes()
}

// parseFrameVector reads the format strictly: unknown or repeated keys, bad hex and an unknown
// expect value are errors.
func parseFrameVector(name string, data []byte) (*frameVector, error) {
	head, frame, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return nil, fmt.Errorf("vector %s: no blank line after the header", name)
	}
	v := &frameVector{name: name, frame: frame}
	for _, line := range strings.Split(string(head), "\n") {
		k, val, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, fmt.Errorf("vector %s: header line %q is not \"key: value\"", name, line)
		}
		dup := false
		switch k {
		case "comment":
			v.comments = append(v.comments, val)
		case "expect":
			dup = v.expect != ""
			if val != frameExpectSuccess && val != frameExpectFailure {
				return nil, fmt.Errorf("vector %s: unknown expect %q", name, val)
			}
			v.expect = val
		case "plaintext":
			dup = v.hasPlain
			b, err := hex.DecodeString(val)
			if err != nil {
				return nil, fmt.Errorf("vector %s: plaintext: %v", name, err)
			}
			v.plain, v.hasPlain = b, true
		default:
			return nil, fmt.Errorf("vector %s: unknown key %q", name, k)
		}
		if dup {
			return nil, fmt.Errorf("vector %s: key %q repeated", name, k)
		}
	}
	if v.expect == "" {
		return nil, fmt.Errorf("vector %s: expect is required", name)
	}
	if v.expect == frameExpectSuccess && !v.hasPlain {
		return nil, fmt.Errorf("vector %s: a success vector needs its plaintext", name)
	}
	return v, nil
}

func TestFrameVectors(t *testing.T) {
	if *update {
		if err := writeFrameVectors(frameVectorDir, generateFrameVectors(t)); err != nil {
			t.Fatal(err)
		}
	}
	paths, err := filepath.Glob(filepath.Join(frameVectorDir, "*.vec"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		v, err := parseFrameVector(strings.TrimSuffix(filepath.Base(p), ".vec"), data)
		if err != nil {
			t.Fatal(err)
		}
		have[v.name] = true
		t.Run(v.name, func(t *testing.T) {
			if err := checkFrameVector(v); err != nil {
				t.Errorf("vector %s: %v", v.name, err)
			}
		})
	}
	for _, name := range requiredFrameVectors {
		if !have[name] {
			t.Errorf("vector %s: missing from %s (run go test ./compress/ -run TestFrameVectors -update)", name, frameVectorDir)
		}
	}
}

// checkFrameVector: a success vector's frame must decode to its plaintext both as section 10
// spells it out (the header, then the stored bytes, or the .xz stream decoded by the xz library,
// which knows nothing of frames) and through Decode; a failure vector must be refused by Decode.
func checkFrameVector(v *frameVector) error {
	got, err := Decode(v.frame, 0)
	if v.expect == frameExpectFailure {
		if err == nil || got != nil {
			return fmt.Errorf("Decode = %d bytes, %v; want a decode failure", len(got), err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("Decode: %v", err)
	}
	if !bytes.Equal(got, v.plain) {
		return fmt.Errorf("Decode gives %x, want the plaintext %x", got, v.plain)
	}

	if len(v.frame) < 5 {
		return errors.New("frame shorter than its 5-byte header")
	}
	codec, n, data := v.frame[0], binary.BigEndian.Uint32(v.frame[1:5]), v.frame[5:]
	if int64(n) != int64(len(v.plain)) || n > 16<<20 {
		return fmt.Errorf("plain_len is %d, the plaintext %d bytes", n, len(v.plain))
	}
	switch codec {
	case 0:
		if !bytes.Equal(data, v.plain) {
			return errors.New("stored data is not the plaintext")
		}
	case 1:
		// Stream header: magic, then stream flags 0x00 0x01 (check type CRC32).
		if len(data) < 12 || !bytes.Equal(data[:8], []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1}) {
			return errors.New("xz data does not start with a stream header with check type CRC32")
		}
		r, err := xz.ReaderConfig{SingleStream: true}.NewReader(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("xz library: %v", err)
		}
		plain, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("xz library: %v", err)
		}
		if !bytes.Equal(plain, v.plain) {
			return fmt.Errorf("the xz library decodes %x, want the plaintext %x", plain, v.plain)
		}
	default:
		return fmt.Errorf("codec %d in a success vector", codec)
	}
	return nil
}

func writeFrameVectors(dir string, vs []*frameVector) error {
	old, err := filepath.Glob(filepath.Join(dir, "*.vec"))
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, v := range vs {
		name := filepath.Join(dir, v.name+".vec")
		if keep[name] {
			return fmt.Errorf("vector %s generated twice", v.name)
		}
		keep[name] = true
		if err := os.WriteFile(name, v.encode(), 0o644); err != nil {
			return err
		}
	}
	for _, p := range old {
		if !keep[p] {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Plaintexts of the vectors: a request, as a COMMAND carries it, and a result, as its RESPONSE
// does (docs/PROTOCOL.md section 19).
const (
	vecRequest = `{"name":"ping","sent":"2026-11-22T12:00:00Z"}`
	vecResult  = `{"exit_code":0,"duration":1834000,"sysinfo":{"hostname":"alice.vectors.example","os":"linux",` +
		`"kernel":"6.12.0","arch":"amd64","version":"1.0.0","uptime":259200000000000,"load1":0.01,"load5":0.03,` +
		`"load15":0.05,"mem_total":8589934592,"mem_available":6442450944,"num_cpu":4,"disks":[` +
		`{"mount":"/","total":53687091200,"free":28991029248},` +
		`{"mount":"/boot","total":1073741824,"free":805306368},` +
		`{"mount":"/var","total":107374182400,"free":64424509440},` +
		`{"mount":"/var/lib/sealpost","total":10737418240,"free":9663676416},` +
		`{"mount":"/home","total":214748364800,"free":161061273600},` +
		`{"mount":"/srv","total":536870912000,"free":429496729600}]},"started":"2026-11-22T12:00:00.5Z"}`
)

// generateFrameVectors builds the vectors from Encode, which is deterministic.
func generateFrameVectors(t *testing.T) []*frameVector {
	encode := func(plain string, codec byte) []byte {
		f, err := Encode([]byte(plain))
		if err != nil {
			t.Fatal(err)
		}
		if f[0] != codec {
			t.Fatalf("generator: Encode chose codec %d for a %d-byte plaintext, want %d", f[0], len(plain), codec)
		}
		return f
	}
	stored, xzFrame := encode(vecRequest, Stored), encode(vecResult, XZ)
	vs := []*frameVector{
		{name: "frame_stored_ok", expect: frameExpectSuccess, plain: []byte(vecRequest), hasPlain: true, frame: stored,
			comments: []string{"a ping request (section 19) as a COMMAND's payload: codec 0 (stored), plain_len, the plain bytes;",
				"below 60 bytes xz cannot make a frame smaller, so the sender stores it"}},
		{name: "frame_xz_ok", expect: frameExpectSuccess, plain: []byte(vecResult), hasPlain: true, frame: xzFrame,
			comments: []string{fmt.Sprintf("a sysinfo result (section 19) as a RESPONSE's payload: codec 1 (xz), plain_len, one .xz stream of %d bytes:", len(xzFrame)-HeaderSize),
				"check CRC32, one block with one LZMA2 filter, dictionary 4 KiB (the smallest a sender uses)"}},
		{name: "frame_xz_stream_padding", expect: frameExpectFailure, frame: append(bytes.Clone(xzFrame), 0, 0, 0, 0),
			comments: []string{"frame_xz_ok followed by 4 zero bytes: stream padding, which the xz format allows and a frame does not"}},
	}
	slices.SortFunc(vs, func(a, b *frameVector) int { return strings.Compare(a.name, b.name) })
	return vs
}
