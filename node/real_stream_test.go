package node

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRealStreamedOutput: a 6 MB output and a 3 MB pull through Postfix and Dovecot: the chunks
// go as mail like any package, are joined in order, and match; the command ran once.
func TestRealStreamedOutput(t *testing.T) {
	dir := t.TempDir()
	prog, printed := filepath.Join(dir, "print"), filepath.Join(dir, "printed")
	os.WriteFile(prog, []byte("#!/bin/sh\nhead -c 6000000 /dev/urandom | tee "+printed+"\n"), 0o755)
	l := newRealLab(t, realOpts{allow: []string{prog}, life: 3 * time.Minute})
	share := filepath.Join(dir, "share")
	os.Mkdir(share, 0o700)
	want := randomFile(t, filepath.Join(share, "data"), 3_000_000)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", AllowRead: []string{share}}); err != nil {
		t.Fatal(err)
	}
	l.serveBob()

	r := l.wait(l.submit(prog), 2*time.Minute)
	got, _ := os.ReadFile(r.StdoutPath)
	out, _ := os.ReadFile(printed)
	if r.Status != StatusDone || !r.Streamed || !bytes.Equal(got, out) {
		t.Fatalf("streamed output: %s streamed %v, %d of %d bytes: %s", r.Status, r.Streamed, len(got), len(out), r.Error)
	}
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: pullRequest(filepath.Join(share, "data"))})
	if err != nil {
		t.Fatal(err)
	}
	r = l.wait(id, 2*time.Minute)
	if got, _ := os.ReadFile(r.StdoutPath); r.Status != StatusDone || !bytes.Equal(got, want) {
		t.Fatalf("pull: %s, %d of %d bytes: %s", r.Status, len(got), len(want), r.Error)
	}
}
