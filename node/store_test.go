package node

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

type peerNode struct {
	dir string
	st  *keystore.Store
	id  *session.Identity
	eng *session.Engine
}

// openStore opens the store in dir; at the end of the test it is checked and closed unless
// closeStore already did that.
func openStore(t *testing.T, dir string) *keystore.Store {
	t.Helper()
	st, err := keystore.Open(dir, keystore.Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !closed[st] {
			closeStore(t, st)
		}
	})
	return st
}

var closed = map[*keystore.Store]bool{}

func closeStore(t *testing.T, st *keystore.Store) {
	if err := st.Check(); err != nil {
		t.Errorf("keystore check: %v", err)
	}
	st.Close()
	closed[st] = true
}

func newPeerNode(t *testing.T, addr string, now func() time.Time) *peerNode {
	id, err := session.NewIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := session.NewEngine(session.Config{Identity: id, Address: addr, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return &peerNode{dir: dir, st: openStore(t, dir), id: id, eng: eng}
}

// receive applies one package in one transaction, as the engine will.
func (n *peerNode) receive(t *testing.T, pkg []byte) (session.Outcome, error) {
	t.Helper()
	var out session.Outcome
	err := n.st.Update(func(tx *keystore.Tx) error {
		var err error
		out, err = n.eng.Receive(TxStore{tx}, pkg)
		return err
	})
	return out, err
}

func (n *peerNode) update(t *testing.T, fn func(s TxStore) error) {
	t.Helper()
	if err := n.st.Update(func(tx *keystore.Tx) error { return fn(TxStore{tx}) }); err != nil {
		t.Fatal(err)
	}
}

// TestProtocolOverKeystore runs pairing, a handshake and commands with all state in bbolt, one
// transaction per package, reopening the stores in between, and checks that a rejected package
// leaves every byte of the database as it was.
func TestProtocolOverKeystore(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	a := newPeerNode(t, "alice@example.test", clock)
	b := newPeerNode(t, "bob@example.test", clock)

	code, err := session.GenerateCode(nil)
	if err != nil {
		t.Fatal(err)
	}
	var pa, pb []byte
	a.update(t, func(s TxStore) error {
		pa, err = a.eng.ArmPairing(s, session.PairRequest{Name: "bob", Address: "bob@example.test", Code: code})
		return err
	})
	b.update(t, func(s TxStore) error {
		pb, err = b.eng.ArmPairing(s, session.PairRequest{Name: "alice", Address: "alice@example.test", Code: code})
		return err
	})
	if out, err := b.receive(t, pa); err != nil || out.Kind != session.Paired {
		t.Fatalf("bob pairs: %v, %v", out.Kind, err)
	}
	if out, err := a.receive(t, pb); err != nil || out.Kind != session.Paired {
		t.Fatalf("alice pairs: %v, %v", out.Kind, err)
	}

	var req []byte
	a.update(t, func(s TxStore) error {
		req, _, err = a.eng.StartSession(s, b.id.Fingerprint())
		return err
	})
	hs, err := b.receive(t, req)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := a.receive(t, hs.Reply); err != nil || out.Kind != session.SessionConfirmed {
		t.Fatalf("confirm: %v, %v", out.Kind, err)
	}

	for i := range 3 {
		// State survives a restart of both nodes.
		for _, n := range []*peerNode{a, b} {
			closeStore(t, n.st)
			n.st = openStore(t, n.dir)
		}
		var cmd []byte
		a.update(t, func(s TxStore) error {
			cmd, err = a.eng.Send(s, b.id.Fingerprint(), session.CommandID{byte(i + 1)}, []byte("uptime"), now.Add(time.Hour))
			return err
		})
		// A tampered copy first: rejected, and the database is byte-identical.
		before, err := b.st.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Clone(cmd)
		bad[len(bad)-1] ^= 1
		if _, err := b.receive(t, bad); !errors.Is(err, session.ErrAuth) {
			t.Fatalf("tampered command: %v, want ErrAuth", err)
		}
		after, _ := b.st.Snapshot()
		if !reflect.DeepEqual(before, after) {
			t.Fatal("a rejected package changed the database")
		}
		out, err := b.receive(t, cmd)
		if err != nil || out.Kind != session.Execute {
			t.Fatalf("command %d: %v, %v", i, out.Kind, err)
		}
		var resp []byte
		b.update(t, func(s TxStore) error {
			resp, err = b.eng.Complete(s, out.Ticket, []byte("up 3 days"))
			return err
		})
		got, err := a.receive(t, resp)
		if err != nil || got.Kind != session.Delivered || string(got.Payload) != "up 3 days" || got.Epoch != uint64(i+1) {
			t.Fatalf("response %d: %v %q epoch %d, %v", i, got.Kind, got.Payload, got.Epoch, err)
		}
		// The duplicate runs nothing and, the answer having just gone out, sends nothing and
		// changes nothing.
		before, _ = b.st.Snapshot()
		dup, err := b.receive(t, cmd)
		if err != nil || dup.Kind != session.Replied || !dup.Duplicate || dup.Reply != nil {
			t.Fatalf("duplicate: %v, %v", dup.Kind, err)
		}
		after, _ = b.st.Snapshot()
		delete(before, "meta")
		delete(after, "meta") // the generation counter counts every commit
		if !reflect.DeepEqual(before, after) {
			t.Fatal("a duplicate changed the protocol state")
		}
	}
}

// TestUnansweredLedgerEntryOutlivesPurge: an entry still Accepted or Executing is not purged at
// its not_after plus the retention (it would then never run nor be answered); once Done it is.
func TestUnansweredLedgerEntryOutlivesPurge(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer closeStore(t, st)
	now := time.Now()
	e := &session.LedgerEntry{Peer: session.Fingerprint{1}, Command: session.CommandID{2}, State: session.Accepted, NotAfter: now.UnixMilli(), Payload: []byte("x")}
	purge := func() int {
		var n int
		if err := st.Update(func(tx *keystore.Tx) error {
			var err error
			n, err = tx.PurgeLedger(now.Add(session.LedgerRetention + time.Hour))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	put := func() {
		if err := st.Update(func(tx *keystore.Tx) error { return TxStore{tx}.PutLedger(e) }); err != nil {
			t.Fatal(err)
		}
	}
	for _, state := range []session.LedgerState{session.Accepted, session.Executing} {
		e.State = state
		put()
		if n := purge(); n != 0 {
			t.Fatalf("an entry %v was purged past its not_after", state)
		}
	}
	e.State = session.Done
	put()
	if n := purge(); n != 1 {
		t.Fatalf("purge removed %d Done entries past the retention, want 1", n)
	}
}
