package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/sealpost/sealpost/keystore"
)

// The control socket: a running agent owns the state (bbolt allows one process), so the CLI asks
// it to act instead. A Unix socket in the state directory, mode 0600, one JSON request and one
// JSON response per connection. Only the state directory's owner can reach it.

// SocketName is the control socket's file name inside the state directory.
const SocketName = "agent.sock"

type controlRequest struct {
	Op      string        `json:"op"` // identity, add-peer, peers, remove-peer, run, results, status
	Peer    *PeerSpec     `json:"peer,omitempty"`
	Run     *RunSpec      `json:"run,omitempty"`
	Wait    bool          `json:"wait,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

type controlResponse struct {
	Error    string            `json:"error,omitempty"`
	Timeout  bool              `json:"timeout,omitempty"`
	Identity *IDInfo           `json:"identity,omitempty"`
	Added    *PeerAdded        `json:"added,omitempty"`
	Peers    []PeerInfo        `json:"peers,omitempty"`
	Result   *keystore.Result  `json:"result,omitempty"`
	Results  []keystore.Result `json:"results,omitempty"`
	Status   *Status           `json:"status,omitempty"`
}

// ListenControl starts serving the control socket until ctx ends.
func (n *Node) ListenControl(ctx context.Context) error {
	path := filepath.Join(n.opts.Dir, SocketName)
	// We hold the state lock, so a socket file left here belongs to a dead agent.
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	// From now on requests may arrive: this process serves the mailbox, and waiters must leave
	// reading it to the serving loop.
	n.serving.Store(true)
	go func() {
		<-ctx.Done()
		ln.Close()
		os.Remove(path)
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go n.serveControl(ctx, c)
		}
	}()
	return nil
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
	case "identity", "peers", "results", "status":
	case "add-peer", "remove-peer":
		if req.Peer == nil {
			missing = "a peer"
		}
	case "run":
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

func (n *Node) serveControl(ctx context.Context, c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(controlReadTimeout))
	req, err := decodeControlRequest(c)
	if err != nil {
		// Answer, so that the client prints why instead of "agent answered: EOF".
		_ = json.NewEncoder(c).Encode(controlResponse{Error: err.Error()})
		return
	}
	c.SetReadDeadline(time.Time{})
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
	case "run":
		var r keystore.Result
		r, err = n.Run(ctx, *req.Run, req.Wait, nil)
		resp.Result = &r
	case "results":
		resp.Results, err = n.Results(ctx)
	case "status":
		var st Status
		st, err = n.Status(ctx)
		resp.Status = &st
	}
	if err != nil {
		resp.Error = err.Error()
		resp.Timeout = errors.Is(err, context.DeadlineExceeded)
	}
	_ = json.NewEncoder(c).Encode(resp)
}

// Client talks to a running agent through its control socket.
type Client struct {
	path string
}

// DialControl returns a client if an agent is listening in dir, else an error.
func DialControl(dir string) (*Client, error) {
	path := filepath.Join(dir, SocketName)
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return nil, err
	}
	c.Close()
	return &Client{path: path}, nil
}

var _ API = (*Client)(nil)

func (cl *Client) call(ctx context.Context, req controlRequest) (controlResponse, error) {
	var resp controlResponse
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", cl.path)
	if err != nil {
		return resp, fmt.Errorf("reach the agent: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		req.Timeout = time.Until(dl)
		c.SetDeadline(dl.Add(5 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return resp, err
	}
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			return resp, ctx.Err()
		}
		return resp, fmt.Errorf("agent answered: %w", err)
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

func (cl *Client) Run(ctx context.Context, spec RunSpec, wait bool, _ func(keystore.Result)) (keystore.Result, error) {
	r, err := cl.call(ctx, controlRequest{Op: "run", Run: &spec, Wait: wait})
	if r.Result == nil {
		return keystore.Result{}, err
	}
	return *r.Result, err
}

func (cl *Client) Results(ctx context.Context) ([]keystore.Result, error) {
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
