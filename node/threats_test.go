package node

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// forgedPair is fixtures.ForgedPair, failing the test on error.
func forgedPair(t *testing.T, address string) []byte {
	t.Helper()
	pkg, err := fixtures.ForgedPair(address)
	if err != nil {
		t.Fatal(err)
	}
	return pkg
}

// TestThreat30ForgedMailDoesNotStallTheInbox: PAIR mails whose address passed the protocol's
// check and failed the store's held up every mail behind them for a minute or more (5 attempts).
// Now they are rejected at once, and the command behind them is answered in the same pass.
func TestThreat30ForgedMailDoesNotStallTheInbox(t *testing.T) {
	l := newLab(t)
	tr, err := l.alice.transport()
	if err != nil {
		t.Fatal(err)
	}
	forged := []string{"x", "a b@c", "a\x01@c", "\u00a0x@c"}
	for _, addr := range forged {
		if err := tr.Send(l.ctx, "bob@example.test", forgedPair(t, addr)); err != nil {
			t.Fatal(err)
		}
	}
	id, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}})
	if err != nil {
		t.Fatal(err)
	}
	// One pass over bob's inbox handles all of it: no attempt is left for later.
	inspect := fixtures.IMAPInspector(l.relay.IMAPAddr(), l.users, nil)
	before := len(inspect(t, "bob@example.test", "sealpost/rejected"))
	n, err := l.bob.Pump(l.ctx, false, 0)
	if err != nil || n < len(forged)+1 {
		t.Fatalf("bob's Pump = %d, %v; want the %d forged mails rejected and the ping (and its handshake) handled", n, err, len(forged))
	}
	if got := len(inspect(t, "bob@example.test", "sealpost/rejected")) - before; got != len(forged) {
		t.Fatalf("%d mails moved to bob's rejected folder, want the %d forged ones", got, len(forged))
	}
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	l.serveBob()
	if r, err := l.alice.Wait(ctx, id, nil); err != nil || r.Status != StatusDone {
		t.Fatalf("ping behind forged mail: %+v, %v", r, err)
	}
}

