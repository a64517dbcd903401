package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/node"
)

func runDemo(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "demo", "[--keep]",
		"Start the embedded relay and two nodes, alice (controller) and bob (agent), in a temporary\ndirectory; pair them, open a session, and run ping, sysinfo, an allowed program, a denied\nprogram and a failing program, printing who sent what as it happens.",
		"sealpost demo")
	keep := fs.Bool("keep", false, "keep the temporary state directories and print where they are")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	d := &demo{out: g.stdout, start: time.Now()}
	return d.run(ctx, *keep)
}

type demo struct {
	out     io.Writer
	mu      sync.Mutex
	start   time.Time
	pairing atomic.Bool // step 1 runs: a PAIR set aside is the protocol at work, not an error
}

func (d *demo) say(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, format+"\n", args...)
}

func (d *demo) events(who string) func(node.Event) {
	return func(e node.Event) {
		d.mu.Lock()
		defer d.mu.Unlock()
		line := formatEvent(who, e)
		if e.Kind == node.EventRejected && e.Package == "PAIR" && d.pairing.Load() {
			// alice's PAIR reaches bob's agent before his operator typed the code: set aside,
			// and alice answers bob's own PAIR with a new one. Said as what it is.
			line = fmt.Sprintf("%s   set aside a PAIR from %s that came before the code was typed here (the other side sends another)", who, e.Peer)
		}
		fmt.Fprintf(d.out, "  %6.3fs %s\n", time.Since(d.start).Seconds(), line)
	}
}

// formatEvent renders one node event as a transcript line.
func formatEvent(who string, e node.Event) string {
	prefix := who
	if prefix != "" {
		prefix += " "
	}
	switch e.Kind {
	case node.EventSent:
		how := "sealed"
		if e.Package == "PAIR" || strings.HasPrefix(e.Package, "INIT") {
			how = "signed"
		}
		return fmt.Sprintf("%s→ %-6s %-9s %5d bytes, %s", prefix, e.Peer, e.Package, e.Bytes, how)
	case node.EventReceived:
		return fmt.Sprintf("%s← %-6s %-9s %5d bytes", prefix, e.Peer, e.Package, e.Bytes)
	case node.EventSession:
		return fmt.Sprintf("%s  session with %s: %s (%s)", prefix, e.Peer, e.Status, e.Detail)
	case node.EventPaired:
		return fmt.Sprintf("%s  paired with %s: %s", prefix, e.Peer, e.Detail)
	case node.EventExecuted:
		return fmt.Sprintf("%s  ran for %s: %s", prefix, e.Peer, e.Detail)
	case node.EventDenied:
		return fmt.Sprintf("%s  refused for %s: %s", prefix, e.Peer, e.Detail)
	case node.EventResult:
		s := fmt.Sprintf("%s  answer from %s: %s", prefix, e.Peer, e.Status)
		if e.Status == node.StatusDone {
			s += fmt.Sprintf(", key epoch now %d", e.Epoch)
		}
		return s
	case node.EventRejected:
		return fmt.Sprintf("%s  moved aside mail from %s: %s", prefix, e.Peer, e.Detail)
	}
	return fmt.Sprintf("%s%s %s %s", prefix, e.Kind, e.Peer, e.Detail)
}

