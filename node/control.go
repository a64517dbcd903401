package node

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// The control socket: a running agent owns the state (bbolt allows one process), so the CLI asks
// it to act instead. A Unix socket in the state directory, mode 0600, one JSON request and one
// JSON response per connection. Only the state directory's owner can reach it, and a client
// talks only to a socket that no other user can have put there (THREATS.md row 36): one owned
// by it, in a directory owned by it that others may not write to.

// SocketName is the control socket's file name inside the state directory.
const SocketName = "agent.sock"

type controlRequest struct {
	Op      string        `json:"op"` // identity, add-peer, peers, remove-peer, allow, run, results, status, tag, resolve, submit-many, results-of, recent-results, fleet, schedule, reports, check, export, import, gateways, gateway-add, gateway-remove
	Peer    *PeerSpec     `json:"peer,omitempty"`
	Allow   *allowChange  `json:"allow,omitempty"`
	Tag     *allowChange  `json:"tag,omitempty"` // the same shape: a peer, what to add, what to remove
	Target  string        `json:"target,omitempty"`
	Run     *RunSpec      `json:"run,omitempty"`
	Runs    []RunSpec     `json:"runs,omitempty"`
	IDs     []CommandID   `json:"ids,omitempty"`
	Wait    bool          `json:"wait,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
	// Schedule is the schedule operation's request (schedule.go).
	Schedule *scheduleOp `json:"schedule,omitempty"`
	// Recent is the recent-results operation's request (results.go).
	Recent *recentQuery `json:"recent,omitempty"`
	// Check is the check operation's request (checks.go).
	Check *checkOp `json:"check,omitempty"`
	// Carry is the export and import operations' request; Gateway the gateway-add and
	// gateway-remove ones' (carry_control.go).
	Carry   *carryOp `json:"carry,omitempty"`
	Gateway *Gateway `json:"gateway,omitempty"`
	// Push is the push operation's request (stream_file.go).
	Push *PushSpec `json:"push,omitempty"`
}

type controlResponse struct {
	Error    string       `json:"error,omitempty"`
	Timeout  bool         `json:"timeout,omitempty"`
	Identity *IDInfo      `json:"identity,omitempty"`
	Added    *PeerAdded   `json:"added,omitempty"`
	Peers    []PeerInfo   `json:"peers,omitempty"`
	Allowed  []string     `json:"allowed,omitempty"`
	Tags     []string     `json:"tags,omitempty"`
	Names    []string     `json:"names,omitempty"`
	IDs      []CommandID  `json:"ids,omitempty"`
	Fleet    []FleetEntry `json:"fleet,omitempty"`
	Result   *Result      `json:"result,omitempty"`
	Results  []Result     `json:"results,omitempty"`
	Status   *Status      `json:"status,omitempty"`
	Schedule *scheduleOut `json:"schedule,omitempty"`
	Check    *checkOut    `json:"check,omitempty"`
	Carry    *CarryReport `json:"carry,omitempty"`
	Gateway  *Gateway     `json:"gateway,omitempty"`
	Gateways []Gateway    `json:"gateways,omitempty"`
	// More: a line of a streamed answer (result-summaries, results_list.go); more lines
	// follow, and the last one has More false.
	More bool `json:"more,omitempty"`
}

// allowChange is the allow operation's request: Node.Allow's arguments.
type allowChange struct {
	Name   string   `json:"name"`
	Add    []string `json:"add,omitempty"`
	Remove []string `json:"remove,omitempty"`
}

// ControlServer is a node's control socket being served (ListenControl). Wait tells when the
// accept loop and every request handler have returned, so that the node is closed only after:
// a handler still running would otherwise meet a closed store.
type ControlServer struct {
	wg       sync.WaitGroup
	handling func(op string) // tests: called in a handler once its request is read
}

// Wait returns once the context given to ListenControl has ended and every request in progress
// has finished (requests follow that context, so one waiting for an answer by mail ends too).
// Call it before closing the node.
func (s *ControlServer) Wait() { s.wg.Wait() }

// ListenControl starts serving the control socket until ctx ends; Wait on the result before
// closing the node. The state directory must be private to this user (checkPrivateDir), and
// the socket appears under its name with mode 0600 already set: it is bound in a private
// temporary directory, restricted, and then renamed into place, so no other user can connect
// in between.
func (n *Node) ListenControl(ctx context.Context) (*ControlServer, error) {
	return n.listenControl(ctx, nil)
}

func (n *Node) listenControl(ctx context.Context, handling func(op string)) (*ControlServer, error) {
	dir := n.opts.Dir
	if err := checkPrivateDir(dir); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	path := filepath.Join(dir, SocketName)
	tmp, err := os.MkdirTemp(dir, ".ctl") // mode 0700; short, for the socket path length limit
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	ln, err := net.Listen("unix", bound)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // it is unlinked under its final name below
	// We hold the state lock, so a socket file already at path belongs to a dead agent: the
	// rename replaces it.
	if err := os.Chmod(bound, 0o600); err == nil {
		err = os.Rename(bound, path)
	}
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// From now on requests may arrive: this process serves the mailbox, and waiters must leave
	// reading it to the serving loop.
	n.serving.Store(true)
	s := &ControlServer{handling: handling}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		ln.Close()
		os.Remove(path)
	}()
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1) // before this loop's own Done: Wait cannot return in between
			go func() {
				defer s.wg.Done()
				n.serveControl(ctx, c, s.handling)
			}()
		}
	}()
	return s, nil
}

// maxControlRequest caps a control request. The largest real one is a run with its argv, far
// below this; the cap keeps a stray writer on the socket from growing the agent's memory.
const maxControlRequest = 1 << 20

// controlReadTimeout bounds how long a connection may take to send its request.
const controlReadTimeout = 10 * time.Second

// decodeControlRequest reads one request and checks that it names a known operation with the
// part that operation needs, so that serveControl can act on it without further checks.
func decodeControlRequest(r io.Reader) (controlRequest, error) {
	var req controlRequest
	dec := json.NewDecoder(io.LimitReader(r, maxControlRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return controlRequest{}, fmt.Errorf("bad control request: %w", err)
	}
	var missing string
	switch req.Op {
	case "identity", "peers", "results", "status", "result-summaries":
	case "tag":
		if req.Tag == nil {
			missing = "a tag change"
		}
	case "resolve":
		if req.Target == "" {
			missing = "a target"
		}
	case "submit-many":
		if len(req.Runs) == 0 {
			missing = "commands"
		}
	case "results-of", "fleet":
	case "recent-results":
		if req.Recent == nil {
			missing = "a peer and a limit"
		}
	case "schedule":
		if req.Schedule == nil {
			missing = "a schedule operation"
		}
	case "check":
		if req.Check == nil {
			missing = "a check operation"
		}
	case "export", "import":
		if req.Carry == nil || req.Carry.Dir == "" {
			missing = "a directory"
		}
	case "push":
		if req.Push == nil || req.Push.Local == "" || req.Push.Remote == "" {
			missing = "a push (peer, local and remote files)"
		}
	case "gateways":
	case "gateway-add", "gateway-remove":
		if req.Gateway == nil {
			missing = "a gateway route"
		}
	case "add-peer", "remove-peer":
		if req.Peer == nil {
			missing = "a peer"
		}
	case "allow":
		if req.Allow == nil {
			missing = "an allow-list change"
		}
	case "run", "reports":
		if req.Run == nil {
			missing = "a command"
		}
	default:
		return controlRequest{}, fmt.Errorf("unknown control operation %q (is this client a different sealpost version than the agent?)", req.Op)
	}
	if missing != "" {
		return controlRequest{}, fmt.Errorf("control operation %s without %s", req.Op, missing)
	}
	return req, nil
}

func (n *Node) serveControl(ctx context.Context, c net.Conn, handling func(op string)) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(controlReadTimeout))
	// A client still sending its request when the agent stops is cut off at once.
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
	defer stop()
	req, err := decodeControlRequest(c)
	if err != nil {
		// Answer, so that the client prints why instead of "agent answered: EOF".
		_ = json.NewEncoder(c).Encode(controlResponse{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
	if handling != nil {
		handling(req.Op)
	}
	agentCtx := ctx // ctx below may be the request's, with its timeout
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	var resp controlResponse
	switch req.Op {
	case "identity":
		var id IDInfo
		id, err = n.Identity(ctx)
		resp.Identity = &id
	case "add-peer":
		var a PeerAdded
		a, err = n.AddPeer(ctx, *req.Peer)
		resp.Added = &a
	case "peers":
		resp.Peers, err = n.Peers(ctx)
	case "remove-peer":
		err = n.RemovePeer(ctx, req.Peer.Name)
	case "allow":
		resp.Allowed, err = n.Allow(ctx, req.Allow.Name, req.Allow.Add, req.Allow.Remove)
	case "run":
		var r Result
		r, err = n.Run(ctx, *req.Run, req.Wait, nil)
		resp.Result = &r
	case "results":
		resp.Results, err = n.Results(ctx)
	case "result-summaries":
		err = n.serveSummaries(ctx, c)
	case "status":
		var st Status
		st, err = n.Status(ctx)
		resp.Status = &st
	case "tag":
		resp.Tags, err = n.Tag(ctx, req.Tag.Name, req.Tag.Add, req.Tag.Remove)
	case "resolve":
		resp.Names, err = n.ResolveTarget(ctx, req.Target)
	case "submit-many":
		resp.IDs, err = n.SubmitMany(ctx, req.Runs)
	case "results-of":
		resp.Results, err = n.ResultsOf(ctx, req.IDs)
	case "recent-results":
		resp.Results, err = n.RecentResults(ctx, req.Recent.Peer, req.Recent.Limit)
	case "fleet":
		resp.Fleet, err = n.Fleet(ctx, req.Target)
	case "schedule":
		resp.Schedule, err = n.serveSchedule(ctx, *req.Schedule)
	case "reports":
		var r Result
		r, err = n.Reports(ctx, *req.Run, req.Wait)
		resp.Result = &r
	case "check":
		resp.Check, err = n.serveCheck(ctx, *req.Check)
	case "export", "import", "gateways", "gateway-add", "gateway-remove":
		err = n.serveCarry(ctx, req, &resp)
	case "push":
		var id CommandID
		id, err = n.Push(ctx, *req.Push)
		resp.IDs = []CommandID{id}
	}
	if err != nil {
		resp.Error = err.Error()
		resp.Timeout = errors.Is(err, context.DeadlineExceeded)
		if agentCtx.Err() != nil {
			resp.Error, resp.Timeout = "the agent stopped before it had the answer", false
		}
	}
	// The answer is written within a bound too: a client that stops reading must not keep the
	// handler, and so ControlServer.Wait, waiting.
	c.SetWriteDeadline(time.Now().Add(controlReadTimeout))
	_ = json.NewEncoder(c).Encode(resp)
}

// UnsafeSocketError: the control socket, or the directory holding it, may be another user's, so
// a request sent there (a pairing code, a command) could reach that user. Nothing was sent.
type UnsafeSocketError struct {
	Path    string // the socket or its directory
	UID     int    // the owner of Path
	Problem string // what is wrong with it
}

func (e *UnsafeSocketError) Error() string {
	return fmt.Sprintf("refusing to use the agent's control socket: %s %s (owner %s; you are %s)", e.Path, e.Problem, userName(e.UID), userName(euid()))
}

// userName shows a uid as "name (uid N)" when the name is known.
func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("%s (uid %d)", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}

// checkPrivateDir checks that dir is a directory owned by this user that no one else may write
// to, so that no one else can put a file in it or replace one: the state store's rule
// (keystore.CheckPrivateDir), which also refuses a parent others may write and another user's
// symbolic link anywhere above it.
func checkPrivateDir(dir string) error {
	err := keystore.CheckPrivateDir(dir)
	var ue *keystore.UnsafeDirError
	if errors.As(err, &ue) {
		problem := map[keystore.UnsafeReason]string{
			keystore.UnsafeSymlink:  "is, or is reached through, a symbolic link of another user's",
			keystore.UnsafeNotDir:   "is not a directory",
			keystore.UnsafeOwner:    "is owned by another user",
			keystore.UnsafeWritable: fmt.Sprintf("may be written by other users (mode %v; chmod go-w it)", ue.Mode.Perm()),
			keystore.UnsafeParent:   fmt.Sprintf("lies in a directory others may write to (mode %v)", ue.Mode.Perm()),
		}[ue.Reason]
		if problem == "" {
			problem = ue.Reason.String()
		}
		return &UnsafeSocketError{Path: ue.Path, UID: ue.UID, Problem: problem}
	}
	return err
}

// checkControlSocket checks the socket at path before a client connects to it: it must be a
// socket (not a symlink) owned by this user, in a directory checkPrivateDir accepts. A missing
// socket is an error wrapping fs.ErrNotExist.
func checkControlSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if err := checkPrivateDir(filepath.Dir(path)); err != nil {
		return err
	}
	uid, ok := fileOwner(fi)
	switch {
	case fi.Mode().Type() != fs.ModeSocket:
		return &UnsafeSocketError{Path: path, UID: uid, Problem: fmt.Sprintf("is not a socket (%v)", fi.Mode().Type())}
	case ok && ownerChecks && uid != euid():
		return &UnsafeSocketError{Path: path, UID: uid, Problem: "is owned by another user"}
	}
	return nil
}

// Client talks to a running agent through its control socket.
type Client struct {
	path string
}

// DialControl returns a client if an agent is listening in dir, else an error: one wrapping
// fs.ErrNotExist when there is no socket, an *UnsafeSocketError when the socket or dir could be
// another user's (never connected to), else the dial's.
func DialControl(dir string) (*Client, error) {
	path := filepath.Join(dir, SocketName)
	if err := checkControlSocket(path); err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	c.Close()
	return &Client{path: path}, nil
}

var _ API = (*Client)(nil)

// FateUnknownError: a run request went to the agent, but no answer came back (the agent stopped
// or died, or ctx ended first). The agent may have recorded the command, and mailed it, or not.
// ID is the command's id: look it up in the results once the agent is back, or submit again with
// the same ID, which never sends it twice (Submit is idempotent per ID).
type FateUnknownError struct {
	ID  session.CommandID
	Err error // what ended the conversation
}

func (e *FateUnknownError) Error() string {
	return fmt.Sprintf("command %s went to the agent but no answer came back (%v): it may have been recorded and sent, or not", e.ID, e.Err)
}

func (e *FateUnknownError) Unwrap() error { return e.Err }

// answerGrace is how long past the caller's deadline a client waits for the agent's answer: the
// agent runs the same timeout from when it read the request, a little later.
const answerGrace = 2 * time.Second

// call sends one request and reads the answer. For a run, a failure after the connection was made
// is a *FateUnknownError: from then on the agent may have acted on it.
func (cl *Client) call(ctx context.Context, req controlRequest) (controlResponse, error) {
	return cl.callStream(ctx, req, nil)
}

// callStream is call for an operation whose answer may come in several lines: each line with
// More set goes to each (an error from it ends the call), and the last line is the answer.
func (cl *Client) callStream(ctx context.Context, req controlRequest, each func(controlResponse) error) (controlResponse, error) {
	var resp controlResponse
	// Checked before every connection, not only in DialControl: a Client may outlive the socket.
	if err := checkControlSocket(cl.path); err != nil {
		return resp, fmt.Errorf("reach the agent: %w", err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", cl.path)
	if err != nil {
		return resp, fmt.Errorf("reach the agent: %w", err)
	}
	defer c.Close()
	unknown := func(err error) error {
		if req.Op == "run" {
			return &FateUnknownError{ID: req.Run.ID, Err: err}
		}
		if req.Op == "submit-many" {
			return &FateUnknownError{ID: req.Runs[0].ID, Err: err}
		}
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = time.Until(dl)
		c.SetDeadline(dl.Add(answerGrace))
	}
	// Cancelled (Ctrl-C): stop at once. A deadline that passes is the agent's to answer: it got
	// the same timeout, started later, and answers "pending"; the socket deadline above leaves it
	// time to, so that a timeout reads as one and not as an agent that stopped answering.
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			c.SetDeadline(time.Now())
		}
	})
	defer stop()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		if ctx.Err() != nil {
			return resp, unknown(ctx.Err())
		}
		return resp, unknown(err)
	}
	dec := json.NewDecoder(c)
	var decodeErr error
	for {
		resp = controlResponse{}
		if decodeErr = dec.Decode(&resp); decodeErr != nil || !resp.More {
			break
		}
		if each == nil {
			return controlResponse{}, unknown(errors.New("agent answered in several lines to a one-line request"))
		}
		if err := each(resp); err != nil {
			return controlResponse{}, err
		}
	}
	if err := decodeErr; err != nil {
		if errors.Is(ctx.Err(), context.Canceled) {
			return resp, unknown(ctx.Err())
		}
		if ctx.Err() != nil {
			return resp, unknown(fmt.Errorf("the agent gave no answer within the timeout and %s more: %w", answerGrace, ctx.Err()))
		}
		return resp, unknown(fmt.Errorf("agent answered: %w", err))
	}
	if resp.Error != "" {
		if resp.Timeout {
			return resp, fmt.Errorf("%s: %w", resp.Error, context.DeadlineExceeded)
		}
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

func (cl *Client) Identity(ctx context.Context) (IDInfo, error) {
	r, err := cl.call(ctx, controlRequest{Op: "identity"})
	if r.Identity == nil {
		return IDInfo{}, err
	}
	return *r.Identity, err
}

func (cl *Client) AddPeer(ctx context.Context, spec PeerSpec) (PeerAdded, error) {
	r, err := cl.call(ctx, controlRequest{Op: "add-peer", Peer: &spec})
	if r.Added == nil {
		return PeerAdded{}, err
	}
	return *r.Added, err
}

func (cl *Client) Peers(ctx context.Context) ([]PeerInfo, error) {
	r, err := cl.call(ctx, controlRequest{Op: "peers"})
	return r.Peers, err
}

func (cl *Client) RemovePeer(ctx context.Context, name string) error {
	_, err := cl.call(ctx, controlRequest{Op: "remove-peer", Peer: &PeerSpec{Name: name}})
	return err
}

func (cl *Client) Allow(ctx context.Context, name string, add, remove []string) ([]string, error) {
	r, err := cl.call(ctx, controlRequest{Op: "allow", Allow: &allowChange{Name: name, Add: add, Remove: remove}})
	return r.Allowed, err
}

// Run makes spec.ID when it is zero, so that a *FateUnknownError can name the command.
func (cl *Client) Run(ctx context.Context, spec RunSpec, wait bool, _ func(Result)) (Result, error) {
	if spec.ID.IsZero() {
		if _, err := rand.Read(spec.ID[:]); err != nil {
			return Result{}, err
		}
	}
	r, err := cl.call(ctx, controlRequest{Op: "run", Run: &spec, Wait: wait})
	if r.Result == nil {
		return Result{}, err
	}
	return *r.Result, err
}

func (cl *Client) Results(ctx context.Context) ([]Result, error) {
	r, err := cl.call(ctx, controlRequest{Op: "results"})
	return r.Results, err
}

func (cl *Client) Status(ctx context.Context) (Status, error) {
	r, err := cl.call(ctx, controlRequest{Op: "status"})
	if r.Status == nil {
		return Status{}, err
	}
	r.Status.Agent = true // it answered on its socket (even while it stops)
	return *r.Status, err
}

func (cl *Client) Tag(ctx context.Context, name string, add, remove []string) ([]string, error) {
	r, err := cl.call(ctx, controlRequest{Op: "tag", Tag: &allowChange{Name: name, Add: add, Remove: remove}})
	return r.Tags, err
}

func (cl *Client) ResolveTarget(ctx context.Context, target string) ([]string, error) {
	r, err := cl.call(ctx, controlRequest{Op: "resolve", Target: target})
	return r.Names, err
}

// SubmitMany makes the ids that are zero, so that a *FateUnknownError can name the first.
func (cl *Client) SubmitMany(ctx context.Context, specs []RunSpec) ([]CommandID, error) {
	specs = slices.Clone(specs)
	for i := range specs {
		if specs[i].ID.IsZero() {
			if _, err := rand.Read(specs[i].ID[:]); err != nil {
				return nil, err
			}
		}
	}
	r, err := cl.call(ctx, controlRequest{Op: "submit-many", Runs: specs})
	return r.IDs, err
}

func (cl *Client) ResultsOf(ctx context.Context, ids []CommandID) ([]Result, error) {
	r, err := cl.call(ctx, controlRequest{Op: "results-of", IDs: ids})
	return r.Results, err
}

func (cl *Client) Fleet(ctx context.Context, target string) ([]FleetEntry, error) {
	r, err := cl.call(ctx, controlRequest{Op: "fleet", Target: target})
	return r.Fleet, err
}

// Reports makes spec.ID when it is zero, as Run does.
func (cl *Client) Reports(ctx context.Context, spec RunSpec, wait bool) (Result, error) {
	if spec.ID.IsZero() {
		if _, err := rand.Read(spec.ID[:]); err != nil {
			return Result{}, err
		}
	}
	r, err := cl.call(ctx, controlRequest{Op: "reports", Run: &spec, Wait: wait})
	if r.Result == nil {
		return Result{}, err
	}
	return *r.Result, err
}
