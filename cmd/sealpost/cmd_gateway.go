package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/sealpost/sealpost/node"
)

// gatewayUsage names every gateway subcommand, for `gateway --help` and `help gateway`.
const gatewayUsage = `Usage: sealpost gateway SUBCOMMAND [options] [arguments]
       sealpost gateway --peer NAME --dir DIR [--json]

Forward sealed packages between this node's mailbox and a directory for an air-gapped node
(init --no-mail) that this node cannot open: mail sealed to it is held here, and its files
are mailed on to the peers they name. The gateway holds no key of the air-gapped node and
learns only sizes and timing. Its peers address it at ADDR (by default this node's address
plus-addressed with NAME, such as gw+vault@example.org, which must reach this mailbox); the
air-gapped node is initialised with that address.

Subcommands:
  add NAME --fingerprint FP [--address ADDR]   forward for the node with fingerprint FP
  list [--json]                                list the nodes forwarded for
  remove NAME                                  stop forwarding for NAME
  --peer NAME --dir DIR                        carry: mail on NAME's files in DIR, then
                                               write what waits for NAME into DIR

Example:
  sealpost gateway add vault --fingerprint 0f1e...
  sealpost gateway --peer vault --dir /media/usb/sealpost
`

func runGateway(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		io.WriteString(g.stderr, gatewayUsage)
		return usageError{msg: "gateway needs a subcommand, or --peer and --dir", printed: true}
	}
	switch args[0] {
	case "--help", "-h", "-help", "help":
		io.WriteString(g.stdout, gatewayUsage)
		return nil
	case "add":
		return runGatewayAdd(ctx, g, args[1:])
	case "list", "ls":
		return runGatewayList(ctx, g, args[1:])
	case "remove", "rm":
		return runGatewayRemove(ctx, g, args[1:])
	}
	return runGatewayCarry(ctx, g, args)
}

func runGatewayAdd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "gateway add", "NAME --fingerprint FP [--address ADDR]",
		"Forward for the air-gapped node with fingerprint FP (`sealpost id` there): mail sealed to\nit is held for `sealpost gateway --peer NAME --dir DIR`, and its files are mailed on.",
		"sealpost gateway add vault --fingerprint 0f1e2d3c4b5a69788796a5b4c3d2e1f0")
	var gw node.Gateway
	fs.StringVar(&gw.Fingerprint, "fingerprint", "", "the air-gapped node's `FP` (required)")
	fs.StringVar(&gw.Address, "address", "", "the air-gapped node's address, which must reach this mailbox (default: this\nnode's address plus-addressed with NAME)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("gateway add needs exactly one NAME")
	}
	if gw.Fingerprint == "" {
		return usagef("--fingerprint is required: the air-gapped node's (`sealpost id` prints it there)")
	}
	gw.Name = pos[0]
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	gw, err = api.AddGateway(ctx, gw)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "Forwarding for %s (%s) at %s.\nOn the air-gapped node: sealpost init --no-mail --address %s\nIts peers pair with it at %s; carry with `sealpost gateway --peer %s --dir DIR`.\n",
		gw.Name, gw.Fingerprint, gw.Address, gw.Address, gw.Address, gw.Name)
	return nil
}

func runGatewayList(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "gateway list", "[--json]", "List the air-gapped nodes this node forwards for.", "sealpost gateway list")
	asJSON := fs.Bool("json", false, "print JSON")
	api, done, err := parseAndOpen(ctx, g, fs, args)
	if err != nil {
		return err
	}
	defer done()
	gws, err := api.Gateways(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		if gws == nil {
			gws = []node.Gateway{}
		}
		return writeJSON(g.stdout, gws)
	}
	if len(gws) == 0 {
		fmt.Fprintln(g.stdout, "No gateway routes (add one with `sealpost gateway add NAME --fingerprint FP`).")
		return nil
	}
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tFINGERPRINT")
	for _, gw := range gws {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", gw.Name, gw.Address, gw.Fingerprint)
	}
	return tw.Flush()
}

func runGatewayRemove(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "gateway remove", "NAME", "Stop forwarding for NAME. What waits for it stays in the outbox (export still writes it).", "sealpost gateway remove vault")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("gateway remove needs exactly one NAME")
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	if err := api.RemoveGateway(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "No longer forwarding for %s.\n", pos[0])
	return nil
}

// runGatewayCarry is `gateway --peer NAME --dir DIR`: an import of DIR (which mails on the
// air-gapped node's files), then an export of what waits for it.
func runGatewayCarry(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "gateway", "--peer NAME --dir DIR [--json]",
		"Mail on the files the air-gapped node NAME left in DIR (and remove them), import those\nfor this node, then write what waits for NAME into DIR.",
		"sealpost gateway --peer vault --dir /media/usb/sealpost")
	peer := fs.String("peer", "", "the gateway route (required)")
	dir := fs.String("dir", "", "the carried `DIR` (required)")
	asJSON := fs.Bool("json", false, "print JSON: {\"import\": ..., \"export\": ...}")
	if _, err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *peer == "" || *dir == "" {
		return usagef("--peer NAME and --dir DIR are required (or a subcommand: add, list, remove)")
	}
	abs, err := absDir(*dir)
	if err != nil {
		return err
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	in, ierr := api.Import(ctx, abs, false)
	var out node.CarryReport
	var eerr error
	if ierr == nil {
		out, eerr = api.Export(ctx, *peer, abs)
	}
	if *asJSON {
		if err := writeJSON(g.stdout, map[string]node.CarryReport{"import": in, "export": out}); err != nil {
			return err
		}
	} else {
		printCarried(g.stdout, in)
		for _, f := range out.Files {
			fmt.Fprintf(g.stdout, "wrote     %s  %s, %d bytes\n", f.Name, f.Type, f.Bytes)
		}
		fmt.Fprintf(g.stdout, "%d %s for %s in %s\n", len(out.Files), plural(len(out.Files), "package", "packages"), *peer, abs)
	}
	if ierr != nil {
		return ierr
	}
	if eerr != nil {
		return eerr
	}
	if k := in.Count(node.CarryFailed); k > 0 {
		return fmt.Errorf("%d %s in %s could not be imported (see above); they were left where they are", k, plural(k, "file", "files"), abs)
	}
	return nil
}
