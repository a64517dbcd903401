package keystore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Memory over time (schema 4): a restart reads only the open ledger entries, and a listing of
// results reads no output.

// openLedger lists the (peer, cmd) pairs ForEachOpenLedger walks, with their blobs.
func openLedger(t *testing.T, s *Store) map[[2][16]byte]string {
	t.Helper()
	got := map[[2][16]byte]string{}
	mustView(t, s, func(tx *Tx) error {
		return tx.ForEachOpenLedger(func(peer, cmd [16]byte, blob []byte) error {
			got[[2][16]byte{peer, cmd}] = string(blob)
			return nil
		})
	})
	return got
}

func TestLedgerOpenIndex(t *testing.T) {
	s := openTestStore(t)
	alice := tid(1000)
	later := t0.Add(time.Hour)
	mustUpdate(t, s, func(tx *Tx) error {
		for _, e := range []struct {
			cmd  int
			open bool
		}{{1, true}, {2, false}, {3, true}} {
			if err := tx.PutLedgerEntry(alice, tid(e.cmd), later, e.open, []byte{byte(e.cmd)}); err != nil {
				return err
			}
		}
		return tx.PutLedger(alice, tid(4), t0, []byte{4}) // PutLedger: open, the safe default
	})
	want := map[[2][16]byte]string{{alice, tid(1)}: "\x01", {alice, tid(3)}: "\x03", {alice, tid(4)}: "\x04"}
	if got := openLedger(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("ForEachOpenLedger = %v, want %v", got, want)
	}
	// Answering an entry (put finished), closing one, and purging one each take it off the list;
	// the ledger still holds the first two.
	mustUpdate(t, s, func(tx *Tx) error {
		if err := tx.PutLedgerEntry(alice, tid(1), later, false, []byte("answer")); err != nil {
			return err
		}
		if err := tx.CloseLedger(alice, tid(3)); err != nil {
			return err
		}
		_, err := tx.PurgeLedger(t0.Add(time.Second))
		return err
	})
	if got := openLedger(t, s); len(got) != 0 {
		t.Fatalf("ForEachOpenLedger after answering, closing and purging = %v, want none", got)
	}
	mustView(t, s, func(tx *Tx) error {
		if b, ok, err := tx.Ledger(alice, tid(1)); err != nil || !ok || string(b) != "answer" {
			t.Errorf("Ledger(1) = %q, %v, %v; want the answer", b, ok, err)
		}
		return nil
	})
	// A walk may close the entry it is given (Recover does): the rest are still walked.
	mustUpdate(t, s, func(tx *Tx) error {
		for _, c := range []int{5, 6, 7} {
			if err := tx.PutLedger(alice, tid(c), later, []byte{byte(c)}); err != nil {
				return err
			}
		}
		n := 0
		err := tx.ForEachOpenLedger(func(peer, cmd [16]byte, _ []byte) error {
			n++
			return tx.CloseLedger(peer, cmd)
		})
		if n != 3 {
			t.Errorf("a walk that closes each entry saw %d, want 3", n)
		}
		return err
	})
	if got := openLedger(t, s); len(got) != 0 {
		t.Fatalf("ForEachOpenLedger after closing every entry = %v, want none", got)
	}
}

// TestLedgerOpenCheck: Check finds an open row without its entry.
func TestLedgerOpenCheck(t *testing.T) {
	s := openTestStore(t)
	rawUpdate(t, s, func(btx *bolt.Tx) error {
		return btx.Bucket(bLedgerOpen).Put(pairKey(tid(1), tid(2)), []byte{})
	})
	if err := s.Check(); err == nil {
		t.Fatal("Check accepted a ledger_open row with no ledger entry")
	}
	rawUpdate(t, s, func(btx *bolt.Tx) error { return btx.Bucket(bLedgerOpen).Delete(pairKey(tid(1), tid(2))) })
}

func bigResult(id int, sent time.Time, out string) Result {
	return Result{CommandID: tid(id), Peer: "bob", Command: []string{"head"}, Status: "done", Outcome: "exited",
		Stdout: []byte(out), Stderr: []byte("err " + out), Sent: sent, Finished: sent.Add(time.Second)}
}

