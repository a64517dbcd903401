package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/web"
)

func runFleet(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "fleet", "[--json] [--where EXPR] [TARGET]",
		"Show what this node knows of its peers' hosts, one line per peer: when it last heard from\n"+
			"each, the round trip of the last ping, the key epoch, OS and kernel, uptime, load, free\n"+
			"memory, the fullest disk, the commands still waiting for an answer, and STALE for a peer\n"+
			"silent for more than twice its report interval (`peer report`), and how many of the\n"+
			"peer's own checks (`sealpost check` there) failed. The host figures come\n"+
			"from the last `sysinfo` answer or status report. TARGET is a peer, @TAG, @all or a comma-\n"+
			"separated list of them (default: every peer).\n\n"+whereHelp+
			"\n\nWith --json: an array of objects, one per peer, with the names above, last_seen as a time,\n"+
			"and the sysinfo members (docs/PROTOCOL.md section 19) under their own names.",
		`sealpost fleet --where 'disk_free_pct < 10 || last_seen > 2h' @web`)
	asJSON := fs.Bool("json", false, "print a JSON array, one object per peer")
	where := fs.String("where", "", "keep only the peers for which `EXPR` is true (see above)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("fleet takes at most one TARGET, not %q (join peers and tags with commas: bob,@web)", strings.Join(pos, " "))
	}
	target := ""
	if len(pos) == 1 {
		target = pos[0]
		if _, err := node.ParseTarget(target); err != nil {
			return usagef("%v", err)
		}
	}
	var filter *whereFilter
	if whereGiven(fs) {
		if filter, err = compileWhere(*where); err != nil {
			return usagef("%v", err)
		}
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	fleet, err := api.Fleet(ctx, target)
	if err != nil {
		return err
	}
	return showFleet(g, fleet, filter, *asJSON, time.Now())
}

// showFleet prints the peers of fleet that filter keeps (nil: all), as a table or JSON.
func showFleet(g *globals, fleet []node.FleetEntry, filter *whereFilter, asJSON bool, now time.Time) error {
	rows := make([]node.FleetEntry, 0, len(fleet))
	for _, e := range fleet {
		if filter == nil || filter.match(e, now) {
			rows = append(rows, e)
		}
	}
	if asJSON {
		return writeJSON(g.stdout, rows)
	}
	switch {
	case len(fleet) == 0:
		fmt.Fprintln(g.stdout, "No peers yet. Add one with `sealpost peer add NAME --address ADDRESS`.")
		return nil
	case len(rows) == 0:
		fmt.Fprintf(g.stdout, "None of the %d %s matches --where.\n", len(fleet), plural(len(fleet), "peer", "peers"))
		return nil
	}
	printFleet(g, rows, now)
	return nil
}

// whereGiven reports whether --where was on the command line (an empty expression is then a
// usage error, not "no filter").
func whereGiven(fs *flag.FlagSet) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "where" })
	return given
}

// printFleet writes the fleet table, with the figures the dashboard shows (web.FleetRowOf).
// What peers report (host names, OS and kernel strings, mount points) is shown with control
// characters escaped: it must not drive the terminal (THREATS.md row 41). Absurd figures (a
// load of 1e308) come capped from FleetRowOf (">999"), so a column stays a column.
func printFleet(g *globals, rows []node.FleetEntry, now time.Time) {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tLAST HEARD\tRTT\tEPOCH\tOS\tUPTIME\tLOAD\tMEM FREE\tFULLEST DISK\tPENDING\t")
	for _, e := range rows {
		r := web.FleetRowOf(e, now)
		var flags []string
		if r.Stale {
			flags = append(flags, "STALE")
		}
		if e.ChecksFailing > 0 {
			flags = append(flags, fmt.Sprintf("%d %s failing", e.ChecksFailing, plural(e.ChecksFailing, "check", "checks")))
		}
		stale := strings.Join(flags, ", ")
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n",
			printable(r.Name), r.Heard, r.RoundTrip, r.Epoch, printable(r.OS), r.Uptime, r.Load, r.Mem, printable(r.Disk), r.Pending, stale)
	}
	tw.Flush()
	io.WriteString(g.stdout, b.String()) // one write: a reader that stops early (| head) sees whole lines
}

// printable escapes what a terminal would act on (control characters, invalid UTF-8) in text
// that came from a peer; tabs too, which would break the table's columns.
func printable(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' || r == unicode.ReplacementChar }) {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
