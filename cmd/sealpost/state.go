package main

import (
	"errors"
	"flag"
	"fmt"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/node"
)

// openAPI reaches this node: through the running agent's control socket when there is one, else
// by opening the state directly. close releases what was opened.
func openAPI(g *globals) (api node.API, close func(), err error) {
	if c, err := node.DialControl(g.state); err == nil {
		return c, func() {}, nil
	}
	n, err := openNode(g)
	if err != nil {
		return nil, nil, err
	}
	return n, func() { n.Close() }, nil
}

// parseAndOpen parses the flags of a command that takes no arguments and reaches the node (see
// openAPI).
func parseAndOpen(g *globals, fs *flag.FlagSet, args []string) (api node.API, close func(), err error) {
	if _, err := parse(fs, args); err != nil {
		return nil, nil, err
	}
	return openAPI(g)
}

func openNode(g *globals) (*node.Node, error) {
	n, err := node.Open(node.Options{Dir: g.state, Logger: g.logger(), Version: version})
	var inUse *keystore.InUseError
	if errors.As(err, &inUse) {
		return nil, fmt.Errorf("%w\nAnother sealpost process holds this state: an agent (which would answer on its control socket once it is up), or a `run --wait` still waiting; wait for it or stop it", err)
	}
	return n, err
}
