package node

import (
	"context"
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestControlSocket drives a running node's control socket with a real client and with requests
// no client of this version sends: each bad one gets an answer that says what is wrong.
func TestControlSocket(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	if err := l.bob.ListenControl(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := DialControl(l.dirs["bob"])
	if err != nil {
		t.Fatal(err)
	}
	want, err := l.bob.Identity(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err := cl.Identity(ctx)
	if err != nil || got.Fingerprint != want.Fingerprint {
		t.Fatalf("Identity through the socket = %+v, %v; want %+v", got, err, want)
	}
	peers, err := cl.Peers(ctx)
	if err != nil || len(peers) != 1 || peers[0].Name != "alice" {
		t.Fatalf("Peers through the socket = %+v, %v; want alice", peers, err)
	}

	for _, tc := range []struct{ name, req, want string }{
		{"not JSON", "hello\n", "bad control request"},
		{"truncated", `{"op":"iden`, "bad control request"},
		{"unknown field", `{"op":"peers","shell":"rm -rf /"}`, "bad control request"},
		{"unknown op", `{"op":"format-disk"}`, `unknown control operation "format-disk"`},
		{"run without a command", `{"op":"run"}`, "control operation run without a command"},
		{"add-peer without a peer", `{"op":"add-peer"}`, "control operation add-peer without a peer"},
		{"remove-peer without a peer", `{"op":"remove-peer"}`, "control operation remove-peer without a peer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawControl(t, l.dirs["bob"], tc.req)
			if !strings.Contains(resp.Error, tc.want) {
				t.Fatalf("answer to %q: error %q, want it to contain %q", tc.req, resp.Error, tc.want)
			}
		})
	}

	// A request over the size cap is refused, not buffered whole.
	big := `{"op":"peers","peer":{"name":"` + strings.Repeat("a", maxControlRequest) + `"}}`
	if resp := rawControl(t, l.dirs["bob"], big); !strings.Contains(resp.Error, "bad control request") {
		t.Fatalf("answer to a %d-byte request: error %q, want a bad control request", len(big), resp.Error)
	}
}

// rawControl sends req as it stands (closing the write side, so a truncated request ends) and
// decodes the agent's answer.
func rawControl(t *testing.T, dir, req string) controlResponse {
	t.Helper()
	c, err := net.DialTimeout("unix", filepath.Join(dir, SocketName), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		c.Write([]byte(req))
		c.(*net.UnixConn).CloseWrite()
	}()
	// Decode the answer alone, as Client does: after a refused request the agent closes with the
	// rest unread, and the connection may then end in a reset.
	var resp controlResponse
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		t.Fatalf("no answer to %.60q: %v", req, err)
	}
	return resp
}
