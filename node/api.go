package node

import (
	"context"
	"errors"

	"github.com/sealpost/sealpost/keystore"
)

// API is what the command line asks of a node: the Node itself when the CLI holds the state, or
// a Client talking to the agent that does (bbolt's lock is exclusive, so while an agent runs it
// is the only process that opens the state; the CLI reaches it through its control socket).
type API interface {
	Identity(ctx context.Context) (IDInfo, error)
	AddPeer(ctx context.Context, spec PeerSpec) (PeerAdded, error)
	Peers(ctx context.Context) ([]PeerInfo, error)
	RemovePeer(ctx context.Context, name string) error
	// Allow adds programs to and removes them from one peer's allow list and returns the list
	// as it is then (see Node.Allow).
	Allow(ctx context.Context, name string, add, remove []string) ([]string, error)
	// Run submits a command; with wait it returns once the result is final or ctx ends (then
	// with the last known result and ctx's error).
	Run(ctx context.Context, spec RunSpec, wait bool, progress func(Result)) (Result, error)
	Results(ctx context.Context) ([]Result, error)
	// ResultSummaries calls fn with every result, oldest first, one at a time and without its
	// output (results_list.go): a listing in bounded memory. ResultsOf reads an output.
	ResultSummaries(ctx context.Context, fn func(Result) error) error
	// RecentResults returns the limit most recent results, newest first, of one peer or of all
	// (peer ""), reading only those (see Node.RecentResults).
	RecentResults(ctx context.Context, peer string, limit int) ([]Result, error)
	Status(ctx context.Context) (Status, error)
	// Tag adds tags to and removes them from one peer and returns its tags as they are then.
	Tag(ctx context.Context, name string, add, remove []string) ([]string, error)
	// ResolveTarget returns the names of the peers a target (bob, @web, @all, a,b) names.
	ResolveTarget(ctx context.Context, target string) ([]string, error)
	// SubmitMany seals and queues many commands at once and mails them (see Node.SubmitMany).
	SubmitMany(ctx context.Context, specs []RunSpec) ([]CommandID, error)
	// ResultsOf returns the results recorded under ids, in their order; an id with none
	// recorded gives a Result with only its CommandID and StatusMissing.
	ResultsOf(ctx context.Context, ids []CommandID) ([]Result, error)
	// WaitMany waits until every command in ids is final or ctx ends (then with the last
	// known results and ctx's error); see Node.WaitMany (node/fanout.go).
	WaitMany(ctx context.Context, ids []CommandID, progress func([]Result)) ([]Result, error)
	// Fleet returns the fleet view of the peers a target names ("": every pinned peer).
	Fleet(ctx context.Context, target string) ([]FleetEntry, error)
	// Schedules (schedule.go): add one, list them, remove one, fire one now, and one's history.
	AddSchedule(ctx context.Context, spec ScheduleSpec) (ScheduleInfo, error)
	Schedules(ctx context.Context) ([]ScheduleInfo, error)
	RemoveSchedule(ctx context.Context, name string) error
	RunSchedule(ctx context.Context, name string) (ScheduleRun, error)
	ScheduleRuns(ctx context.Context, name string) ([]ScheduleRun, error)
	// Reports asks spec.Peer for status reports every spec.Request.Every (0 stops them) and,
	// with wait, waits for the answer (see Node.Reports).
	Reports(ctx context.Context, spec RunSpec, wait bool) (Result, error)
	// Checks (checks.go): the agent's own checks, run for its status reports; add or replace
	// one, list them, remove one, run them all now.
	AddCheck(ctx context.Context, spec CheckSpec) (CheckSpec, error)
	Checks(ctx context.Context) ([]CheckSpec, error)
	RemoveCheck(ctx context.Context, name string) error
	RunChecks(ctx context.Context) ([]CheckResult, error)
	// Packages carried as files (carry.go): Export writes what waits for a peer (or a gateway
	// route) into a directory; Import applies a directory's package files as mail would. The
	// gateway routes: add or replace one, remove one, list them.
	Export(ctx context.Context, peer, dir string) (CarryReport, error)
	Import(ctx context.Context, dir string, remove bool) (CarryReport, error)
	AddGateway(ctx context.Context, g Gateway) (Gateway, error)
	RemoveGateway(ctx context.Context, name string) error
	Gateways(ctx context.Context) ([]Gateway, error)
	// Push sends a local file to a peer (stream_file.go); the command's result says when it
	// is in place. Pull is a Run of a pull request.
	Push(ctx context.Context, spec PushSpec) (CommandID, error)
}

// IDInfo is what `sealpost id` prints.
type IDInfo struct {
	Fingerprint string `json:"fingerprint"`
	Address     string `json:"address"`
}

var _ API = (*Node)(nil)

// Identity reports this node's fingerprint and address.
func (n *Node) Identity(context.Context) (IDInfo, error) {
	return IDInfo{Fingerprint: n.Fingerprint().String(), Address: n.cfg.Address}, nil
}

// Run submits spec and, with wait, waits for its final result.
func (n *Node) Run(ctx context.Context, spec RunSpec, wait bool, progress func(Result)) (Result, error) {
	id, err := n.Submit(ctx, spec)
	if errors.Is(err, ErrNotPaired) && !n.serving.Load() {
		// The peer's PAIR answer may be waiting in our mailbox: read it, then try again.
		if _, perr := n.Pump(ctx, false, 0); perr == nil {
			id, err = n.Submit(ctx, spec)
		}
	}
	if errors.Is(err, ErrNotMailed) {
		if !wait {
			r, _, _ := n.Result(id)
			return r, err
		}
		err = nil // waiting retries the outbox
	}
	if err != nil {
		return Result{}, err
	}
	if !wait {
		r, _, err := n.Result(id)
		return r, err
	}
	return n.Wait(ctx, id, progress)
}

// ErrNotMailed: the command is recorded and queued in the outbox, but mailing it failed; the
// agent (or the next sealpost command on this state) sends it again.
var ErrNotMailed = errors.New("recorded, but not mailed yet (it stays in the outbox and is sent again)")

// ErrNotPaired: the peer named in a command has an armed pairing but no pinned key yet.
var ErrNotPaired = errors.New("peer is not paired yet")

// StateInUseError: another process holds the state's lock (keystore's error, under node's name
// so that callers need not import keystore). Its PID field names the holder when known.
type StateInUseError = keystore.InUseError
