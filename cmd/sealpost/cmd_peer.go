package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/sealpost/sealpost/node"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// peerUsage names every peer subcommand, for `peer`, `peer --help` and `help peer`.
const peerUsage = `Usage: sealpost peer SUBCOMMAND [options] [arguments]

Pair with peers, list them, and change which programs they may run on this node.

Subcommands:
  add NAME --address ADDR [--code-file FILE | --code CODE | --fingerprint FP] [--allow PROGRAM ...] [--tag TAG ...] [--max-output SIZE]
                            pair with a peer (or add to what an existing one may run, or its tags)
  list [--json]             list peers: status, key epoch, last seen, allow list, output cap, tags
  set NAME --max-output SIZE
                            cap the output of the peer's commands sent back (default 1G)
  tag NAME TAG...           add tags to a peer (a target @TAG names every peer tagged TAG)
  untag NAME TAG...         take tags off a peer
  allow NAME PROGRAM...     let the peer run these programs here
  deny NAME PROGRAM...      take programs off the peer's allow list
  remove NAME               forget a peer
  report NAME INTERVAL|off  ask the peer to mail status reports (sealpost fleet shows them)

Run "sealpost peer SUBCOMMAND --help" for a subcommand's options.

Example:
  sealpost peer add bob --address bob@example.test --allow uptime
`

func runPeer(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		io.WriteString(g.stderr, peerUsage)
		return usageError{msg: "peer needs a subcommand", printed: true}
	}
	switch args[0] {
	case "--help", "-h", "-help", "help":
		io.WriteString(g.stdout, peerUsage)
		return nil
	case "add":
		return runPeerAdd(ctx, g, args[1:])
	case "list", "ls":
		return runPeerList(ctx, g, args[1:])
	case "allow":
		return runPeerAllow(ctx, g, args[1:], true)
	case "deny":
		return runPeerAllow(ctx, g, args[1:], false)
	case "remove", "rm":
		return runPeerRemove(ctx, g, args[1:])
	case "tag":
		return runPeerTag(ctx, g, args[1:], true)
	case "untag":
		return runPeerTag(ctx, g, args[1:], false)
	case "report":
		return runPeerReport(ctx, g, args[1:])
	case "set":
		return runPeerSet(ctx, g, args[1:])
	}
	return usagef("unknown peer subcommand %q (want add, list, set, allow, deny, tag, untag, remove or report)", args[0])
}

// runPeerAllow is `peer allow NAME PROGRAM...` (allow) and `peer deny NAME PROGRAM...`.
func runPeerAllow(ctx context.Context, g *globals, args []string, allow bool) error {
	verb := "deny"
	about := "Take programs off what the peer may run on this node: an absolute path removes that\nentry, a bare name every entry with that name. A program that is not on the list is an\nerror, and nothing changes. Commands already running are not stopped."
	if allow {
		verb = "allow"
		about = "Let the peer run these programs on this node: an absolute path, or a name looked up in\nPATH now (the agent runs the path it resolved to). ping and sysinfo need no allowing."
	}
	fs := newFlags(g, "peer "+verb, "NAME PROGRAM...", about, "sealpost peer "+verb+" bob uptime /usr/local/bin/backup-status")
	asJSON := fs.Bool("json", false, "print the resulting allow list as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usagef("peer %s needs a NAME and at least one PROGRAM", verb)
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	add, remove := pos[1:], []string(nil)
	if !allow {
		add, remove = nil, pos[1:]
	}
	list, err := api.Allow(ctx, pos[0], add, remove)
	if err != nil {
		return err
	}
	if *asJSON {
		if list == nil {
			list = []string{}
		}
		return writeJSON(g.stdout, struct {
			Name  string   `json:"name"`
			Allow []string `json:"allow"`
		}{pos[0], list})
	}
	if len(list) == 0 {
		fmt.Fprintf(g.stdout, "%s may run no programs here (ping and sysinfo only).\n", pos[0])
	} else {
		fmt.Fprintf(g.stdout, "%s may run: %s\n", pos[0], strings.Join(list, " "))
	}
	return nil
}

// runPeerTag is `peer tag NAME TAG...` (add) and `peer untag NAME TAG...`.
func runPeerTag(ctx context.Context, g *globals, args []string, add bool) error {
	verb := "untag"
	about := "Take tags off a peer. A tag the peer does not have is an error, and nothing changes."
	if add {
		verb = "tag"
		about = "Add tags to a peer. A tag is lower-case letters, digits, - and _; the target @TAG (in\nrun, ping, sysinfo) names every peer tagged TAG, and @all every peer."
	}
	fs := newFlags(g, "peer "+verb, "NAME TAG...", about, "sealpost peer "+verb+" web1 web eu")
	asJSON := fs.Bool("json", false, "print the peer's tags as JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 2 {
		return usagef("peer %s needs a NAME and at least one TAG", verb)
	}
	api, done, err := openAPI(ctx, g)
	if err != nil {
		return err
	}
	defer done()
	plus, minus := pos[1:], []string(nil)
	if !add {
		plus, minus = nil, pos[1:]
	}
	tags, err := api.Tag(ctx, pos[0], plus, minus)
	if err != nil {
		return err
	}
	if *asJSON {
		if tags == nil {
			tags = []string{}
		}
		return writeJSON(g.stdout, struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}{pos[0], tags})
	}
	if len(tags) == 0 {
		fmt.Fprintf(g.stdout, "%s has no tags.\n", pos[0])
	} else {
		fmt.Fprintf(g.stdout, "%s is tagged: %s\n", pos[0], strings.Join(tags, " "))
	}
	return nil
}

