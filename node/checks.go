package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
)

// Agent checks (docs/PROTOCOL.md section 19, "Checks"): programs an agent runs by itself when
// it takes the state for a status report, and whose results the report carries to the
// controllers that asked for reports. A check runs as an allowed exec does (commands.Registry.Run
// with a policy that allows exactly its program): never through a shell, with the command
// environment, in its own process group that its timeout kills. Checks run outside any store
// transaction, a round's in parallel, and one round at a time: a report taken while a round is
// still running carries the last results.

// Check timeouts: a check asks none (0) for DefaultCheckTimeout; none may ask more than
// MaxCheckTimeout.
const (
	DefaultCheckTimeout = 30 * time.Second
	MaxCheckTimeout     = keystore.MaxCheckTimeout
)

// checksWait bounds how long a report waits for its round of checks: the serving loop must not
// stall behind a slow check. A round that takes longer goes on; its results are the next
// report's.
const checksWait = 10 * time.Second

// checkOutputKept is how much of a check's stdout and stderr is kept to find its first line.
const checkOutputKept = 4096

// ErrNoCheck: no check has that name.
var ErrNoCheck = errors.New("no such check")

// CheckSpec is one check as `sealpost check add` gives it and `check list` shows it: Argv[0] is
// the program, an absolute path once added.
type CheckSpec struct {
	Name string   `json:"name"`
	Argv []string `json:"argv"`
	// Timeout is how long one run may take; 0 means DefaultCheckTimeout.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// CheckResult is the result of one run of a check (`sealpost check run`).
type CheckResult struct {
	Name string `json:"name"`
	commands.CheckResult
}

// checkRunner is the node's state of its checks' rounds (one at a time).
type checkRunner struct {
	mu      sync.Mutex
	running chan struct{} // closed when the round under way ends; nil when none is
	last    atomic.Pointer[map[string]commands.CheckResult]
}

// AddCheck adds the check spec.Name, or replaces it. Its program is resolved to an absolute path
// now, as allow lists are (a bare name is looked up in PATH), so that what runs later does not
// depend on PATH.
func (n *Node) AddCheck(_ context.Context, spec CheckSpec) (CheckSpec, error) {
	if len(spec.Argv) == 0 {
		return CheckSpec{}, errors.New("a check needs a program: sealpost check add NAME -- PROGRAM ARG...")
	}
	if spec.Timeout < 0 || spec.Timeout > MaxCheckTimeout {
		return CheckSpec{}, fmt.Errorf("check timeout %v outside 0..%v", spec.Timeout, MaxCheckTimeout)
	}
	prog, err := commands.ResolveAllow(spec.Argv[:1])
	if err != nil {
		return CheckSpec{}, fmt.Errorf("check %s: %w", spec.Name, err)
	}
	spec.Argv = slices.Clone(spec.Argv)
	spec.Argv[0] = prog[0]
	err = n.store.Update(func(tx *keystore.Tx) error {
		return tx.PutAgentCheck(keystore.AgentCheck{Name: spec.Name, Argv: spec.Argv, Timeout: spec.Timeout})
	})
	if err != nil {
		return CheckSpec{}, fmt.Errorf("check %s: %w", spec.Name, err)
	}
	return spec, nil
}

// Checks lists the checks, by name.
func (n *Node) Checks(context.Context) ([]CheckSpec, error) {
	all, err := n.agentChecks()
	out := make([]CheckSpec, 0, len(all))
	for _, c := range all {
		out = append(out, CheckSpec{Name: c.Name, Argv: c.Argv, Timeout: c.Timeout})
	}
	return out, err
}

// RemoveCheck removes the check called name (ErrNoCheck when there is none). The next report
// names it in checks_removed.
func (n *Node) RemoveCheck(_ context.Context, name string) error {
	return n.store.Update(func(tx *keystore.Tx) error {
		had, err := tx.DeleteAgentCheck(name)
		if err == nil && !had {
			err = fmt.Errorf("check %q: %w (see sealpost check list)", name, ErrNoCheck)
		}
		return err
	})
}

// RunChecks runs every check now, in parallel, and returns their results by name. It does not
// touch what the status reports hold.
func (n *Node) RunChecks(ctx context.Context) ([]CheckResult, error) {
	all, err := n.agentChecks()
	if err != nil {
		return nil, err
	}
	res := n.runCheckRound(ctx, all)
	out := make([]CheckResult, 0, len(res))
	for _, name := range slices.Sorted(maps.Keys(res)) {
		out = append(out, CheckResult{Name: name, CheckResult: res[name]})
	}
	return out, ctx.Err()
}

func (n *Node) agentChecks() ([]keystore.AgentCheck, error) {
	var all []keystore.AgentCheck
	err := n.store.View(func(tx *keystore.Tx) error {
		return tx.ForEachAgentCheck(func(c keystore.AgentCheck) error { all = append(all, c); return nil })
	})
	return all, err
}

// runCheckRound runs checks in parallel, each within its timeout, and returns their results.
func (n *Node) runCheckRound(ctx context.Context, checks []keystore.AgentCheck) map[string]commands.CheckResult {
	out := make(map[string]commands.CheckResult, len(checks))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, c := range checks {
		wg.Go(func() {
			r := n.runCheck(ctx, c)
			mu.Lock()
			out[c.Name] = r
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// runCheck runs one check as an exec command whose policy allows exactly its program.
func (n *Node) runCheck(ctx context.Context, c keystore.AgentCheck) commands.CheckResult {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultCheckTimeout
	}
	pol := commands.Policy{Allow: []string{c.Argv[0]}, DefaultTimeout: timeout, MaxTimeout: MaxCheckTimeout,
		MaxOutput: checkOutputKept, Peer: "check " + c.Name}
	at := n.now().UTC()
	res := n.reg.Run(ctx, commands.Request{Name: commands.CmdExec, Argv: c.Argv, Timeout: timeout}, pol)
	r := commands.CheckResult{Exit: -1, At: at}
	if res.Outcome == commands.OutcomeExited {
		r.Exit = int64(res.ExitCode)
		r.OK = res.ExitCode == 0
	}
	for _, b := range [][]byte{res.Stdout, res.Stderr, []byte(res.Error)} {
		if r.Output = commands.CheckOutputLine(b); r.Output != "" {
			break
		}
	}
	return r
}

// boundedChecks runs a round of the checks for a report and waits for it at most checksWait.
// When the round does not end in time, or an earlier round is still running, it returns the
// last results known of the checks that still exist (fresh false).
func (n *Node) boundedChecks(ctx context.Context) (map[string]commands.CheckResult, bool) {
	checks, err := n.agentChecks()
	if err != nil {
		n.log.Warn("checks unreadable; the report carries none", "op", "check", "err", err)
		return nil, false
	}
	if len(checks) == 0 {
		return nil, true
	}
	last := func() map[string]commands.CheckResult {
		p := n.checks.last.Load()
		if p == nil {
			return nil
		}
		out := map[string]commands.CheckResult{}
		for _, c := range checks {
			if r, ok := (*p)[c.Name]; ok {
				out[c.Name] = r
			}
		}
		return out
	}
	// One round at a time: a report that comes while a round runs waits for that round (its
	// results are as fresh as a new one's) instead of starting another.
	c := &n.checks
	c.mu.Lock()
	if c.running == nil {
		done := make(chan struct{})
		c.running = done
		go func() {
			res := n.runCheckRound(ctx, checks)
			c.last.Store(&res)
			c.mu.Lock()
			c.running = nil
			c.mu.Unlock()
			close(done)
		}()
	}
	round := c.running
	c.mu.Unlock()
	t := time.NewTimer(checksWait)
	defer t.Stop()
	select {
	case <-round:
		return last(), true
	case <-t.C:
		n.log.Warn("checks still running; the report carries their last results", "op", "check", "wait", checksWait)
		return last(), false
	}
}

// changedChecks returns the checks of cur that are new or changed (ok, exit, output) since
// acked, and the names of acked's that are gone: what a delta carries.
func changedChecks(acked, cur map[string]commands.CheckResult) (map[string]commands.CheckResult, []string) {
	var changed map[string]commands.CheckResult
	for name, c := range cur {
		if a, ok := acked[name]; ok && !commands.CheckChanged(a, c) {
			continue
		}
		if changed == nil {
			changed = map[string]commands.CheckResult{}
		}
		changed[name] = c
	}
	var removed []string
	for _, name := range slices.Sorted(maps.Keys(acked)) {
		if _, ok := cur[name]; !ok {
			removed = append(removed, name)
		}
	}
	return changed, removed
}

// mergeChecks applies a report's checks to those held: a whole report's replace them, a delta
// sets and removes. ok false: the merge holds more than commands.MaxChecks.
func mergeChecks(held map[string]commands.CheckResult, rep commands.Report) (map[string]commands.CheckResult, bool) {
	if rep.Base == 0 {
		return maps.Clone(rep.Checks), true
	}
	out := maps.Clone(held)
	for name, c := range rep.Checks {
		if out == nil {
			out = map[string]commands.CheckResult{}
		}
		out[name] = c
	}
	for _, name := range rep.ChecksRemoved {
		delete(out, name)
	}
	if len(out) == 0 {
		out = nil
	}
	return out, len(out) <= commands.MaxChecks
}

// fleetChecks reads the checks a controller holds of a peer (in keystore.PeerState.Report) and
// counts those failing.
func fleetChecks(report json.RawMessage) (map[string]commands.CheckResult, int) {
	var own reportStatus
	if len(report) == 0 || json.Unmarshal(report, &own) != nil {
		return nil, 0
	}
	failing := 0
	for _, c := range own.Checks {
		if !c.OK {
			failing++
		}
	}
	return own.Checks, failing
}

// checkOp is the control socket's check operation: Do is add, list, remove or run.
type checkOp struct {
	Do   string     `json:"do"`
	Name string     `json:"name,omitempty"`
	Spec *CheckSpec `json:"spec,omitempty"`
}

// checkOut is its answer.
type checkOut struct {
	Spec    *CheckSpec    `json:"spec,omitempty"`
	List    []CheckSpec   `json:"list,omitempty"`
	Results []CheckResult `json:"results,omitempty"`
}

func (n *Node) serveCheck(ctx context.Context, op checkOp) (*checkOut, error) {
	out := &checkOut{}
	var err error
	switch op.Do {
	case "add":
		if op.Spec == nil {
			return nil, errors.New("control operation check add without a check")
		}
		var s CheckSpec
		s, err = n.AddCheck(ctx, *op.Spec)
		out.Spec = &s
	case "list":
		out.List, err = n.Checks(ctx)
	case "remove":
		err = n.RemoveCheck(ctx, op.Name)
	case "run":
		out.Results, err = n.RunChecks(ctx)
	default:
		err = fmt.Errorf("unknown check operation %q (is this client a different sealpost version than the agent?)", op.Do)
	}
	return out, err
}

func (cl *Client) check(ctx context.Context, op checkOp) (*checkOut, error) {
	r, err := cl.call(ctx, controlRequest{Op: "check", Check: &op})
	if r.Check == nil {
		r.Check = &checkOut{}
	}
	return r.Check, err
}

func (cl *Client) AddCheck(ctx context.Context, spec CheckSpec) (CheckSpec, error) {
	out, err := cl.check(ctx, checkOp{Do: "add", Spec: &spec})
	if out.Spec == nil {
		return CheckSpec{}, err
	}
	return *out.Spec, err
}

func (cl *Client) Checks(ctx context.Context) ([]CheckSpec, error) {
	out, err := cl.check(ctx, checkOp{Do: "list"})
	return out.List, err
}

func (cl *Client) RemoveCheck(ctx context.Context, name string) error {
	_, err := cl.check(ctx, checkOp{Do: "remove", Name: name})
	return err
}

func (cl *Client) RunChecks(ctx context.Context) ([]CheckResult, error) {
	out, err := cl.check(ctx, checkOp{Do: "run"})
	return out.Results, err
}