func secret() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *demo) run(ctx context.Context, keep bool) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "sealpost-demo-")
	if err != nil {
		return err
	}
	if keep {
		defer d.say("\nState kept in %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	users := map[string]string{"alice@example.test": secret(), "bob@example.test": secret()}
	relay, err := mailbox.StartRelay(ctx, mailbox.RelayConfig{Users: users})
	if err != nil {
		return fmt.Errorf("start the embedded relay: %w", err)
	}
	defer relay.Close()
	d.say("sealpost demo: two nodes talk through an embedded mail relay (SMTP %s, IMAP %s).\n", relay.SMTPAddr(), relay.IMAPAddr())

	open := func(name string) (*node.Node, error) {
		addr := name + "@example.test"
		tr, err := mailbox.New(mailbox.Config{Address: addr, IMAPAddr: relay.IMAPAddr(), SMTPAddr: relay.SMTPAddr(),
			Username: addr, Password: users[addr], TLS: "none", AllowPlaintextAuth: true})
		if err != nil {
			return nil, err
		}
		return node.Init(node.Options{Dir: filepath.Join(dir, name), WitnessDir: filepath.Join(dir, "witness"), Transport: tr, Events: d.events(fmt.Sprintf("%-5s", name)), Version: version, RetryAfter: 5 * time.Second},
			node.MailConfig{Address: addr, IMAP: relay.IMAPAddr(), SMTP: relay.SMTPAddr(), Login: addr, TLS: "none", AllowPlaintextAuth: true})
	}
	alice, err := open("alice")
	if err != nil {
		return err
	}
	defer alice.Close()
	bob, err := open("bob")
	if err != nil {
		return err
	}
	defer bob.Close()
	d.say("alice %s  (controller)\nbob   %s  (agent)\n", alice.Fingerprint(), bob.Fingerprint())

	var wg sync.WaitGroup
	for _, n := range []*node.Node{alice, bob} {
		wg.Add(1)
		go func() { defer wg.Done(); n.Serve(ctx, false) }()
	}
	defer func() { cancel(); wg.Wait() }()

	d.say("1. Pairing: alice generates a code, bob's operator types it in; each side pins the other's key.")
	d.pairing.Store(true)
	added, err := alice.AddPeer(ctx, node.PeerSpec{Name: "bob", Address: "bob@example.test"})
	if err != nil {
		return err
	}
	d.say("   code %s", added.GeneratedCode)
	allow := []string{"uname", "false"}
	for _, p := range allow {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("the demo needs %q in PATH: %w", p, err)
		}
	}
	if _, err := bob.AddPeer(ctx, node.PeerSpec{Name: "alice", Address: "alice@example.test", Code: added.GeneratedCode, Allow: allow}); err != nil {
		return err
	}
	if err := waitFor(ctx, func() bool { return status(ctx, alice, "bob") == "paired" && status(ctx, bob, "alice") == "paired" }); err != nil {
		return fmt.Errorf("pairing did not complete: %w", err)
	}
	d.pairing.Store(false)
	d.say("\n2. Commands. The first one opens a session (RSA-3072 + ML-KEM-768 handshake); every answer rotates the key.")
	steps := []struct {
		title string
		req   commands.Request
	}{
		{"ping (built in; opens the session)", commands.Request{Name: "ping"}},
		{"sysinfo (built in)", commands.Request{Name: "sysinfo"}},
		{"uname -sr (allowed for alice)", commands.Request{Name: "exec", Argv: []string{"uname", "-sr"}}},
		{"rm -rf /tmp/precious (not allowed)", commands.Request{Name: "exec", Argv: []string{"rm", "-rf", "/tmp/precious"}}},
		{"false (allowed, fails)", commands.Request{Name: "exec", Argv: []string{"false"}}},
	}
	var rows []string
	for i, s := range steps {
		d.say("\n   %d) alice runs %s on bob", i+1, s.title)
		r, err := alice.Run(ctx, node.RunSpec{Peer: "bob", Request: s.req, TTL: time.Hour}, true, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
		rtt := r.Finished.Sub(r.Sent).Round(time.Millisecond)
		d.say("      → %s", summarize(r))
		peers, _ := alice.Peers(ctx)
		epoch := uint64(0)
		for _, p := range peers {
			if p.Name == "bob" {
				epoch = p.Epoch
			}
		}
		rows = append(rows, fmt.Sprintf("   %-36s %-16s %8s   epoch %d", s.title, statusLine(r), rtt, epoch))
	}
	if err := d.fanOut(ctx, alice); err != nil {
		return err
	}
	if err := d.pullFile(ctx, dir, alice, bob); err != nil {
		return err
	}
	d.say("\nSummary (round trip through SMTP and IMAP on this machine):")
	for _, r := range rows {
		d.say("%s", r)
	}
	peers, _ := alice.Peers(ctx)
	for _, p := range peers {
		d.say("\nalice's view of bob: %s, key epoch %d, fingerprint %s", p.Status, p.Epoch, p.Fingerprint)
	}
	d.say("Done in %s.", time.Since(d.start).Round(10*time.Millisecond))
	return nil
}

// fanOut shows a command to a target (README, "Many hosts at once"): bob is tagged web, and
// alice pings @web, as she would a fleet of many.
func (d *demo) fanOut(ctx context.Context, alice *node.Node) error {
	d.say("\n3. Many hosts at once: alice tags bob web and pings @web (with more peers, each gets one).")
	if _, err := alice.Tag(ctx, "bob", []string{"web"}, nil); err != nil {
		return err
	}
	names, err := alice.ResolveTarget(ctx, "@web")
	if err != nil {
		return err
	}
	specs := make([]node.RunSpec, len(names))
	for i, name := range names {
		specs[i] = node.RunSpec{Peer: name, Request: commands.Request{Name: "ping"}, TTL: time.Hour}
	}
	ids, err := alice.SubmitMany(ctx, specs)
	if err != nil {
		return fmt.Errorf("ping @web: %w", err)
	}
	rs, err := alice.WaitMany(ctx, ids, nil)
	if err != nil {
		return fmt.Errorf("ping @web: %w", err)
	}
	d.say("   %s; `sealpost run @web --wait -- PROGRAM` groups the outputs and lists who did not answer", summaryLine(rs))
	return nil
}

// pullFile shows large data (README, "Large output and files"): bob lets alice read one
// directory, and alice pulls a 3 MB file from it, which comes back in chunks.
func (d *demo) pullFile(ctx context.Context, dir string, alice, bob *node.Node) error {
	d.say("\n4. Large data: bob lets alice read one directory; alice pulls a 3 MB log from it, which comes\n   back in chunks of up to 1 MiB, each compressed and sealed, joined and checked by SHA-256.")
	share := filepath.Join(dir, "bob-share")
	if err := os.Mkdir(share, 0o700); err != nil {
		return err
	}
	var b strings.Builder
	for i := 0; b.Len() < 3_000_000; i++ {
		fmt.Fprintf(&b, "2026-12-08T12:%02d:%02d bob sealpost[%d]: line %d of the demo log\n", i/60%60, i%60, 1000+i%7, i)
	}
	path := filepath.Join(share, "demo.log")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return err
	}
	if _, err := bob.AddPeer(ctx, node.PeerSpec{Name: "alice", AllowRead: []string{share}}); err != nil {
		return err
	}
	r, err := alice.Run(ctx, node.RunSpec{Peer: "bob", Request: commands.Request{Name: commands.CmdPull, Path: path}, TTL: time.Hour}, true, nil)
	if err != nil {
		return fmt.Errorf("pull: %w", err)
	}
	if r.Status != node.StatusDone || !r.Streamed {
		return fmt.Errorf("pull: %s %s", r.Status, r.Error)
	}
	d.say("   → %d bytes, whole and checked; `sealpost pull bob %s ./demo.log` does this from the shell", r.StdoutSize, path)
	return nil
}

func statusLine(r node.Result) string {
	if r.Status == node.StatusDone {
		return fmt.Sprintf("exit %d", r.ExitCode)
	}
	return r.Status
}

func summarize(r node.Result) string {
	switch {
	case r.Status != node.StatusDone:
		return fmt.Sprintf("%s: %s", r.Status, r.Error)
	case len(r.Stdout) > 0:
		out := strings.TrimSpace(string(r.Stdout))
		out = strings.ReplaceAll(out, "\n", "\n        ")
		return fmt.Sprintf("exit %d\n        %s", r.ExitCode, out)
	}
	return fmt.Sprintf("exit %d", r.ExitCode)
}

func status(ctx context.Context, n *node.Node, peer string) string {
	ps, _ := n.Peers(ctx)
	for _, p := range ps {
		if p.Name == peer {
			return p.Status
		}
	}
	return ""
}

func waitFor(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