func runPeerAdd(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "peer add", "NAME --address ADDR [--code-file FILE | --code CODE | --fingerprint FP] [--allow PROGRAM ...] [--allow-read DIR ...] [--allow-write DIR ...] [--tag TAG ...] [--report-every D] [--max-output SIZE]",
		"Pair with a peer, or change what it may run here. Without a code or --fingerprint a pairing\ncode is generated and printed: run the printed command on the other node. --allow adds a\nprogram the peer may run on this node: an absolute path, or a name looked up in PATH now\n(`sealpost peer remove` starts over). --tag adds a tag (see `sealpost peer tag`).",
		"sealpost peer add bob --address bob@example.test --code-file - --allow uptime --tag web")
	var spec node.PeerSpec
	var allow, tags multiFlag
	var codeFile string
	fs.StringVar(&spec.Address, "address", "", "the peer's mail `address`")
	fs.StringVar(&codeFile, "code-file", "", "read the pairing code shared with the peer's operator from the first line of\n`FILE`; - is standard input, where a terminal is asked for it without showing it")
	fs.StringVar(&spec.Code, "code", "", "the pairing `CODE` on the command line, where other local users can read it\n(in the process list) and your shell history keeps it: prefer --code-file")
	fs.StringVar(&spec.Fingerprint, "fingerprint", "", "pin the peer's `FINGERPRINT` (from `sealpost id` on the peer) instead of a code")
	fs.Var(&allow, "allow", "`PROGRAM` the peer may run here (repeatable)")
	fs.Var(&tags, "tag", "add `TAG` to the peer's tags, for targets such as @TAG (repeatable)")
	var allowRead, allowWrite multiFlag
	fs.Var(&allowRead, "allow-read", "a `DIR`ectory the peer may pull files from (sealpost pull), itself and below,\nnever through a symlink out of it (repeatable)")
	fs.Var(&allowWrite, "allow-write", "a `DIR`ectory the peer may push files into (sealpost push), as --allow-read\n(repeatable)")
	fs.DurationVar(&spec.ReportEvery, "report-every", 0, "ask the peer, once paired, to mail a status report every `INTERVAL` (1s to 24h;\nsee `sealpost peer report`)")
	fs.Var(maxOutputFlag{&spec.MaxOutput}, "max-output", maxOutputHelp)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("peer add needs exactly one NAME")
	}
	given := 0
	for _, v := range []string{spec.Code, codeFile, spec.Fingerprint} {
		if v != "" {
			given++
		}
	}
	if given > 1 {
		return usagef("give one of --code-file, --code and --fingerprint")
	}
	spec.Name, spec.Allow, spec.Tags = pos[0], allow, tags
	spec.AllowRead, spec.AllowWrite = allowRead, allowWrite
	if codeFile != "" {
		// Before the state is opened: the lock is not held while someone types.
		if spec.Code, err = codeFrom(ctx, g, codeFile, spec.Name); err != nil {
			return err
		}
	}
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
		fmt.Fprintf(g.stdout, "Pairing code for %s: %s\n\nOn %s's node run:\n  sealpost peer add NAME --address %s --code-file -\nand type the code when it asks (so that it stays out of the process list and the shell history).\n(NAME is what that node calls this one.) Share the code privately; it expires in 24 hours.\n",
			spec.Name, res.GeneratedCode, spec.Name, id.Address)
	} else if res.Pairing {
		fmt.Fprintf(g.stdout, "Pairing with %s armed and mailed; it completes when the agents exchange mail.\n", spec.Name)
	}
	if len(res.Allow) > 0 {
		fmt.Fprintf(g.stdout, "%s may run: %s\n", spec.Name, strings.Join(res.Allow, " "))
	}
	if len(res.Tags) > 0 {
		fmt.Fprintf(g.stdout, "%s is tagged: %s\n", spec.Name, strings.Join(res.Tags, " "))
	}
	if len(res.AllowRead) > 0 {
		fmt.Fprintf(g.stdout, "%s may pull files from: %s\n", spec.Name, strings.Join(res.AllowRead, " "))
	}
	if len(res.AllowWrite) > 0 {
		fmt.Fprintf(g.stdout, "%s may push files into: %s\n", spec.Name, strings.Join(res.AllowWrite, " "))
	}
	if spec.MaxOutput != 0 {
		fmt.Fprintf(g.stdout, "%s's output is capped at %s per stream\n", spec.Name, describeMaxOutput(spec.MaxOutput))
	}
	if spec.ReportEvery > 0 {
		fmt.Fprintf(g.stdout, "%s will be asked for a status report every %s once it is paired (sealpost fleet shows them).\n", spec.Name, spec.ReportEvery)
	}
	return nil
}

