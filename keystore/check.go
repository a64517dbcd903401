package keystore

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// maxCheckErrors caps Check's report: one broken index can produce an error
// per key, and the first few say enough.
const maxCheckErrors = 50

// Check verifies the file: bbolt's own page-level check, then keystore's
// invariants — only known buckets (a schema-2 file has no config bucket),
// every key the right length and shape, every record decodes and validates,
// every index (sessions, pending and queued commands by peer, ledger expiry,
// peers by fingerprint, results by time) matches its main bucket both ways,
// no allow list held for a pinned name, and no outbox id above the bucket's
// sequence. It returns nil or an
// error joining what it found (each wrapping ErrCorrupt for our invariants).
func (s *Store) Check() error {
	// bbolt's Check is only safe alongside writers when run in a writable
	// transaction, so take one and roll it back: Check never commits, and so
	// never moves the generation.
	btx, err := s.db.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = btx.Rollback() }()
	var errs []error
	for e := range btx.Check() {
		errs = append(errs, fmt.Errorf("bbolt: %w", e))
	}
	c := &checker{btx: btx, dir: s.dir}
	c.run()
	errs = append(errs, c.errs...)
	if len(errs) > maxCheckErrors {
		errs = append(errs[:maxCheckErrors], fmt.Errorf("... and %d more", len(errs)-maxCheckErrors))
	}
	return errors.Join(errs...)
}

type checker struct {
	dir  string // the state directory, for the spooled files
	btx  *bolt.Tx
	errs []error
}

func (c *checker) fail(format string, args ...any) {
	c.errs = append(c.errs, corruptf(format, args...))
}

// each walks one bucket, flagging nested buckets (keystore never makes any).
func (c *checker) each(name []byte, fn func(k, v []byte)) {
	b := c.btx.Bucket(name)
	if b == nil {
		return // reported by run
	}
	_ = b.ForEach(func(k, v []byte) error {
		if v == nil {
			c.fail("%s: nested bucket %q", name, k)
			return nil
		}
		fn(k, v)
		return nil
	})
}

func (c *checker) has(name, k []byte) ([]byte, bool) {
	b := c.btx.Bucket(name)
	if b == nil {
		return nil, false
	}
	v := b.Get(k)
	return v, v != nil
}

func (c *checker) run() {
	known := map[string]bool{}
	for _, n := range allBuckets {
		known[string(n)] = true
		if c.btx.Bucket(n) == nil {
			c.fail("bucket %s is missing", n)
		}
	}
	_ = c.btx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		if !known[string(name)] {
			c.fail("unknown bucket %q", name)
		}
		return nil
	})
	c.meta()
	c.indexed(sessionBlobs)
	c.indexed(pendingBlobs)
	c.ledger()
	c.simple()
	c.peers()
	c.outbox()
	c.results()
	c.sendQueue()
	c.nodeRecords()
	c.schedules()
}

// schedules checks the schedules and their runs: each run belongs to a schedule, each pending
// time names a run, and no schedule keeps more runs than MaxScheduleRuns beyond its pending ones.
func (c *checker) schedules() {
	pending := map[string]int{}
	c.each(bSchedules, func(k, v []byte) {
		s, err := decodeSchedule(k, v)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		pending[s.Name] = len(s.Pending)
		for _, p := range s.Pending {
			if _, ok := c.has(bScheduleRuns, runKey(s.Name, p)); !ok {
				c.fail("schedule %q: pending run fired at %s is not kept", s.Name, p)
			}
		}
	})
	runs := map[string]int{}
	c.each(bScheduleRuns, func(k, v []byte) {
		r, err := decodeScheduleRun(k, v)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		if _, ok := pending[r.Schedule]; !ok {
			c.fail("schedule_runs: a run of %q, which is no schedule", r.Schedule)
		}
		runs[r.Schedule]++
	})
	for name, n := range runs {
		if n > MaxScheduleRuns+pending[name] {
			c.fail("schedule %q keeps %d runs, above %d", name, n, MaxScheduleRuns)
		}
	}
}

func (c *checker) meta() {
	c.each(bMeta, func(k, v []byte) {
		switch {
		case bytes.Equal(k, metaSchema), bytes.Equal(k, metaGeneration):
			if len(v) != 8 {
				c.fail("meta/%s is %d bytes", k, len(v))
			}
		case bytes.Equal(k, metaRollback):
			var info RollbackInfo
			if err := json.Unmarshal(v, &info); err != nil || !info.Detected {
				c.fail("meta/rollback does not decode to a detected rollback")
			}
		case bytes.Equal(k, metaStoreID):
			if len(v) != 16 || bytes.Equal(v, make([]byte, 16)) {
				c.fail("meta/store_id is %d bytes or zero", len(v))
			}
		case bytes.Equal(k, metaWitness):
			if !utf8.Valid(v) || !filepath.IsAbs(string(v)) || filepath.Clean(string(v)) != string(v) {
				c.fail("meta/witness %q is not a clean absolute path", v)
			}
		default:
			c.fail("meta: unknown key %q", k)
		}
	})
}

