package node

import (
	"context"
	"encoding/hex"
	"github.com/sealpost/sealpost/keystore"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sealpost/sealpost/session"
)

// Streams (docs/PROTOCOL.md section 20): a command's output larger than fits in its answer goes
// in CHUNK packages, sealed under the stream secret its request carries. The bytes live in spool
// files beside state.db (spool/out on the side that sends them, spool/in on the side that
// receives them); the state holds one small record per stream. stream_out.go cuts and sends,
// stream_in.go receives, joins and checks.

const (
	// inlineMax is the most output that still goes inline in the answer: more is streamed, so
	// that no large answer sits in the ledger or the results (and both stay small and fast to
	// read whatever the commands printed).
	inlineMax = 64 << 10
	// DefaultMaxStreamOutput is how many bytes of each stream of a command (stdout, stderr) an
	// agent sends unless told otherwise; more is cut and reported as truncated.
	DefaultMaxStreamOutput = 1 << 30
	// streamRetention is how long an agent keeps a stream's spool when the requester never
	// confirms it.
	streamRetention = 7 * 24 * time.Hour
	// chunksInFlight bounds the chunks of this node's waiting in the outbox: the cutter waits
	// for the mail to go before it cuts more, so memory and the outbox stay small however fast
	// a program prints. Each costs about 5 MB while it waits and goes (its package in the
	// cutter, in the outbox's pages and in the flush, and its mail): with 4, an agent sending 1
	// GiB that does not compress peaked at 88 MiB, with 2 at 49-58 MiB; the SMTP connections
	// (2) are kept as busy either way (docs/BENCHMARKS.md, "Streamed output").
	chunksInFlight = 2
)

func (n *Node) spoolDir(dir string) (string, error) {
	d := filepath.Join(n.opts.Dir, "spool", dir)
	return d, os.MkdirAll(d, 0o700)
}

func spoolName(peer session.Fingerprint, cmd session.CommandID, part uint8) string {
	return hex.EncodeToString(peer[:]) + "-" + hex.EncodeToString(cmd[:]) + "." + string('0'+part)
}

// chunkGate counts this node's chunks in the outbox and lets a cutter wait until fewer than
// chunksInFlight are there.
type chunkGate struct {
	mu     sync.Mutex
	queued int
	change chan struct{} // closed and replaced at every change
}

func (g *chunkGate) add(d int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.queued = max(0, g.queued+d) // chunks queued by an earlier run are sent without an add
	if g.change != nil {
		close(g.change)
		g.change = nil
	}
}

// acquire waits until fewer than chunksInFlight chunks are queued, or ctx ends, and takes the
// room: the caller queues one chunk (Flush gives the room back when it is mailed) or gives it
// back with release. Taking it here, not after the chunk is queued, keeps the bound strict
// however many cutters and resenders wait at once.
func (g *chunkGate) acquire(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.queued < chunksInFlight {
			g.queued++
			g.mu.Unlock()
			return nil
		}
		if g.change == nil {
			g.change = make(chan struct{})
		}
		ch := g.change
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release gives back room acquire took for a chunk that was not queued after all.
func (g *chunkGate) release() { g.add(-1) }

// mails reports whether this node has a mailbox to send with (a node without one keeps its
// packages for an export).
func (n *Node) mails() bool { return n.opts.Transport != nil || n.cfg.SMTP != "" }

// gated reports whether chunks to addr go through the chunks-in-flight bound: only those that
// Flush mails (and so gives the room back for). Chunks for an export (a node without a mailbox,
// a peer reached by carrying files) wait in the outbox however many there are.
func (n *Node) gated(addr string) bool {
	if !n.mails() || n.cfg.NoMail || strings.HasSuffix(addr, carriedDomain) {
		return false
	}
	gated := true
	_ = n.store.View(func(tx *keystore.Tx) error {
		gws, err := gatewaysIn(tx)
		gated = !slices.ContainsFunc(gws, func(g Gateway) bool { return g.Address == addr })
		return err
	})
	return gated
}
