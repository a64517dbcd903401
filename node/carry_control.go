package node

import "context"

// The control socket's carry operations (control.go): export, import and the gateway routes,
// asked of a running agent, which holds the state. The directory is the client's, made absolute
// by it: the agent runs as the same user and writes and reads it for the client.

// carryOp is the export and import operations' request.
type carryOp struct {
	Peer   string `json:"peer,omitempty"` // export: whose packages
	Dir    string `json:"dir"`
	Remove bool   `json:"remove,omitempty"` // import: delete the files whose effects committed
}

// serveCarry answers one carry operation.
func (n *Node) serveCarry(ctx context.Context, req controlRequest, resp *controlResponse) error {
	var err error
	switch req.Op {
	case "export", "import":
		var rep CarryReport
		if req.Op == "export" {
			rep, err = n.Export(ctx, req.Carry.Peer, req.Carry.Dir)
		} else {
			rep, err = n.Import(ctx, req.Carry.Dir, req.Carry.Remove)
		}
		resp.Carry = &rep
	case "gateways":
		resp.Gateways, err = n.Gateways(ctx)
	case "gateway-add":
		var g Gateway
		g, err = n.AddGateway(ctx, *req.Gateway)
		resp.Gateway = &g
	case "gateway-remove":
		err = n.RemoveGateway(ctx, req.Gateway.Name)
	}
	return err
}

func (cl *Client) Export(ctx context.Context, peer, dir string) (CarryReport, error) {
	r, err := cl.call(ctx, controlRequest{Op: "export", Carry: &carryOp{Peer: peer, Dir: dir}})
	if r.Carry == nil {
		return CarryReport{Dir: dir}, err
	}
	return *r.Carry, err
}

func (cl *Client) Import(ctx context.Context, dir string, remove bool) (CarryReport, error) {
	r, err := cl.call(ctx, controlRequest{Op: "import", Carry: &carryOp{Dir: dir, Remove: remove}})
	if r.Carry == nil {
		return CarryReport{Dir: dir}, err
	}
	return *r.Carry, err
}

func (cl *Client) AddGateway(ctx context.Context, g Gateway) (Gateway, error) {
	r, err := cl.call(ctx, controlRequest{Op: "gateway-add", Gateway: &g})
	if r.Gateway == nil {
		return g, err
	}
	return *r.Gateway, err
}

func (cl *Client) RemoveGateway(ctx context.Context, name string) error {
	_, err := cl.call(ctx, controlRequest{Op: "gateway-remove", Gateway: &Gateway{Name: name}})
	return err
}

func (cl *Client) Gateways(ctx context.Context) ([]Gateway, error) {
	r, err := cl.call(ctx, controlRequest{Op: "gateways"})
	return r.Gateways, err
}