func (c *checker) indexed(ix indexedBlobs) {
	c.each(ix.main, func(k, v []byte) {
		if len(k) != 16 || len(v) <= 16 {
			c.fail("%s: key %x (%d bytes) value %d bytes", ix.main, k, len(k), len(v))
			return
		}
		if _, ok := c.has(ix.index, append(clone(v[:16]), k...)); !ok {
			c.fail("%s %x: missing from %s", ix.main, k, ix.index)
		}
	})
	c.each(ix.index, func(k, v []byte) {
		if len(k) != 32 || len(v) != 0 {
			c.fail("%s: key %x (%d bytes) value %d bytes", ix.index, k, len(k), len(v))
			return
		}
		main, ok := c.has(ix.main, k[16:])
		if !ok || len(main) < 16 || !bytes.Equal(main[:16], k[:16]) {
			c.fail("%s %x: no matching %s entry", ix.index, k, ix.main)
		}
	})
}

func (c *checker) ledger() {
	c.each(bLedger, func(k, v []byte) {
		if len(k) != 32 || len(v) < timeKeyLen {
			c.fail("ledger: key %x (%d bytes) value %d bytes", k, len(k), len(v))
			return
		}
		if _, ok := c.has(bLedgerSpool, k); len(v) == timeKeyLen && !ok {
			c.fail("ledger %x: no blob and no spooled file", k)
		}
		if _, ok := c.has(bLedgerExpiry, append(clone(v[:timeKeyLen]), k...)); !ok {
			c.fail("ledger %x: missing from ledger_expiry", k)
		}
	})
	c.each(bLedgerExpiry, func(k, v []byte) {
		if len(k) != timeKeyLen+32 || len(v) != 0 {
			c.fail("ledger_expiry: key %x (%d bytes) value %d bytes", k, len(k), len(v))
			return
		}
		led, ok := c.has(bLedger, k[timeKeyLen:])
		if !ok || len(led) < timeKeyLen || !bytes.Equal(led[:timeKeyLen], k[:timeKeyLen]) {
			c.fail("ledger_expiry %x: no matching ledger entry", k)
		}
	})
	c.each(bLedgerSpool, func(k, v []byte) {
		led, ok := c.has(bLedger, k)
		switch {
		case len(k) != 32 || len(v) != 32:
			c.fail("ledger_spool: key %x (%d bytes) value %d bytes", k, len(k), len(v))
		case !ok || len(led) != timeKeyLen:
			c.fail("ledger_spool %x: no ledger entry without an inline blob", k)
		default:
			if fi, err := os.Lstat(filepath.Join(c.dir, spoolDirName, hex.EncodeToString(v))); err != nil || !fi.Mode().IsRegular() {
				c.fail("ledger_spool %x: its file %x is missing or not a regular file", k, v)
			}
		}
	})
	c.each(bLedgerOpen, func(k, v []byte) {
		if len(k) != 32 || len(v) != 0 {
			c.fail("ledger_open: key %x (%d bytes) value %d bytes", k, len(k), len(v))
		} else if _, ok := c.has(bLedger, k); !ok {
			c.fail("ledger_open %x: no matching ledger entry", k)
		}
	})
}

// simple checks the buckets without cross-references.
func (c *checker) simple() {
	c.each(bPairings, func(k, v []byte) {
		if err := checkAddress("pairing address", string(k)); err != nil || len(v) == 0 {
			c.fail("pairings: key %q value %d bytes: %v", k, len(v), err)
		}
	})
	c.each(bIdentity, func(k, v []byte) {
		var r identityRecord
		if !bytes.Equal(k, identityKey) {
			c.fail("identity: unknown key %q", k)
		} else if err := json.Unmarshal(v, &r); err != nil {
			c.fail("identity: %v", err)
		} else if err := Identity(r).validate(); err != nil {
			c.fail("identity: %v", err)
		}
	})
	c.each(bCursors, func(k, v []byte) {
		var r cursorRecord
		if err := checkMailbox(string(k)); err != nil {
			c.fail("cursors: %v", err)
		} else if err := json.Unmarshal(v, &r); err != nil {
			c.fail("cursor %q: %v", k, err)
		}
	})
	c.each(bOwedAcks, func(k, v []byte) {
		if _, err := decodeOwedAck(k, v); err != nil {
			c.errs = append(c.errs, err)
		}
	})
	c.each(bPeerState, func(k, v []byte) {
		if _, err := decodePeerState(k, v); err != nil {
			c.errs = append(c.errs, err)
		}
	})
	c.each(bReportTo, func(k, v []byte) {
		if _, err := decodeReportTo(k, v); err != nil {
			c.errs = append(c.errs, err)
		}
	})
	nchecks := 0
	c.each(bChecks, func(k, v []byte) {
		if nchecks++; nchecks == MaxChecks+1 {
			c.fail("checks: more than %d", MaxChecks)
		}
		if _, err := decodeAgentCheck(k, v); err != nil {
			c.errs = append(c.errs, err)
		}
	})
	c.each(bPeerTags, func(k, v []byte) {
		if _, err := decodeTags(k, v); err != nil {
			c.errs = append(c.errs, err)
		}
	})
	c.each(bAllowUnpinned, func(k, v []byte) {
		if _, err := decodeAllowList(k, v); err != nil {
			c.errs = append(c.errs, err)
		} else if _, ok := c.has(bPeers, k); ok {
			c.fail("allow_unpinned %q: the peer is pinned; its allow list is in its record", k)
		}
	})
}

