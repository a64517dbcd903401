package keystore

import (
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Schema 1 kept node's own records in a generic bucket,
//
//	config  key -> raw bytes
//
// under these keys, in node's encodings:
//
//	"mailbox"                     JSON object (the mailbox settings)   -> node/mailbox
//	"restore-floor", "last-prune" time.Time MarshalText (RFC 3339)    -> node/restore_floor, node/last_prune (T)
//	"processed-mark"              JSON {uidvalidity, uid, rebase}      -> node/processed_mark
//	"failing-mail"                JSON {uidvalidity, uid, first, count} -> node/failing_mail
//	"owed-ack/<uidvalidity>-<uid>" JSON {mailbox, uidvalidity, uid}    -> owed_acks
//	"policy/<peer name>"          JSON array of strings                -> Peer.Allow, or allow_unpinned
//	                                                                      for a name not pinned yet
//	"queue/<cmd id hex>"          JSON {peer, frame, not_after, queued} -> send_queue (+ send_queue_by_peer)
//	"retry/<cmd id hex>"          JSON {last, count}                   -> Result.LastAttempt, Result.Attempts
//
// migrate1to2 moves each to its home, builds results_by_sent, and deletes the config bucket. It
// runs inside Open's first transaction, so a crash leaves the file wholly in schema 1 (and the
// next Open migrates again) or wholly in schema 2.
//
// Nothing is dropped silently: a key this build does not know, or a record that does not
// decode, makes Open fail with a *MigrationError naming it, and the file stays as it was. Two
// things are dropped on purpose: a retry record whose result is gone (there is no command left
// to count attempts of), and any Peer.Allow a schema-1 file holds without a policy record —
// schema 1 ignored Peer.Allow (the policy record was the allow list), so keeping it would grant
// what the operator never granted.
func migrate1to2(s *Store, btx *bolt.Tx) error {
	tx := &Tx{s: s, btx: btx}
	fail := func(bucket, key string, err error) error {
		return &MigrationError{From: 1, To: 2, Bucket: bucket, Key: key, Err: err}
	}

	// Results get their time index.
	var results []Result
	if err := tx.bucket(bResults).ForEach(func(k, v []byte) error {
		r, err := decodeResult(k, v)
		if err != nil {
			return fail(string(bResults), hex.EncodeToString(k), err)
		}
		results = append(results, r)
		return nil
	}); err != nil {
		return err
	}
	for _, r := range results {
		if err := tx.bucket(bResultsBySent).Put(r.indexKey(), []byte{}); err != nil {
			return err
		}
	}

	// Peer.Allow becomes the allow list: it starts empty, as schema 1's policy did without a record.
	peers, err := tx.Peers()
	if err != nil {
		return fail(string(bPeers), "", err)
	}
	for _, p := range peers {
		if p.Allow != nil {
			p.Allow = nil
			if err := putJSON(tx.bucket(bPeers), []byte(p.Name), p.record()); err != nil {
				return err
			}
		}
	}

	config := btx.Bucket([]byte("config"))
	if config == nil {
		return nil
	}
	type kv struct{ k, v []byte }
	var records []kv
	if err := config.ForEach(func(k, v []byte) error {
		if v == nil {
			return fail("config", string(k), corruptf("nested bucket"))
		}
		records = append(records, kv{clone(k), clone(v)})
		return nil
	}); err != nil {
		return err
	}
	dropped := 0
	for _, r := range records {
		d, err := migrateConfig(tx, string(r.k), r.v)
		if err != nil {
			return fail("config", string(r.k), err)
		}
		if d {
			dropped++
		}
	}
	if err := btx.DeleteBucket([]byte("config")); err != nil {
		return err
	}
	s.log.Info("state migrated", "op", "migrate", "from", 1, "to", 2, "config_records", len(records), "results", len(results), "dropped_retries", dropped)
	return nil
}

// migrateConfig moves one schema-1 config record to its home. dropped: a retry record whose
// result is gone.
func migrateConfig(tx *Tx, key string, v []byte) (dropped bool, err error) {
	unjson := func(dst any) error {
		if err := json.Unmarshal(v, dst); err != nil {
			return corruptf("%v", err)
		}
		return nil
	}
	switch key {
	case "mailbox":
		return false, tx.PutMailboxSettings(v)
	case "restore-floor", "last-prune":
		var t time.Time
		if err := t.UnmarshalText(v); err != nil {
			return false, corruptf("%v", err)
		}
		if key == "last-prune" {
			return false, tx.PutLastPrune(t)
		}
		return false, tx.PutRestoreFloor(t)
	case "processed-mark":
		var m ProcessedMark
		if err := unjson(&m); err != nil {
			return false, err
		}
		return false, tx.PutProcessedMark(m)
	case "failing-mail":
		var f FailingMail
		if err := unjson(&f); err != nil {
			return false, err
		}
		return false, tx.PutFailingMail(f)
	}
	prefix, rest, found := strings.Cut(key, "/")
	if !found {
		return false, ErrUnknownRecord
	}
	switch prefix {
	case "owed-ack":
		var a struct {
			Mailbox     string `json:"mailbox"`
			UIDValidity uint32 `json:"uidvalidity"`
			UID         uint32 `json:"uid"`
		}
		if err := unjson(&a); err != nil {
			return false, err
		}
		if rest != strconv.FormatUint(uint64(a.UIDValidity), 10)+"-"+strconv.FormatUint(uint64(a.UID), 10) {
			return false, corruptf("the key names another message than the record (%d-%d)", a.UIDValidity, a.UID)
		}
		return false, tx.PutOwedAck(OwedAck(a))
	case "policy":
		var allow []string
		if err := unjson(&allow); err != nil {
			return false, err
		}
		return false, tx.PutAllow(rest, allow)
	case "queue":
		var id [16]byte
		if err := decodeHexID(rest, &id); err != nil {
			return false, corruptf("command id: %v", err)
		}
		q, err := decodeQueued(id[:], v)
		if err != nil {
			return false, err
		}
		return false, tx.PutQueued(q)
	case "retry":
		var id [16]byte
		if err := decodeHexID(rest, &id); err != nil {
			return false, corruptf("command id: %v", err)
		}
		var rs struct {
			Last  time.Time `json:"last"`
			Count int       `json:"count"`
		}
		if err := unjson(&rs); err != nil {
			return false, err
		}
		r, ok, err := tx.Result(id)
		if err != nil || !ok {
			return !ok, err
		}
		r.Attempts, r.LastAttempt = rs.Count, rs.Last
		return false, tx.PutResult(r)
	}
	return false, ErrUnknownRecord
}

// migrate3to4 lists every ledger entry in ledger_open. keystore cannot read a ledger entry, so
// it cannot tell a finished one from an open one: it lists them all, which is safe (a restart
// reads them once, as before, and its caller closes the finished ones, CloseLedger), and after
// that a restart reads only the open ones. It walks keys only: the cached answers are not read.
// Results are not rewritten: a record whose output is inline (schema 3) reads as before, and its
// output moves to result_output when it is put again.
func migrate3to4(s *Store, btx *bolt.Tx) error {
	tx := &Tx{s: s, btx: btx}
	n := 0
	c := tx.bucket(bLedger).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) != 32 {
			return &MigrationError{From: 3, To: 4, Bucket: string(bLedger), Key: hex.EncodeToString(k), Err: corruptf("key is %d bytes", len(k))}
		}
		if err := tx.bucket(bLedgerOpen).Put(clone(k), []byte{}); err != nil {
			return err
		}
		n++
	}
	if n > 0 {
		s.log.Info("state migrated", "op", "migrate", "from", 3, "to", 4, "ledger_entries", n)
	}
	return nil
}
