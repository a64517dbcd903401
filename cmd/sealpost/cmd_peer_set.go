package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/sealpost/sealpost/node"
)

// maxOutputFlag is --max-output: a size (parseSize), or 0 / default for the node's default
// (node.MaxOutputDefault). Not given, the cap stays as it is.
type maxOutputFlag struct{ v *int64 }

func (f maxOutputFlag) String() string { return "" }

func (f maxOutputFlag) Set(s string) error {
	if strings.EqualFold(strings.TrimSpace(s), "default") {
		*f.v = node.MaxOutputDefault
		return nil
	}
	n, err := parseSize(s)
	if err != nil {
		return fmt.Errorf("%w, or 0 or default for the default (1G)", err)
	}
	if n == 0 {
		n = node.MaxOutputDefault
	}
	*f.v = n
	return nil
}

const maxOutputHelp = "cap each stream (stdout, stderr) of the output of the peer's commands here at\n`SIZE` (K, M, G, T: powers of 1024; 0 or default: 1G); past it the output is cut and\nthe peer's `run --wait` exits 77"

// describeMaxOutput is a cap as `peer list` shows it.
func describeMaxOutput(n int64) string {
	if n <= 0 {
		return "default"
	}
	return formatSize(n)
}

// runPeerSet is `peer set NAME --max-output SIZE`: change a setting of a peer paired already
// (or being paired), without pairing again.
func runPeerSet(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "peer set", "NAME --max-output SIZE",
		"Change a peer's settings on this node. --max-output caps how much of each stream of\nits commands' output this node sends it (the default is 1G).",
		"sealpost peer set alice --max-output 10G")
	var spec node.PeerSpec
	fs.Var(maxOutputFlag{&spec.MaxOutput}, "max-output", maxOutputHelp)
	asJSON := fs.Bool("json", false, "print the peer's row of `peer list --json`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("peer set needs exactly one NAME")
	}
	if spec.MaxOutput == 0 {
		return usagef("peer set %s: give the setting to change, like --max-output 10G", pos[0])
	}
	spec.Name = pos[0]
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	peers, err := api.Peers(ctx)
	if err != nil {
		return err
	}
	status := ""
	for _, p := range peers {
		if p.Name == spec.Name {
			status = p.Status
		}
	}
	switch status {
	case "":
		return fmt.Errorf("no peer called %s: pair with it first (sealpost peer add %s --address ADDRESS --max-output SIZE)", spec.Name, spec.Name)
	case "pairing":
		// AddPeer without an address would not keep the armed pairing; with one it would arm a new.
		return fmt.Errorf("%s is still pairing: run this again once it is paired (sealpost peer list), or give --max-output to the `sealpost peer add %s` that arms the pairing", spec.Name, spec.Name)
	}
	if _, err := api.AddPeer(ctx, spec); err != nil {
		return err
	}
	if peers, err = api.Peers(ctx); err != nil {
		return err
	}
	for _, p := range peers {
		if p.Name != spec.Name {
			continue
		}
		if *asJSON {
			return writeJSON(g.stdout, p)
		}
		fmt.Fprintf(g.stdout, "%s: output capped at %s per stream\n", p.Name, describeMaxOutput(p.MaxOutput))
	}
	return nil
}
