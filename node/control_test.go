package node

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// TestControlSocket drives a running node's control socket with a real client and with requests
// no client of this version sends: each bad one gets an answer that says what is wrong.
func TestControlSocket(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	if _, err := l.bob.ListenControl(ctx); err != nil {
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

// TestControlHandlerEndsBeforeClose: a request in progress when the agent stops is answered
// before ControlServer.Wait returns, so the node's Close after it never pulls the store from
// under a handler.
func TestControlHandlerEndsBeforeClose(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	entered := make(chan struct{})
	srv, err := l.bob.listenControl(ctx, func(op string) {
		if op == "peers" {
			close(entered)
			<-ctx.Done() // still at work when the agent stops
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := DialControl(l.dirs["bob"])
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		peers []PeerInfo
		err   error
	}
	got := make(chan answer, 1)
	go func() {
		p, err := cl.Peers(l.ctx)
		got <- answer{p, err}
	}()
	<-entered
	cancel()
	srv.Wait()
	if err := l.bob.Close(); err != nil {
		t.Fatal(err)
	}
	if a := <-got; a.err != nil || len(a.peers) != 1 {
		t.Fatalf("a request in progress when the agent stopped got %+v, %v; want its answer (alice), read before the store closed", a.peers, a.err)
	}
}

// TestSubmitSameIDOnce: a second Submit under an ID already recorded (a caller that never heard
// the first answer) returns that ID and mails nothing; the same ID for another command is refused.
func TestSubmitSameIDOnce(t *testing.T) {
	l := newLab(t)
	var ct *countingTransport
	l.alice.Close()
	l.alice = l.open("alice", func(tr mailbox.Transport) mailbox.Transport {
		ct = &countingTransport{Transport: tr}
		return ct
	}, false)
	sent := func() int {
		ct.mu.Lock()
		defer ct.mu.Unlock()
		n := 0
		for _, c := range ct.sent {
			n += c
		}
		return n
	}
	// A session first, so that a Submit mails its command at once.
	ping, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		if r, _, _ := l.alice.Result(ping); Final(r.Status) {
			break
		} else if i == 10 {
			t.Fatalf("the ping that opens the session: %+v", r)
		}
		l.bob.Pump(l.ctx, false, 0)
		l.alice.Pump(l.ctx, false, 0)
	}
	id := session.CommandID{1, 2, 3}
	spec := RunSpec{ID: id, Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{"echo", "once"}}}
	if got, err := l.alice.Submit(l.ctx, spec); err != nil || got != id {
		t.Fatalf("Submit = %s, %v; want %s", got, err, id)
	}
	first := sent()
	if first == 0 {
		t.Fatal("the first Submit mailed nothing")
	}
	if got, err := l.alice.Submit(l.ctx, spec); err != nil || got != id {
		t.Fatalf("Submit again = %s, %v; want %s, nil", got, err, id)
	}
	if n := sent(); n != first {
		t.Fatalf("the second Submit under the same ID mailed %d more packages, want none", n-first)
	}
	// Also once it has its answer: the peer's ledger would answer a resent command from its
	// cache, but nothing is mailed at all.
	for i := 0; ; i++ {
		if r, _, _ := l.alice.Result(id); Final(r.Status) {
			break
		} else if i == 10 {
			t.Fatalf("the command never got its answer: %+v", r)
		}
		l.bob.Pump(l.ctx, false, 0)
		l.alice.Pump(l.ctx, false, 0)
	}
	answered := sent()
	if got, err := l.alice.Submit(l.ctx, spec); err != nil || got != id {
		t.Fatalf("Submit after the answer = %s, %v; want %s, nil", got, err, id)
	}
	if n := sent(); n != answered {
		t.Fatalf("a Submit under the ID of an answered command mailed %d packages, want none", n-answered)
	}
	other := spec
	other.Request.Argv = []string{"echo", "another"}
	if _, err := l.alice.Submit(l.ctx, other); err == nil {
		t.Fatal("Submit of another command under a used ID succeeded")
	}
	rs, err := l.alice.Results(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs = slices.DeleteFunc(rs, func(r Result) bool { return r.CommandID != id })
	if len(rs) != 1 || !slices.Equal(rs[0].Command, spec.Request.Argv) {
		t.Fatalf("results under the ID after three Submits: %+v; want the first command", rs)
	}
}

// TestThreat36ControlSocket: a client refuses, without connecting, a control socket that another
// user put there or could have replaced: one owned by someone else, a symlink, one in a
// directory that others may write to or that is someone else's, and one replaced after the
// client was made. An agent refuses to listen in such a directory.
func TestThreat36ControlSocket(t *testing.T) {
	const nobody = 65534
	root := os.Geteuid() == 0
	for _, tc := range []struct {
		name     string
		root     bool // needs root to give a file away
		setup    func(t *testing.T, dir string)
		wantPath string // relative to dir: what the error must name
		wantUID  int    // -1: ours
	}{
		{"directory others may write", false, func(t *testing.T, dir string) { chmod(t, dir, 0o770) }, ".", -1},
		{"directory of another user", true, func(t *testing.T, dir string) { lchown(t, dir, nobody) }, ".", nobody},
		{"socket of another user", true, func(t *testing.T, dir string) { lchown(t, filepath.Join(dir, SocketName), nobody) }, SocketName, nobody},
		{"symlink to a socket", false, func(t *testing.T, dir string) {
			sock := filepath.Join(dir, SocketName)
			if err := os.Rename(sock, filepath.Join(dir, "real.sock")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("real.sock", sock); err != nil {
				t.Fatal(err)
			}
		}, SocketName, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && !root {
				t.Skip("needs root to give a file to another user (uid 65534)")
			}
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			ln := plantSocket(t, filepath.Join(dir, SocketName))
			tc.setup(t, dir)
			_, err := DialControl(dir)
			checkUnsafe(t, err, filepath.Join(dir, tc.wantPath), tc.wantUID)
			noConnection(t, ln)
		})
	}

	t.Run("replaced after the client was made", func(t *testing.T) {
		if !root {
			t.Skip("needs root to give a file to another user (uid 65534)")
		}
		dir := t.TempDir()
		sock := filepath.Join(dir, SocketName)
		ln := plantSocket(t, sock)
		cl, err := DialControl(dir)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := ln.Accept(); err != nil { // DialControl's probe
			t.Fatal(err)
		} else {
			c.Close()
		}
		lchown(t, sock, nobody)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // the planted socket never answers
		defer cancel()
		_, err = cl.Identity(ctx)
		checkUnsafe(t, err, sock, nobody)
		noConnection(t, ln)
	})

	t.Run("agent in a directory others may write", func(t *testing.T) {
		l := newLab(t)
		chmod(t, l.dirs["bob"], 0o770)
		_, err := l.bob.ListenControl(l.ctx)
		checkUnsafe(t, err, l.dirs["bob"], -1)
		if _, err := os.Lstat(filepath.Join(l.dirs["bob"], SocketName)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the refused agent left a socket behind: %v", err)
		}
	})
}

func checkUnsafe(t *testing.T, err error, path string, uid int) {
	t.Helper()
	if uid < 0 {
		uid = os.Geteuid()
	}
	var ue *UnsafeSocketError
	if !errors.As(err, &ue) || ue.Path != filepath.Clean(path) || ue.UID != uid {
		t.Fatalf("error %v (%T); want an *UnsafeSocketError naming %s and owner %d", err, err, path, uid)
	}
}

// plantSocket listens on path as this user, as someone planting a socket would.
func plantSocket(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// noConnection checks that nobody connected to ln: a connection made would wait in its backlog.
func noConnection(t *testing.T, ln *net.UnixListener) {
	t.Helper()
	ln.SetDeadline(time.Now())
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("the client connected to the refused socket")
	}
}

func chmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func lchown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}

// TestRunTimeoutThroughAgentIsPending: a `run --wait` whose timeout passes while the command is
// pending is reported as a timeout (exit 75), not as an agent that stopped answering (76).
func TestRunTimeoutThroughAgentIsPending(t *testing.T) {
	l := newLab(t)
	// The session first: a handshake makes an RSA-3072 key before the command is recorded,
	// which on a loaded machine took longer than the timeout and its grace together, so the
	// agent's answer came too late for reasons this test is not about.
	l.serveBob()
	if r, err := l.alice.Run(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}, true, nil); err != nil || r.Status != StatusDone {
		t.Fatalf("warm-up ping: %+v, %v", r, err)
	}
	l.stopBob()
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	if _, err := l.alice.ListenControl(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := DialControl(l.dirs["alice"])
	if err != nil {
		t.Fatal(err)
	}
	// Bob's agent does not run: no answer comes.
	rctx, rcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer rcancel()
	_, err = cl.Run(rctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}, true, nil)
	var fu *FateUnknownError
	if errors.As(err, &fu) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run past its timeout = %v; want a timeout with the command pending, not a fate unknown", err)
	}
}