func runPeerList(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "peer list", "[--json]", "List peers with their session status, key epoch, the programs each may run here and its tags.", "sealpost peer list --json")
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
	fmt.Fprintln(tw, "NAME\tADDRESS\tSTATUS\tEPOCH\tLAST SEEN\tFINGERPRINT\tALLOWED\tMAX OUTPUT\tTAGS")
	for _, p := range peers {
		seen, fp, allowed, tags := "-", "-", "-", "-"
		if len(p.Tags) > 0 {
			tags = strings.Join(p.Tags, ",")
		}
		if !p.LastSeen.IsZero() {
			seen = ago(time.Now(), p.LastSeen) + " ago"
		}
		if p.Fingerprint != "" {
			fp = p.Fingerprint
		}
		if len(p.Allow) > 0 {
			allowed = strings.Join(p.Allow, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Address, p.Status, p.Epoch, seen, fp, allowed, describeMaxOutput(p.MaxOutput), tags)
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

// maxCodeLine caps what --code-file reads: a pairing code is one short line.
const maxCodeLine = 1024

// errBadCodeInput: --code-file gave no usable code.
var errBadCodeInput = errors.New("no pairing code")

// readCode reads a pairing code: the first line of r (up to maxCodeLine bytes), without the
// white space around it. A line with a control character in it is refused: it is not a code
// that anyone typed or pasted on purpose.
func readCode(r io.Reader) (string, error) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxCodeLine+1), maxCodeLine+1).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if len(line) > maxCodeLine {
		return "", fmt.Errorf("%w: the first line is longer than %d bytes", errBadCodeInput, maxCodeLine)
	}
	code := strings.TrimSpace(line)
	switch {
	case code == "":
		return "", fmt.Errorf("%w: the first line is empty", errBadCodeInput)
	case strings.ContainsFunc(code, unicode.IsControl):
		return "", fmt.Errorf("%w: the first line holds a control character", errBadCodeInput)
	}
	return code, nil
}

// codeFrom reads the pairing code for --code-file: from the file, or with "-" from standard
// input, asking for it without echo when that is a terminal.
func codeFrom(ctx context.Context, g *globals, file, peer string) (string, error) {
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("--code-file: %w", err)
		}
		defer f.Close()
		code, err := readCode(f)
		if err != nil {
			return "", fmt.Errorf("--code-file %s: %w", file, err)
		}
		return code, nil
	}
	in := g.stdin
	if f, ok := in.(*os.File); ok && isTerminal(f) {
		restore, err := echoOff(f)
		if err != nil {
			fmt.Fprintf(g.stderr, "Pairing code for %s (typing is shown: %v): ", peer, err)
		} else {
			fmt.Fprintf(g.stderr, "Pairing code for %s (typing is not shown): ", peer)
			defer func() { restore(); fmt.Fprintln(g.stderr) }()
		}
	}
	// A reader blocked on a terminal does not see ctx: read aside, so that Ctrl-C still ends us
	// (with the echo restored).
	type read struct {
		code string
		err  error
	}
	ch := make(chan read, 1)
	go func() { c, err := readCode(in); ch <- read{c, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			return "", fmt.Errorf("--code-file -: %w", r.err)
		}
		return r.code, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}
