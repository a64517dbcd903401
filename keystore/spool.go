package keystore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Large ledger entries live in files, not in the database. A finished ledger entry holds a whole
// cached answer (about twice the command's output) for the command's lifetime, and bbolt keeps
// several large values in one leaf page: putting any entry into that leaf rewrites and rereads
// all of them, through the memory map, so each new command made the agent read megabytes of
// other commands' answers, and those pages stayed in its resident set. A blob above
// SpoolThreshold is written to DIR/spool/ledger/<sha256 hex> instead, durably and before the
// transaction commits, and the database keeps only its hash:
//
//	ledger        peer || cmd -> T(notAfter)          (no blob: it is spooled)
//	ledger_spool  peer || cmd -> SHA-256 of the blob (32)
//
// A spooled blob is read whole when its entry is asked for (one command's answer), and checked
// against its hash. Files are named by content, so writing the same blob twice is harmless. A
// file whose entry was replaced or purged is removed after the commit; one left behind by a
// crash or a failed transaction (written, never committed, or committed and not yet removed) is
// removed by the next Open, which removes every file in DIR/spool/ledger that ledger_spool does not name.

// SpoolThreshold is the size above which a ledger blob is spooled to a file.
const SpoolThreshold = 64 << 10

const spoolDirName = "spool/ledger" // spool/in and spool/out are node's streams

// maxSpooled caps what a spooled file may hold when read back.
const maxSpooled = 1 << 31

func (s *Store) spoolDir() string { return filepath.Join(s.dir, spoolDirName) }

// spoolWrite writes blob to its file, durably, unless it is there already, and returns its hash.
func (tx *Tx) spoolWrite(blob []byte) ([32]byte, error) {
	sum := sha256.Sum256(blob)
	dir := tx.s.spoolDir()
	name := hex.EncodeToString(sum[:])
	if fi, err := os.Lstat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(blob)) {
		return sum, nil
	}
	if err := makePrivateDir(dir); err != nil {
		return sum, err
	}
	return sum, writeFileAtomic(dir, name, blob, true)
}

// spoolRead reads the blob whose hash is sum and checks it.
func (tx *Tx) spoolRead(sum []byte) ([]byte, error) {
	path := filepath.Join(tx.s.spoolDir(), hex.EncodeToString(sum))
	b, err := readPrivate(path, maxSpooled)
	if err != nil {
		return nil, corruptf("spooled ledger blob %x: %v", sum, err)
	}
	if got := sha256.Sum256(b); !bytes.Equal(got[:], sum) {
		return nil, corruptf("spooled ledger blob %x: the file's content has another hash", sum)
	}
	return b, nil
}

// spoolForget removes the file of sum after the transaction commits, unless hash keep (the
// entry's new blob) is the same.
func (tx *Tx) spoolForget(sum []byte, keep []byte) {
	if bytes.Equal(sum, keep) {
		return
	}
	path := filepath.Join(tx.s.spoolDir(), hex.EncodeToString(sum))
	tx.btx.OnCommit(func() { _ = os.Remove(path) })
}

// sweepSpool removes the files in DIR/spool/ledger that no ledger_spool row names (and leftover
// temporary files): written by a transaction that did not commit, or replaced by one that did
// before the old file was removed.
func (s *Store) sweepSpool() error {
	entries, err := os.ReadDir(s.spoolDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	named := map[string]bool{}
	if err := s.View(func(tx *Tx) error {
		return tx.bucket(bLedgerSpool).ForEach(func(_, v []byte) error {
			named[hex.EncodeToString(v)] = true
			return nil
		})
	}); err != nil {
		return err
	}
	removed := 0
	for _, e := range entries {
		if named[e.Name()] && e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if err := os.Remove(filepath.Join(s.spoolDir(), e.Name())); err == nil {
			removed++
		}
	}
	if removed > 0 {
		s.log.Info("spooled ledger files swept", "op", "sweep_spool", "count", removed)
	}
	return nil
}

// ledgerBlob returns the blob of the ledger value v stored under k: inline, or spooled.
func (tx *Tx) ledgerBlob(k, v []byte) ([]byte, error) {
	switch {
	case len(v) < timeKeyLen:
		return nil, corruptf("ledger %x: value is %d bytes", k, len(v))
	case len(v) > timeKeyLen:
		return clone(v[timeKeyLen:]), nil
	}
	sum := tx.bucket(bLedgerSpool).Get(k)
	if len(sum) != sha256.Size {
		return nil, corruptf("ledger %x: no blob and no spooled file", k)
	}
	return tx.spoolRead(sum)
}