func (c *checker) peers() {
	c.each(bPeers, func(k, v []byte) {
		var r peerRecord
		if err := json.Unmarshal(v, &r); err != nil {
			c.fail("peer %q: %v", k, err)
			return
		}
		p, err := r.peer()
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		if p.Name != string(k) {
			c.fail("peer under key %q is named %q", k, p.Name)
		}
		if err := p.validate(); err != nil {
			c.fail("peer %q: %v", k, err)
		}
		if owner, ok := c.has(bPeersByFP, p.Fingerprint[:]); !ok || !bytes.Equal(owner, k) {
			c.fail("peer %q: fingerprint %x not indexed to it", k, p.Fingerprint)
		}
	})
	c.each(bPeersByFP, func(k, v []byte) {
		if len(k) != 16 {
			c.fail("peers_by_fp: key %x is %d bytes", k, len(k))
			return
		}
		raw, ok := c.has(bPeers, v)
		var r peerRecord
		if !ok || json.Unmarshal(raw, &r) != nil {
			c.fail("peers_by_fp %x: names missing peer %q", k, v)
			return
		}
		if p, err := r.peer(); err != nil || !bytes.Equal(p.Fingerprint[:], k) {
			c.fail("peers_by_fp %x: peer %q has another fingerprint", k, v)
		}
	})
}

func (c *checker) outbox() {
	b := c.btx.Bucket(bOutbox)
	if b == nil {
		return
	}
	seq := b.Sequence()
	c.each(bOutbox, func(k, v []byte) {
		o, err := decodeOutbox(k, v)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		if o.ID == 0 || o.ID > seq {
			c.fail("outbox id %d is not below the sequence %d", binary.BigEndian.Uint64(k), seq)
		}
		if err := o.validate(); err != nil {
			c.fail("outbox %d: %v", o.ID, err)
		}
	})
}

func (c *checker) results() {
	c.each(bResults, func(k, v []byte) {
		r, err := decodeResult(k, v)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		if err := r.validate(); err != nil {
			c.fail("result %x: %v", k, err)
		}
		if _, ok := c.has(bResultsBySent, r.indexKey()); !ok {
			c.fail("result %x: missing from results_by_sent", k)
		}
	})
	c.each(bResultsBySent, func(k, v []byte) {
		if len(k) != resultIndexLen || len(v) != 0 {
			c.fail("results_by_sent: key %x (%d bytes) value %d bytes", k, len(k), len(v))
			return
		}
		raw, ok := c.has(bResults, k[timeKeyLen:])
		if !ok {
			c.fail("results_by_sent %x: no such result", k)
			return
		}
		if r, err := decodeResult(k[timeKeyLen:], raw); err == nil && !bytes.Equal(r.indexKey(), k) {
			c.fail("results_by_sent %x: the result was sent at another time", k)
		}
	})
	c.each(bResultOutput, func(k, v []byte) {
		if len(k) != 17 || (k[16] != streamStdout && k[16] != streamStderr) || len(v) == 0 {
			c.fail("result_output: key %x (%d bytes) value %d bytes", k, len(k), len(v))
			return
		}
		raw, ok := c.has(bResults, k[:16])
		if !ok {
			c.fail("result_output %x: no such result", k)
			return
		}
		if r, err := decodeResult(k[:16], raw); err == nil && (r.Stdout != nil || r.Stderr != nil) {
			c.fail("result_output %x: the result holds its output inline too", k)
		}
	})
}

func (c *checker) sendQueue() {
	c.each(bSendQueue, func(k, v []byte) {
		q, err := decodeQueued(k, v)
		if err != nil {
			c.errs = append(c.errs, err)
			return
		}
		if _, ok := c.has(bSendQueueByPeer, q.indexKey()); !ok {
			c.fail("send_queue %x: missing from send_queue_by_peer", k)
		}
	})
	c.each(bSendQueueByPeer, func(k, v []byte) {
		if len(k) != queueIndexLen || len(v) != 0 {
			c.fail("send_queue_by_peer: key %x (%d bytes) value %d bytes", k, len(k), len(v))
			return
		}
		id := k[16+timeKeyLen:]
		raw, ok := c.has(bSendQueue, id)
		if !ok {
			c.fail("send_queue_by_peer %x: no such queued command", k)
			return
		}
		if q, err := decodeQueued(id, raw); err == nil && !bytes.Equal(q.indexKey(), k) {
			c.fail("send_queue_by_peer %x: the command has another peer or issue time", k)
		}
	})
}

func (c *checker) nodeRecords() {
	c.each(bNode, func(k, v []byte) {
		if _, err := decodeNodeEntry(k, v); err != nil {
			c.errs = append(c.errs, err)
		}
	})
}
