package node

import (
	"testing"
	"time"

	"github.com/sealpost/sealpost/keystore"
)

// openEntries counts the ledger entries listed open (the ones Recover reads).
func openEntries(t *testing.T, n *Node) int {
	t.Helper()
	count := 0
	if err := n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachOpenLedger(func(_, _ [16]byte, _ []byte) error { count++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return count
}

// TestRecoverReadsOnlyOpenLedger: an answered command leaves no open ledger entry, so a restart
// reads none of the cached answers; an answered entry still listed open (a state from before
// schema 4 lists every entry open) is closed by Recover, which sends nothing for it.
func TestRecoverReadsOnlyOpenLedger(t *testing.T) {
	l := newLab(t)
	warmUp(t, l)
	if n := openEntries(t, l.bob); n != 0 {
		t.Fatalf("after an answered command bob's ledger lists %d entries open, want 0", n)
	}
	// As a migrated schema-3 state has it: every entry listed open.
	if err := l.bob.store.Update(func(tx *keystore.Tx) error {
		return tx.ForEachLedger(func(peer, cmd [16]byte, blob []byte) error {
			return tx.PutLedger(peer, cmd, l.bob.now().Add(time.Hour), blob)
		})
	}); err != nil {
		t.Fatal(err)
	}
	if n := openEntries(t, l.bob); n == 0 {
		t.Fatal("the ledger lists no entry open after PutLedger")
	}
	var outbox int
	if err := l.bob.Recover(l.ctx); err != nil {
		t.Fatal(err)
	}
	if n := openEntries(t, l.bob); n != 0 {
		t.Fatalf("after Recover bob's ledger lists %d entries open, want 0", n)
	}
	if err := l.bob.store.View(func(tx *keystore.Tx) error {
		items, err := tx.Outbox()
		outbox = len(items)
		return err
	}); err != nil || outbox != 0 {
		t.Fatalf("Recover of answered entries queued %d mails (%v), want none", outbox, err)
	}
}

// TestResultSummariesThroughSocket: the summaries come without output, in Results' order, the
// same from the node and through the control socket, and ResultsOf still reads the output.
func TestResultSummariesThroughSocket(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	for _, w := range []string{"one", "two", "three"} {
		l.run("echo", w)
	}
	l.stopBob()
	full, err := l.alice.Results(l.ctx)
	if err != nil || len(full) < 3 {
		t.Fatalf("Results = %d results, %v", len(full), err)
	}
	if _, err := l.alice.ListenControl(l.ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := DialControl(l.dirs["alice"])
	if err != nil {
		t.Fatal(err)
	}
	for name, api := range map[string]API{"node": l.alice, "client": cl} {
		var got []Result
		if err := api.ResultSummaries(l.ctx, func(r Result) error { got = append(got, r); return nil }); err != nil {
			t.Fatalf("%s: ResultSummaries: %v", name, err)
		}
		if len(got) != len(full) {
			t.Fatalf("%s: ResultSummaries gave %d results, Results %d", name, len(got), len(full))
		}
		for i, r := range got {
			if r.CommandID != full[i].CommandID || r.Status != full[i].Status || r.Stdout != nil || r.Stderr != nil {
				t.Errorf("%s: summary %d = %s %s with %d bytes of output; want %s %s without output", name, i, r.CommandID, r.Status, len(r.Stdout), full[i].CommandID, full[i].Status)
			}
		}
		one, err := api.ResultsOf(l.ctx, []CommandID{got[len(got)-1].CommandID})
		if err != nil || len(one) != 1 || string(one[0].Stdout) != "three\n" {
			t.Fatalf("%s: ResultsOf the last = %+v, %v; want its output", name, one, err)
		}
	}
}
