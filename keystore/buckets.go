package keystore

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Top-level bucket names. The layout is documented in doc.go; Check
// rejects any bucket not listed here, because keystore is the only writer of
// the file and an unknown bucket means another program (or a newer sealpost)
// wrote it.
var (
	bMeta            = []byte("meta")
	bSessions        = []byte("sessions")
	bSessionsByPeer  = []byte("sessions_by_peer")
	bLedger          = []byte("ledger")
	bLedgerExpiry    = []byte("ledger_expiry")
	bPending         = []byte("pending")
	bPendingByPeer   = []byte("pending_by_peer")
	bPairings        = []byte("pairings")
	bIdentity        = []byte("identity")
	bPeers           = []byte("peers")
	bPeersByFP       = []byte("peers_by_fp")
	bOutbox          = []byte("outbox")
	bCursors         = []byte("cursors")
	bResults         = []byte("results")
	bConfig          = []byte("config")
	allBuckets       = [][]byte{bMeta, bSessions, bSessionsByPeer, bLedger, bLedgerExpiry, bPending, bPendingByPeer, bPairings, bIdentity, bPeers, bPeersByFP, bOutbox, bCursors, bResults, bConfig}
	sequenceSnapshot = "#sequences" // pseudo-bucket in Snapshot; real bucket names never start with '#'
)

// Keys inside the meta bucket.
var (
	metaSchema     = []byte("schema")     // 8-byte big-endian schema version
	metaGeneration = []byte("generation") // 8-byte big-endian commit counter
	metaRollback   = []byte("rollback")   // JSON RollbackInfo, present only while a rollback is unacknowledged
	metaStoreID    = []byte("store_id")   // 16 random bytes, made at the first Open; names the witness file
	metaWitness    = []byte("witness")    // absolute witness directory whose file for this store exists durably
)

// identityKey is the single key of the identity bucket.
var identityKey = []byte("self")

// schemaVersion is bumped when the on-disk layout changes incompatibly. Open
// refuses a file with a higher version rather than misreading it.
const schemaVersion = 1

// ensureLayout creates missing buckets and stamps or checks the schema
// version. A file from a newer sealpost is refused, not "repaired".
func ensureLayout(btx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := btx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("keystore: create bucket %s: %w", name, err)
		}
	}
	meta := btx.Bucket(bMeta)
	v := meta.Get(metaSchema)
	if v == nil {
		return meta.Put(metaSchema, u64Key(schemaVersion))
	}
	if len(v) != 8 {
		return corruptf("meta/schema is %d bytes", len(v))
	}
	if got := binary.BigEndian.Uint64(v); got != schemaVersion {
		return fmt.Errorf("keystore: state schema version %d, this build understands %d", got, schemaVersion)
	}
	return nil
}
