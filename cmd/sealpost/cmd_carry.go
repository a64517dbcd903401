package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/sealpost/sealpost/node"
)

// export and import: packages carried as files, for nodes without a mailbox and the air gap
// (docs/PROTOCOL.md section 21).

func runExport(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "export", "--peer NAME [--json] DIR",
		"Write every package waiting for the peer NAME into the directory DIR, one file each\n(random names ending in .slpk; a file is never overwritten), and take them out of the\noutbox once the files are on disk, as a sent mail leaves it. Carry DIR to the peer and\nrun `sealpost import DIR` there. NAME may also be a gateway route (sealpost gateway).",
		"sealpost export --peer vault /media/usb/sealpost")
	peer := fs.String("peer", "", "the peer (or gateway route) whose packages to write (required)")
	asJSON := fs.Bool("json", false, "print JSON: the directory and each file written")
	dir, err := carryDir(fs, args)
	if err != nil {
		return err
	}
	if *peer == "" {
		return usagef("--peer NAME is required: whose packages to write")
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	rep, err := api.Export(ctx, *peer, dir)
	if *asJSON {
		if jerr := writeJSON(g.stdout, rep); jerr != nil {
			return jerr
		}
	} else {
		for _, f := range rep.Files {
			fmt.Fprintf(g.stdout, "wrote     %s  %s, %d bytes\n", f.Name, f.Type, f.Bytes)
		}
		if err == nil {
			fmt.Fprintf(g.stdout, "%d %s for %s in %s\n", len(rep.Files), plural(len(rep.Files), "package", "packages"), *peer, dir)
		}
	}
	return err
}

func runImport(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "import", "[--remove] [--json] DIR",
		"Handle every package file (*.slpk) in the directory DIR as if it had arrived by mail:\nthe same checks, and the same ledger, so importing a directory again runs nothing twice.\nFiles for other nodes and files this node wrote are left alone; a file that cannot be\nread or is refused is reported and left alone too, and the others are still imported.\nCommands the files bring run before import returns (or in the agent, when one runs),\nand their answers wait for the next `sealpost export` (or go by mail). On a gateway,\nfiles from the air-gapped node are queued for mail and removed. Exits 1 if a file failed.",
		"sealpost import --remove /media/usb/sealpost")
	remove := fs.Bool("remove", false, "delete the files whose effects are committed (imported, or seen before)")
	asJSON := fs.Bool("json", false, "print JSON: the directory and what became of each file")
	dir, err := carryDir(fs, args)
	if err != nil {
		return err
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	rep, err := api.Import(ctx, dir, *remove)
	return importReport(g, rep, err, *asJSON)
}

// importReport prints what an import did and returns its error, or one that says how many files
// failed.
func importReport(g *globals, rep node.CarryReport, err error, asJSON bool) error {
	if asJSON {
		if jerr := writeJSON(g.stdout, rep); jerr != nil {
			return jerr
		}
	} else {
		printCarried(g.stdout, rep)
	}
	if err != nil {
		return err
	}
	if k := rep.Count(node.CarryFailed); k > 0 {
		return fmt.Errorf("%d %s in %s could not be imported (see above); they were left where they are", k, plural(k, "file", "files"), rep.Dir)
	}
	return nil
}

// printCarried prints one line a file and a summary.
func printCarried(w io.Writer, rep node.CarryReport) {
	for _, f := range rep.Files {
		line := fmt.Sprintf("%-9s %s", f.Outcome, f.Name)
		if f.Type != "" {
			line += fmt.Sprintf("  %s, %d bytes", f.Type, f.Bytes)
		}
		if f.Detail != "" {
			line += ": " + node.Printable(f.Detail)
		}
		if f.Removed {
			line += " (removed)"
		}
		fmt.Fprintln(w, line)
	}
	var parts []string
	for _, o := range []string{node.CarryImported, node.CarrySeen, node.CarryStale, node.CarryForwarded, node.CarrySkipped, node.CarryFailed} {
		if k := rep.Count(o); k > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k, o))
		}
	}
	removed := 0
	for _, f := range rep.Files {
		if f.Removed {
			removed++
		}
	}
	if removed > 0 {
		parts = append(parts, fmt.Sprintf("%d removed", removed))
	}
	if len(parts) == 0 {
		parts = append(parts, "no package files")
	}
	fmt.Fprintf(w, "%s: %s\n", rep.Dir, strings.Join(parts, ", "))
}

// carryDir parses a command whose one argument is a directory and returns it absolute (a running
// agent reads or writes it for this process).
func carryDir(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("give exactly one directory (the one carried between the nodes)")
	}
	return absDir(pos[0])
}

// absDir is dir made absolute.
func absDir(dir string) (string, error) { return filepath.Abs(dir) }