func TestResultOutputApart(t *testing.T) {
	s := openTestStore(t)
	mustUpdate(t, s, func(tx *Tx) error {
		for i := 1; i <= 5; i++ {
			if err := tx.PutResult(bigResult(i, t0.Add(time.Duration(i)*time.Minute), string(bytes.Repeat([]byte{'a' + byte(i)}, 1000)))); err != nil {
				return err
			}
		}
		return nil
	})
	// The record holds no output: a walk over the records does not read it.
	rawView := func(fn func(*bolt.Tx)) {
		if err := s.db.View(func(btx *bolt.Tx) error { fn(btx); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	id := tid(3)
	rawView(func(btx *bolt.Tx) {
		v := btx.Bucket(bResults).Get(id[:])
		if len(v) > 400 || bytes.Contains(v, []byte("stdout")) {
			t.Errorf("the result record is %d bytes: %s; want no output in it", len(v), v)
		}
	})
	mustView(t, s, func(tx *Tx) error {
		r, ok, err := tx.Result(tid(3))
		if err != nil || !ok || string(r.Stdout) != string(bytes.Repeat([]byte{'d'}, 1000)) || string(r.Stderr) != "err "+string(r.Stdout) {
			t.Errorf("Result(3) = %d+%d bytes of output, %v, %v; want its output", len(r.Stdout), len(r.Stderr), ok, err)
		}
		out, errOut, ok, err := tx.ResultOutput(tid(3))
		if err != nil || !ok || !bytes.Equal(out, r.Stdout) || !bytes.Equal(errOut, r.Stderr) {
			t.Errorf("ResultOutput(3) = %d+%d bytes, %v, %v", len(out), len(errOut), ok, err)
		}
		// Summaries come without output, in order, and resume after a cursor.
		var ids []byte
		var cursor []byte
		err = tx.ResultSummaries(nil, func(r Result, c []byte) (bool, error) {
			if r.Stdout != nil || r.Stderr != nil {
				t.Errorf("summary %x has output", r.CommandID)
			}
			ids, cursor = append(ids, r.CommandID[15]), c
			return len(ids) < 2, nil
		})
		if err != nil {
			return err
		}
		err = tx.ResultSummaries(cursor, func(r Result, _ []byte) (bool, error) {
			ids = append(ids, r.CommandID[15])
			return true, nil
		})
		want := []byte{tid(1)[15], tid(2)[15], tid(3)[15], tid(4)[15], tid(5)[15]}
		if !bytes.Equal(ids, want) {
			t.Errorf("ResultSummaries in two pages = %v, want %v", ids, want)
		}
		return err
	})
	// An empty output deletes its row; a prune deletes the output with the record.
	mustUpdate(t, s, func(tx *Tx) error {
		r := bigResult(2, t0.Add(2*time.Minute), "")
		r.Stderr = nil
		if err := tx.PutResult(r); err != nil {
			return err
		}
		_, err := tx.PruneResults(t0.Add(time.Hour), 0)
		return err
	})
	rawView(func(btx *bolt.Tx) {
		if n := btx.Bucket(bResultOutput).Stats().KeyN; n != 0 {
			t.Errorf("result_output holds %d rows after every result was pruned, want 0", n)
		}
	})
}

// TestMigrate3to4 opens a schema-3 file: every ledger entry is listed open (keystore cannot tell
// which are finished), and a result whose output is inline reads as before and moves its output
// out when it is put again.
func TestMigrate3to4(t *testing.T) {
	s := openTestStore(t)
	alice := tid(1000)
	mustUpdate(t, s, func(tx *Tx) error {
		for c := 1; c <= 3; c++ {
			if err := tx.PutLedgerEntry(alice, tid(c), t0.Add(time.Hour), false, []byte{byte(c)}); err != nil {
				return err
			}
		}
		return nil
	})
	// Schema 3: no ledger_open, no result_output, a result with its output inline.
	legacy := bigResult(9, t0, "inline output")
	rawUpdate(t, s, func(btx *bolt.Tx) error {
		for _, b := range [][]byte{bLedgerOpen, bResultOutput} {
			if err := btx.DeleteBucket(b); err != nil {
				return err
			}
		}
		v, err := json.Marshal(legacy.record())
		if err != nil {
			return err
		}
		if err := btx.Bucket(bResults).Put(legacy.CommandID[:], v); err != nil {
			return err
		}
		if err := btx.Bucket(bResultsBySent).Put(legacy.indexKey(), []byte{}); err != nil {
			return err
		}
		return btx.Bucket(bMeta).Put(metaSchema, binary.BigEndian.AppendUint64(nil, 3))
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTestStoreIn(t, s.Dir(), Options{})
	if got := openLedger(t, s); len(got) != 3 {
		t.Fatalf("after migrating, ForEachOpenLedger lists %d entries, want all 3", len(got))
	}
	mustView(t, s, func(tx *Tx) error {
		r, ok, err := tx.Result(legacy.CommandID)
		if err != nil || !ok || string(r.Stdout) != "inline output" {
			t.Errorf("the schema-3 result reads %q, %v, %v; want its inline output", r.Stdout, ok, err)
		}
		return tx.ResultSummaries(nil, func(r Result, _ []byte) (bool, error) {
			if r.Stdout != nil {
				t.Errorf("the schema-3 result's summary has output %q", r.Stdout)
			}
			return true, nil
		})
	})
	mustUpdate(t, s, func(tx *Tx) error {
		r, _, err := tx.Result(legacy.CommandID)
		if err != nil {
			return err
		}
		r.Attempts++
		return tx.PutResult(r)
	})
	mustView(t, s, func(tx *Tx) error {
		if v := tx.bucket(bResults).Get(legacy.CommandID[:]); bytes.Contains(v, []byte("stdout")) {
			t.Errorf("put again, the result still holds its output inline: %s", v)
		}
		if r, _, err := tx.Result(legacy.CommandID); err != nil || string(r.Stdout) != "inline output" {
			t.Errorf("put again, the result reads %q, %v", r.Stdout, err)
		}
		return nil
	})
	var schema []byte
	if err := s.db.View(func(btx *bolt.Tx) error { schema = clone(btx.Bucket(bMeta).Get(metaSchema)); return nil }); err != nil {
		t.Fatal(err)
	}
	if v := binary.BigEndian.Uint64(schema); v != schemaVersion {
		t.Fatalf("schema after Open = %d, want %d", v, schemaVersion)
	}
}

// TestLedgerSpool: a blob above SpoolThreshold lives in a file named by its hash, reads back the
// same, and its file goes when the entry is replaced or purged; a file no entry names is swept
// by the next Open.
func TestLedgerSpool(t *testing.T) {
	s := openTestStore(t)
	alice := tid(1000)
	big := bytes.Repeat([]byte("answer "), SpoolThreshold/4)
	spooled := func() int {
		es, _ := os.ReadDir(filepath.Join(s.Dir(), spoolDirName))
		return len(es)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutLedgerEntry(alice, tid(1), t0, false, big) })
	if n := spooled(); n != 1 {
		t.Fatalf("a %d-byte blob left %d spooled files, want 1", len(big), n)
	}
	mustView(t, s, func(tx *Tx) error {
		if b, ok, err := tx.Ledger(alice, tid(1)); err != nil || !ok || !bytes.Equal(b, big) {
			t.Errorf("Ledger of the spooled entry = %d bytes, %v, %v; want the blob", len(b), ok, err)
		}
		if v := tx.bucket(bLedger).Get(pairKey(alice, tid(1))); len(v) != timeKeyLen {
			t.Errorf("the ledger value is %d bytes, want only its time", len(v))
		}
		return nil
	})
	// Replaced by a small blob: the file goes after the commit.
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutLedgerEntry(alice, tid(1), t0, false, []byte("small")) })
	if n := spooled(); n != 0 {
		t.Fatalf("after replacing the spooled blob, %d files remain, want 0", n)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutLedgerEntry(alice, tid(2), t0, false, big) })
	mustUpdate(t, s, func(tx *Tx) error { _, err := tx.PurgeLedger(t0.Add(time.Second)); return err })
	if n := spooled(); n != 0 {
		t.Fatalf("after purging the spooled entry, %d files remain, want 0", n)
	}
	// A transaction that fails after spooling leaves a file; the next Open removes it.
	boom := errors.New("boom")
	if err := s.Update(func(tx *Tx) error {
		if err := tx.PutLedgerEntry(alice, tid(3), t0, false, big); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if n := spooled(); n != 1 {
		t.Fatalf("a failed transaction left %d files, want the 1 it wrote", n)
	}
	s = reopen(t, s, Options{})
	if n := spooled(); n != 0 {
		t.Fatalf("after Open, %d unnamed files remain, want 0", n)
	}
}
