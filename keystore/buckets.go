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
	bAllowUnpinned   = []byte("allow_unpinned")
	bOutbox          = []byte("outbox")
	bCursors         = []byte("cursors")
	bResults         = []byte("results")
	bResultsBySent   = []byte("results_by_sent")
	bSendQueue       = []byte("send_queue")
	bSendQueueByPeer = []byte("send_queue_by_peer")
	bOwedAcks        = []byte("owed_acks")
	bNode            = []byte("node")
	bPeerTags        = []byte("peer_tags")
	bPeerState       = []byte("peer_state")
	bSchedules       = []byte("schedules")
	bScheduleRuns    = []byte("schedule_runs")
	bReportTo        = []byte("report_to")
	bChecks          = []byte("checks")
	bStreamsIn       = []byte("streams_in")
	bStreamsOut      = []byte("streams_out")
	bPeerPaths       = []byte("peer_paths")
	bLedgerOpen      = []byte("ledger_open")
	bResultOutput    = []byte("result_output")
	bLedgerSpool     = []byte("ledger_spool")
	allBuckets       = [][]byte{bMeta, bSessions, bSessionsByPeer, bLedger, bLedgerExpiry, bPending, bPendingByPeer,
		bPairings, bIdentity, bPeers, bPeersByFP, bAllowUnpinned, bOutbox, bCursors, bResults, bResultsBySent,
		bSendQueue, bSendQueueByPeer, bOwedAcks, bNode, bPeerTags, bPeerState,
		bSchedules, bScheduleRuns, bReportTo, bChecks, bLedgerOpen, bResultOutput, bLedgerSpool,
		bStreamsIn, bStreamsOut, bPeerPaths}
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
// migrates a file of an older version (migrate.go) and refuses one with a
// higher version rather than misreading it.
//
//	1  the first layout: node's own records in a generic "config" bucket
//	2  every record in a typed bucket; results indexed by time; retry
//	   bookkeeping in the result; allow lists in the peer
//	3  fleet operations: peer tags, peer state, schedules and their runs,
//	   report_to, checks (buckets added; nothing to migrate)
//	4  memory over time: ledger_open lists the unfinished ledger entries,
//	   ledger_spool names the large ledger blobs kept in DIR/spool/ledger (spool.go), and
//	   result_output holds results' output apart from their records (a
//	   migration lists every ledger entry open; results keep their output
//	   inline until they are put again); streams_in and
//	   streams_out keep the streams of output and files (docs/PROTOCOL.md
//	   section 20) and peer_paths the directories peers may pull from and
//	   push into (buckets added)
const schemaVersion = 4

// ensureLayout creates missing buckets and stamps, checks or migrates the
// schema version, in Open's first transaction: a migration commits together
// with everything else Open writes, or not at all. A file from a newer
// sealpost is refused (ErrSchema), not "repaired".
func ensureLayout(s *Store, btx *bolt.Tx) error {
	meta, err := btx.CreateBucketIfNotExists(bMeta)
	if err != nil {
		return fmt.Errorf("keystore: create bucket %s: %w", bMeta, err)
	}
	version := uint64(schemaVersion) // a new file
	if v := meta.Get(metaSchema); v != nil {
		if len(v) != 8 {
			return corruptf("meta/schema is %d bytes", len(v))
		}
		version = binary.BigEndian.Uint64(v)
	}
	if version == 0 || version > schemaVersion {
		return fmt.Errorf("%w: state schema version %d, this build understands 1 to %d", ErrSchema, version, schemaVersion)
	}
	for _, name := range allBuckets {
		if _, err := btx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("keystore: create bucket %s: %w", name, err)
		}
	}
	if version == 1 {
		if err := migrate1to2(s, btx); err != nil {
			return err
		}
	}
	if version < 4 {
		if err := migrate3to4(s, btx); err != nil {
			return err
		}
	}
	return meta.Put(metaSchema, u64Key(schemaVersion))
}
