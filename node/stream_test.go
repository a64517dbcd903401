package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
)

// streamScript writes a program for bob that prints size random bytes to stdout (a copy goes to
// the returned file) and a line to stderr.
func streamScript(t *testing.T, l *lab, size int) (prog, copyOf string) {
	t.Helper()
	dir := t.TempDir()
	prog, copyOf = filepath.Join(dir, "print"), filepath.Join(dir, "printed")
	os.WriteFile(prog, []byte("#!/bin/sh\necho ran >> "+countFile+"\nhead -c "+itoa(size)+" /dev/urandom | tee "+copyOf+"\necho done >&2\n"), 0o755)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{prog}}); err != nil {
		t.Fatal(err)
	}
	return prog, copyOf
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestStreamedOutput: output larger than an answer holds comes back as a stream of chunks, is
// joined in order on the requester, checked against its SHA-256, and lands in the spool file
// whole; the command ran once, and neither side keeps the output in its state.
func TestStreamedOutput(t *testing.T) {
	l := newLab(t)
	l.bob.opts.ChunkSize = 64 << 10
	prog, printed := streamScript(t, l, 700_000)
	l.serveBob()
	defer l.stopBob()
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{prog}}}, true, nil)
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, r)
	}
	if r.Status != StatusDone || r.ExitCode != 0 || !r.Streamed {
		t.Fatalf("result %s exit %d streamed %v (%d bytes inline): %s; want done, exit 0, streamed", r.Status, r.ExitCode, r.Streamed, len(r.Stdout), r.Error)
	}
	want, _ := os.ReadFile(printed)
	got, err := os.ReadFile(r.StdoutPath)
	if err != nil || !bytes.Equal(got, want) || r.StdoutSize != int64(len(want)) {
		t.Fatalf("streamed stdout: %d bytes (size %d), %v; want the %d bytes printed", len(got), r.StdoutSize, err, len(want))
	}
	if errOut, _ := os.ReadFile(r.StderrPath); string(errOut) != "done\n" {
		t.Fatalf("streamed stderr %q", errOut)
	}
	if n := runs(t); n != 1 {
		t.Fatalf("ran %d times", n)
	}
	l.alice.store.View(func(tx *keystore.Tx) error {
		kr, _, _ := tx.Result(r.CommandID)
		if len(kr.Stdout) != 0 {
			t.Errorf("alice's result record holds %d bytes of output", len(kr.Stdout))
		}
		return tx.ForEachStreamIn(func(s *keystore.StreamIn) error {
			t.Errorf("alice still holds the stream of %x", s.Command)
			return nil
		})
	})
}
