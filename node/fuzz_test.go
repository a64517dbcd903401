package node

// Fuzz targets for what a node decodes from outside: the payload of a COMMAND or RESPONSE (a
// compression frame holding the commands package's JSON), and a control socket request. They
// assert: no panic; an error comes with the zero value; a payload that decodes re-encodes with
// encodeRequest or encodeResult and decodes to an equal value; a control request that decodes
// names a known operation with the part it needs, and decodes the same however the socket
// splits its bytes. Run one with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzDecodeRequest$' -fuzztime 60s ./node/

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/compress"
)

var fuzzSent = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// storedFrame wraps b in a Stored compression frame, whatever b is.
func storedFrame(b []byte) []byte {
	return append([]byte{compress.Stored, byte(len(b) >> 24), byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
}

// requireDecodeError checks that err is one of the two decoders' errors.
func requireDecodeError(t *testing.T, what string, err error) {
	t.Helper()
	var ce *compress.Error
	var de *commands.DecodeError
	if !errors.As(err, &ce) && !errors.As(err, &de) {
		t.Fatalf("%s: error %v (%T) is neither a *compress.Error nor a *commands.DecodeError", what, err, err)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	for _, req := range []commands.Request{
		{Name: commands.CmdPing, Sent: fuzzSent},
		{Name: commands.CmdSysinfo},
		{Name: commands.CmdExec, Argv: []string{"df", "-h", "/"}, Timeout: 30 * time.Second, Sent: fuzzSent},
		{Name: commands.CmdExec, Argv: []string{"sh", "-c", strings.Repeat("echo sealpost; ", 40)}, Sent: fuzzSent}, // an XZ frame
	} {
		frame, err := encodeRequest(req)
		if err != nil {
			f.Fatalf("encodeRequest(%+v): %v", req, err)
		}
		f.Add(frame)
	}
	f.Add(storedFrame([]byte(`{"name":"exec","argv":["/bin/true"],"sent":"2026-03-01T13:00:00+01:00"}`)))
	f.Add(storedFrame([]byte(`{"name":"exec"}`)))
	f.Add(storedFrame([]byte(`{"name":"ping"} {}`)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, err := decodeRequest(frame)
		if err != nil {
			if !reflect.DeepEqual(req, commands.Request{}) {
				t.Fatalf("decodeRequest(%q) = %+v, %v: a request with the error", frame, req, err)
			}
			requireDecodeError(t, "decodeRequest", err)
			return
		}
		again, err := encodeRequest(req)
		if err != nil {
			t.Fatalf("decodeRequest(%q) = %+v, which encodeRequest refuses: %v", frame, req, err)
		}
		back, err := decodeRequest(again)
		if err != nil || !reflect.DeepEqual(back, req) {
			t.Fatalf("decodeRequest(%q) = %+v; re-encoded it decodes to %+v, %v", frame, req, back, err)
		}
	})
}

func FuzzDecodeResult(f *testing.F) {
	for _, res := range []commands.Result{
		{Started: fuzzSent},
		{ExitCode: 0, Stdout: []byte("Filesystem Size Used Avail Use% Mounted on\n/dev/vda 40G 12G 26G 32% /\n"),
			Duration: 12 * time.Millisecond, Started: fuzzSent},
		{ExitCode: -1, Stderr: []byte{0xff, 0, '\n'}, StderrTruncated: true, TimedOut: true, Duration: time.Minute,
			Error: "timed out after 1m0s; process group killed", Started: fuzzSent},
		{ExitCode: -1, Error: "denied: exec is not allowed for this peer", Undelivered: "552 message too large", Started: fuzzSent},
		{Info: &commands.SysInfo{Hostname: "bob", OS: "linux", Kernel: "6.8.0", Arch: "amd64", Uptime: time.Hour,
			Load1: 0.12, Load5: 0.08, Load15: 0.01, MemTotal: 8 << 30, MemAvailable: 5 << 30,
			Disks: []commands.Disk{{Mount: "/", Total: 40 << 30, Free: 26 << 30}}, NumCPU: 4, Version: "v1.0.0", GoVersion: "go1.26.0"},
			Started: fuzzSent},
		{Stdout: bytes.Repeat([]byte("sealpost "), 60), Started: fuzzSent}, // an XZ frame
	} {
		frame, err := encodeResult(res)
		if err != nil {
			f.Fatalf("encodeResult(%+v): %v", res, err)
		}
		f.Add(frame)
	}
	f.Add(storedFrame([]byte(`{"exit_code":1,"duration":5,"started":"2026-03-01T13:00:00+01:00","stdout":"aGk="}`)))
	f.Add(storedFrame([]byte(`{"exit_code":-2,"duration":0,"started":"2026-03-01T12:00:00Z"}`)))
	f.Add(storedFrame([]byte(`{"sysinfo":{"disks":[{"mount":"","total":1,"free":2}]},"duration":0,"started":"2026-03-01T12:00:00Z"}`)))
	f.Add([]byte{compress.XZ, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, frame []byte) {
		res, err := decodeResult(frame)
		if err != nil {
			if !reflect.DeepEqual(res, commands.Result{}) {
				t.Fatalf("decodeResult(%q) = %+v, %v: a result with the error", frame, res, err)
			}
			requireDecodeError(t, "decodeResult", err)
			return
		}
		again, err := encodeResult(res)
		if err != nil {
			t.Fatalf("decodeResult(%q) = %+v, which encodeResult refuses: %v", frame, res, err)
		}
		back, err := decodeResult(again)
		if err != nil || !reflect.DeepEqual(back, res) {
			t.Fatalf("decodeResult(%q) = %+v; re-encoded it decodes to %+v, %v", frame, res, back, err)
		}
	})
}

// controlOps are the control operations and whether each needs a peer or a run.
var controlOps = map[string]struct{ peer, run, allow bool }{
	"identity": {}, "add-peer": {peer: true}, "peers": {}, "remove-peer": {peer: true}, "allow": {allow: true}, "run": {run: true}, "results": {}, "status": {},
}

// FuzzDecodeControlRequest fuzzes decodeControlRequest, which serveControl calls on each
// connection: at most maxControlRequest bytes, one JSON controlRequest. On success the operation
// is known and has its part; the same bytes fed one at a time give the same outcome; and the
// request as the client would send it again decodes to the same operation and parts.
func FuzzDecodeControlRequest(f *testing.F) {
	spec := PeerSpec{Name: "bob", Address: "bob@example.org", Code: "AB12-CD34", Fingerprint: "0011-2233-4455-6677-8899-aabb-ccdd-eeff", Allow: []string{"ping", "sysinfo"}}
	run := RunSpec{Peer: "bob", Request: commands.Request{Name: commands.CmdExec, Argv: []string{"df", "-h"}, Sent: fuzzSent}, TTL: time.Hour}
	for _, req := range []controlRequest{
		{Op: "identity"}, {Op: "add-peer", Peer: &spec}, {Op: "peers"}, {Op: "remove-peer", Peer: &PeerSpec{Name: "bob"}},
		{Op: "run", Run: &run, Wait: true, Timeout: 30 * time.Second}, {Op: "results", Timeout: time.Second},
		{Op: "allow", Allow: &allowChange{Name: "bob", Add: []string{"df"}, Remove: []string{"uptime"}}},
	} {
		var b bytes.Buffer
		if err := json.NewEncoder(&b).Encode(req); err != nil { // as Client.call sends it
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	for _, s := range []string{
		`{"op":"run"}`, `{"op":"add-peer","peer":null}`, `{"op":"reboot"}`, `{"op":"peers","extra":1}`, `{"Op":"PEERS"}`,
		`{"op":"peers"}{"op":"identity"}`, `{"op":"peers"`, `[]`, `null`, ``, `{"op":"run","run":{"request":{"name":1}}}`,
		`{"op":"identity","timeout":"1s"}`, `{"op":"allow"}`, `{"op":"allow","allow":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeControlRequest(bytes.NewReader(b))
		req1, err1 := decodeControlRequest(iotest.OneByteReader(bytes.NewReader(b)))
		if (err == nil) != (err1 == nil) || req.Op != req1.Op || (req.Peer == nil) != (req1.Peer == nil) || (req.Run == nil) != (req1.Run == nil) {
			t.Fatalf("decodeControlRequest(%q) = %+v, %v; one byte at a time %+v, %v", b, req, err, req1, err1)
		}
		if err != nil {
			if !reflect.DeepEqual(req, controlRequest{}) {
				t.Fatalf("decodeControlRequest(%q) = %+v, %v: a request with the error", b, req, err)
			}
			return
		}
		op, known := controlOps[req.Op]
		if !known || op.peer && req.Peer == nil || op.run && req.Run == nil || op.allow && req.Allow == nil {
			t.Fatalf("decodeControlRequest(%q) = %+v: unknown operation or missing part", b, req)
		}
		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("decodeControlRequest(%q) = %+v, which does not encode: %v", b, req, err)
		}
		back, err := decodeControlRequest(bytes.NewReader(again))
		if err != nil || back.Op != req.Op || (back.Peer == nil) != (req.Peer == nil) || (back.Run == nil) != (req.Run == nil) ||
			back.Wait != req.Wait || back.Timeout != req.Timeout {
			t.Fatalf("decodeControlRequest(%q) = %+v; re-encoded as %q it decodes to %+v, %v", b, req, again, back, err)
		}
	})
}