// FuzzAddressRulesAgree: every address the protocol accepts (session.ValidAddress, applied to
// PAIR packages) is one the state store takes, so that an address decoded from a package can never
// fail in the store and be mistaken for the node's own trouble (THREATS row 30).
func FuzzAddressRulesAgree(f *testing.F) {
	for _, s := range []string{"bob@example.test", "x", "a b@c", "a\x01@c", "@c", "a@", "ä@ö.de", "a@b@c", strings.Repeat("a", 250) + "@b.c", "\u00a0x@c", "a\u2028@c"} {
		f.Add(s)
	}
	st, err := keystore.Open(f.TempDir(), keystore.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	f.Fuzz(func(t *testing.T, addr string) {
		if session.ValidAddress(addr) != nil {
			return
		}
		err := st.View(func(tx *keystore.Tx) error {
			_, _, err := tx.Pairing(addr)
			return err
		})
		if err != nil {
			t.Fatalf("session.ValidAddress(%q) = nil, but the store refuses it: %v", addr, err)
		}
		if err := st.Update(func(tx *keystore.Tx) error { return tx.PutPairing(addr, []byte("{}")) }); err != nil {
			t.Fatalf("session.ValidAddress(%q) = nil, but the store refuses it: %v", addr, err)
		}
	})
}

// TestThreat41EscapesInUnauthenticatedMail: the From header of a mail that does not authenticate
// reaches the agent's event line and its log escaped, never as raw control characters.
func TestThreat41EscapesInUnauthenticatedMail(t *testing.T) {
	l := newLab(t)
	var (
		mu     sync.Mutex
		events []Event
		logBuf bytes.Buffer
	)
	l.bob.opts.Events = func(e Event) { mu.Lock(); events = append(events, e); mu.Unlock() }
	l.bob.log = slog.New(slog.NewTextHandler(&logBuf, nil))
	evil := "\x1b]0;owned\x07\x1b[2J\u202eevil@example.test"
	raw := "From: " + evil + "\r\nTo: bob@example.test\r\nSubject: x\r\nX-Sealpost: 1\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n"
	fixtures.SMTPInjector(l.relay.SMTPAddr(), "x@example.test")(t, "bob@example.test", []byte(raw))
	if _, err := l.bob.Pump(l.ctx, false, 0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var seen bool
	for _, e := range events {
		if e.Kind != EventRejected {
			continue
		}
		seen = true
		for _, s := range []string{e.Peer, e.Detail, formatForTest(e)} {
			if strings.ContainsAny(s, "\x1b\x07\u202e") {
				t.Errorf("event text %q holds raw control characters", s)
			}
		}
	}
	if !seen {
		t.Fatal("the forged mail was not rejected")
	}
	if strings.ContainsAny(logBuf.String(), "\x1b\x07\u202e") {
		t.Errorf("log holds raw control characters:\n%s", logBuf.String())
	}
}

func formatForTest(e Event) string { return e.Peer + " " + e.Status + " " + e.Detail }

// TestThreat40OneLongCommandBlocksNoOtherPeer: while one peer's command runs, another peer's ping
// is answered, and the first peer's next command waits its turn (per-peer order).
func TestThreat40OneLongCommandBlocksNoOtherPeer(t *testing.T) {
	l := newLab(t)
	carol := l.open("carol", nil, true)
	added, err := carol.AddPeer(l.ctx, PeerSpec{Name: "bob", Address: "bob@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "carol", Address: "carol@example.test", Code: added.GeneratedCode}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		carol.Pump(l.ctx, false, 0)
		l.bob.Pump(l.ctx, false, 0)
	}

	// Alice's long command: it says it started, then blocks until the test releases it.
	long, started, release := blocker(t)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", Allow: []string{"echo", long}}); err != nil {
		t.Fatal(err)
	}
	l.serveBob()
	actx, stopAlice := context.WithCancel(l.ctx)
	aliceDone := make(chan struct{})
	go func() { defer close(aliceDone); l.alice.Serve(actx, false) }()
	defer func() { stopAlice(); <-aliceDone }()
	first, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{long}}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := l.alice.Submit(l.ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{"echo", "second"}}})
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer scancel()
	if _, err := readFIFO(sctx, started); err != nil {
		t.Fatalf("the long command never started: %v", err)
	}

	// Carol's ping is answered while Alice's command still runs.
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	r, err := carol.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}, true, nil)
	if err != nil || r.Status != StatusDone {
		t.Fatalf("carol's ping while alice's command runs: %+v, %v", r, err)
	}
	// Bob has not run Alice's second command either: it waits behind her first.
	if bobRan(t, l.bob, second) {
		t.Fatal("alice's second command ran before her first ended")
	}
	if err := os.WriteFile(release, []byte("go\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, id := range []session.CommandID{first, second} {
		if r, err := l.alice.Wait(ctx, id, nil); err != nil || r.Status != StatusDone {
			t.Fatalf("alice's command after the release: %+v, %v", r, err)
		}
	}
}

