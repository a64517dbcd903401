package keystore

import (
	"encoding/binary"
	"testing"
	"time"
)

// BenchmarkUpdate measures one small commit as the agent makes it per
// received package: a ledger entry and a session advance. bbolt's fsync is
// left on (never NoSync), so this is the real per-package cost, dominated by
// the disk's sync latency; the generation sidecar write is included.
func BenchmarkUpdate(b *testing.B) {
	s := openTestStore(b)
	peer, sid := tid(1), tid(2)
	session := make([]byte, 256)
	ledger := make([]byte, 64)
	notAfter := time.Now().Add(24 * time.Hour)
	var n uint64
	b.ReportAllocs()
	for b.Loop() {
		n++
		cmd := tid(3)
		binary.BigEndian.PutUint64(cmd[:8], n)
		if err := s.Update(func(tx *Tx) error {
			if err := tx.PutLedger(peer, cmd, notAfter, ledger); err != nil {
				return err
			}
			return tx.PutSession(sid, peer, session)
		}); err != nil {
			b.Fatal(err)
		}
	}
}
