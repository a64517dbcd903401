package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sealpost/sealpost/node"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runPeer(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 || args[0] == "--help" || args[0] == "-h" {
		fmt.Fprint(g.stderr, "Usage: sealpost peer add NAME --address ADDR [--code CODE | --fingerprint FP] [--allow PROGRAM ...]\n       sealpost peer list [--json]\n       sealpost peer remove NAME\n\nExample:\n  sealpost peer add bob --address bob@example.test --allow uptime\n")
		if len(args) == 0 {
			return usagef("peer needs a subcommand: add or list")
		}
		return nil
	}
	switch args[0] {
	case "add":
		return runPeerAdd(ctx, g, args[1:])
	case "list", "ls":
		return runPeerList(ctx, g, args[1:])
	case "remove", "rm":
		return runPeerRemove(ctx, g, args[1:])
	}
	return usagef("unknown peer subcommand %q (want add, list or remove)", args[0])
}

func runPeerAdd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "peer add", "NAME --address ADDR [--code CODE | --fingerprint FP] [--allow PROGRAM ...]",
		"Pair with a peer, or change what it may run here. Without --code or --fingerprint a pairing\ncode is generated and printed: run the printed command on the other node. --allow adds a\nprogram the peer may run on this node: an absolute path, or a name looked up in PATH now\n(`sealpost peer remove` starts over).",
		"sealpost peer add bob --address bob@example.test --code 7KQ2-M9XD-4HTC-P0WZ-8RNB-1EJF --allow uptime")
	var spec node.PeerSpec
	var allow multiFlag
	fs.StringVar(&spec.Address, "address", "", "the peer's mail `address`")
	fs.StringVar(&spec.Code, "code", "", "pairing `CODE` shared with the peer's operator")
	fs.StringVar(&spec.Fingerprint, "fingerprint", "", "pin the peer's `FINGERPRINT` (from `sealpost id` on the peer) instead of a code")
	fs.Var(&allow, "allow", "`PROGRAM` the peer may run here (repeatable)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("peer add needs exactly one NAME")
	}
	if spec.Code != "" && spec.Fingerprint != "" {
		return usagef("give --code or --fingerprint, not both")
	}
	spec.Name, spec.Allow = pos[0], allow
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	res, err := api.AddPeer(ctx, spec)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(g.stdout, res)
	}
	if res.GeneratedCode != "" {
		id, _ := api.Identity(ctx)
		fmt.Fprintf(g.stdout, "Pairing code for %s: %s\n\nOn %s's node run:\n  sealpost peer add NAME --address %s --code %s\n(NAME is what that node calls this one.) Share the code privately; it expires in 24 hours.\n",
			spec.Name, res.GeneratedCode, spec.Name, id.Address, res.GeneratedCode)
	} else if res.Pairing {
		fmt.Fprintf(g.stdout, "Pairing with %s armed and mailed; it completes when the agents exchange mail.\n", spec.Name)
	}
	if len(res.Allow) > 0 {
		fmt.Fprintf(g.stdout, "%s may run: %s\n", spec.Name, strings.Join(res.Allow, " "))
	}
	return nil
}

func runPeerList(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "peer list", "[--json]", "List peers with their session status and key epoch.", "sealpost peer list --json")
	asJSON := fs.Bool("json", false, "print JSON")
	api, done, err := parseAndOpen(ctx, g, fs, args)
	if err != nil {
		return err
	}
	defer done()
	peers, err := api.Peers(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if peers == nil {
			peers = []node.PeerInfo{}
		}
		return writeJSON(g.stdout, peers)
	}
	if len(peers) == 0 {
		fmt.Fprintln(g.stdout, "No peers yet. Add one with `sealpost peer add NAME --address ADDRESS`.")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tSTATUS\tEPOCH\tLAST SEEN\tFINGERPRINT")
	for _, p := range peers {
		seen := "-"
		if !p.LastSeen.IsZero() {
			seen = ago(time.Now(), p.LastSeen) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", p.Name, p.Address, p.Status, p.Epoch, seen, p.Fingerprint)
	}
	return tw.Flush()
}

func runPeerRemove(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "peer remove", "NAME",
		"Forget a peer: its pinned key, sessions, unanswered commands, allow list and any armed\npairing. Pair again with `sealpost peer add` to talk to it again.",
		"sealpost peer remove bob")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("peer remove needs exactly one NAME")
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	if err := api.RemovePeer(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "Removed peer %s.\n", pos[0])
	return nil
}