// blocker writes a program that, run, says so through the named pipe started, then blocks
// until something is written to the named pipe release: a command the test sees start and ends.
func blocker(t *testing.T) (program, started, release string) {
	t.Helper()
	dir := t.TempDir()
	started, release = filepath.Join(dir, "started"), filepath.Join(dir, "release")
	for _, f := range []string{started, release} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	program = filepath.Join(dir, "long")
	if err := os.WriteFile(program, []byte("#!/bin/sh\necho up > "+started+"\nread x < "+release+"\necho done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return program, started, release
}

// bobRan reports whether b's ledger has the command done.
func bobRan(t *testing.T, b *Node, id session.CommandID) bool {
	t.Helper()
	done := false
	if err := b.view(func(tx *keystore.Tx, st TxStore) error {
		return tx.ForEachLedger(func(_, cmd [16]byte, blob []byte) error {
			if cmd == id {
				e, err := decode[session.LedgerEntry](blob, "ledger entry")
				done = err == nil && e.State == session.Done

			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return done
}

// readFIFO reads what the writer of the named pipe writes, until it closes it or ctx ends.
func readFIFO(ctx context.Context, path string) ([]byte, error) {
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1)
	go func() { b, err := os.ReadFile(path); ch <- res{b, err} }()
	select {
	case r := <-ch:
		return r.b, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestThreat31ProcessedFolderShowsHostRestore: the whole state directory (database and sidecar
// together, no witness: a snapshot of the whole host) is put back after a command ran, and the
// command mail is replayed. The state store cannot tell; the newest mail in the processed folder,
// which the agent moved there only after committing it, can: the command does not run again.
func TestThreat31ProcessedFolderShowsHostRestore(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	l.run("echo", "warm-up")
	l.stopBob()
	l.bob.Close()
	backup := t.TempDir()
	copyDir(t, l.dirs["bob"], backup)

	l.bob = l.open("bob", nil, false)
	l.serveBob()
	if r := l.run(countScript); r.Status != StatusDone || runs(t) != 1 {
		t.Fatalf("count: %+v, runs %d", r, runs(t))
	}
	l.stopBob()
	l.bob.Close()
	if err := os.RemoveAll(l.dirs["bob"]); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, l.dirs["bob"])
	if n := reinject(t, l); n == 0 {
		t.Fatal("nothing was re-injected")
	}
	l.bob = l.open("bob", nil, false)
	if rb := l.bob.store.Rollback(); rb.Detected {
		t.Fatalf("the state store detected the restore (%v); this test is about what it cannot see", rb.Reason)
	}
	if err := l.bob.Serve(l.ctx, true); err != nil {
		t.Fatal(err)
	}
	if n := runs(t); n != 1 {
		t.Fatalf("the command ran %d times after the host was restored and its mail replayed; want 1", n)
	}
	var floor bool
	l.bob.store.View(func(tx *keystore.Tx) error {
		_, floor, _ = tx.RestoreFloor()
		return nil
	})
	if !floor {
		t.Fatal("no restore floor was set")
	}
	// The next start does not take the same mail for another restore.
	if found, err := l.bob.checkProcessed(l.ctx); err != nil || found {
		t.Fatalf("second check: %v, %v; want nothing found", found, err)
	}
}

// copyDir copies the regular files of src into dst (created 0700), keeping their modes.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFirstProcessedCheckIsABaseline: a state that never checked its processed folder (written by
// an earlier version, which did not record clock and expiry refusals in the ledger) takes what the
// folder holds as its baseline instead of as a restore.
func TestFirstProcessedCheckIsABaseline(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	l.run(countScript)
	l.stopBob()
	// As an earlier version would have left it: no mark, and a processed command the ledger
	// does not know.
	if err := l.bob.store.Update(func(tx *keystore.Tx) error {
		if _, err := tx.PurgeLedger(time.Now().Add(100 * 365 * 24 * time.Hour)); err != nil {
			return err
		}
		return tx.DeleteProcessedMark()
	}); err != nil {
		t.Fatal(err)
	}
	gen := func() string {
		b, err := os.ReadFile(filepath.Join(l.dirs["bob"], "state.gen"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for i := range 2 {
		before := gen()
		if found, err := l.bob.checkProcessed(l.ctx); err != nil || found {
			t.Fatalf("check %d: found a restore = %v, %v; want none", i+1, found, err)
		}
		// The first check records its baseline; an ordinary one after it commits nothing.
		if changed := gen() != before; changed != (i == 0) {
			t.Fatalf("check %d: the state's commit counter changed: %v, want %v", i+1, changed, i == 0)
		}
	}
}
