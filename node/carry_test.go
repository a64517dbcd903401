package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/mailbox"
)

// openNoMail makes a node without a mailbox (init --no-mail).
func openNoMail(t *testing.T, addr string) *Node {
	t.Helper()
	n, err := Init(Options{Dir: filepath.Join(t.TempDir(), "state"), RetryAfter: time.Hour}, MailConfig{Address: addr, NoMail: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// counter is a script that appends a line to a file each time it runs.
func counter(t *testing.T) (script string, runs func() int) {
	dir := t.TempDir()
	file := filepath.Join(dir, "runs")
	script = filepath.Join(dir, "count")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+file+"\necho counted\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, func() int {
		b, _ := os.ReadFile(file)
		return strings.Count(string(b), "ran\n")
	}
}

// carry exports what from has for peer into dir and imports dir into to; it returns the import.
func carry(t *testing.T, ctx context.Context, from *Node, peer, dir string, to *Node) CarryReport {
	t.Helper()
	if _, err := from.Export(ctx, peer, dir); err != nil {
		t.Fatalf("export for %s: %v", peer, err)
	}
	rep, err := to.Import(ctx, dir, false)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	for _, f := range rep.Files {
		if f.Outcome == CarryFailed {
			t.Fatalf("import: %s (%s) failed: %s", f.Name, f.Type, f.Detail)
		}
	}
	return rep
}

// TestCarryNoMailNodes: two nodes without a mailbox pair by code, open a session and run a
// command by carrying one directory back and forth; importing the directory again, on either
// side, runs nothing twice and applies nothing again (issue 12, deliverable 3).
func TestCarryNoMailNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctl := openNoMail(t, "ctl@site-a.invalid")
	vault := openNoMail(t, "vault@site-b.invalid")
	script, runs := counter(t)
	dir := t.TempDir()

	added, err := ctl.AddPeer(ctx, PeerSpec{Name: "vault", Address: "vault@site-b.invalid"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.AddPeer(ctx, PeerSpec{Name: "ctl", Address: "ctl@site-a.invalid", Code: added.GeneratedCode, Allow: []string{script}}); err != nil {
		t.Fatal(err)
	}
	carry(t, ctx, ctl, "vault", dir, vault) // ctl's PAIR: vault pins ctl and answers
	carry(t, ctx, vault, "ctl", dir, ctl)   // vault's answer: ctl pins vault
	for _, n := range []*Node{ctl, vault} {
		ps, _ := n.Peers(ctx)
		if len(ps) != 1 || ps[0].Status != "paired" {
			t.Fatalf("%s's peers after pairing: %+v", n.Address(), ps)
		}
	}

	r, err := ctl.Run(ctx, RunSpec{Peer: "vault", Request: commands.Request{Name: "exec", Argv: []string{script}}}, false, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	carry(t, ctx, ctl, "vault", dir, vault) // INIT_REQ
	carry(t, ctx, vault, "ctl", dir, ctl)   // INIT_RESP: the session is confirmed, the command goes
	rep := carry(t, ctx, ctl, "vault", dir, vault)
	if rep.Count(CarryImported) != 1 || runs() != 1 {
		t.Fatalf("the command's import: %d imported, ran %d times; report %+v", rep.Count(CarryImported), runs(), rep)
	}
	carry(t, ctx, vault, "ctl", dir, ctl) // the answer
	got, _, err := ctl.Result(r.CommandID)
	if err != nil || got.Status != StatusDone || string(got.Stdout) != "counted\n" {
		t.Fatalf("result: %+v, %v", got, err)
	}

	// The whole directory again, on both sides: everything is seen already or not theirs.
	for _, n := range []*Node{vault, ctl, vault} {
		rep, err := n.Import(ctx, dir, false)
		if err != nil {
			t.Fatal(err)
		}
		if k := rep.Count(CarryImported) + rep.Count(CarryFailed); k != 0 {
			t.Fatalf("%s imported the directory again: %+v", n.Address(), rep.Files)
		}
		if rep.Count(CarrySeen) == 0 || len(rep.Files) == 0 {
			t.Fatalf("%s's second import saw nothing: %+v", n.Address(), rep.Files)
		}
	}
	if runs() != 1 {
		t.Fatalf("the command ran %d times", runs())
	}
	if st, _ := vault.Status(ctx); st.Outbox != 0 {
		// A duplicate within the resend interval is answered with nothing (section 11).
		t.Fatalf("vault queued %d packages for a directory imported again", st.Outbox)
	}

	// --remove deletes what was applied, and leaves what is not the importer's.
	rep, err = vault.Import(ctx, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Files {
		_, serr := os.Stat(filepath.Join(dir, f.Name))
		if f.Removed != (f.Outcome == CarrySeen || f.Outcome == CarryStale) || f.Removed != os.IsNotExist(serr) {
			t.Fatalf("import --remove: %+v (stat: %v)", f, serr)
		}
	}
}

// TestCarryBadFilesDoNotStopOthers: a file that is not a package, a package file with a bad
// head, a symbolic link and a forged package are each reported and left alone, and the good
// file among them is applied (THREATS row 30, for files).
func TestCarryBadFilesDoNotStopOthers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctl := openNoMail(t, "ctl@site-a.invalid")
	vault := openNoMail(t, "vault@site-b.invalid")
	dir := t.TempDir()
	added, err := ctl.AddPeer(ctx, PeerSpec{Name: "vault", Address: "vault@site-b.invalid"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.AddPeer(ctx, PeerSpec{Name: "ctl", Address: "ctl@site-a.invalid", Code: added.GeneratedCode}); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Export(ctx, "vault", dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("export wrote %d files", len(ents))
	}
	good, _ := os.ReadFile(filepath.Join(dir, ents[0].Name()))
	forged := append([]byte{}, good...)
	forged[len(forged)-1] ^= 1 // the PAIR signature
	bad := map[string][]byte{
		"00-junk.slpk":   []byte("hello"),
		"01-head.slpk":   append([]byte("sealpost-carry v1\nto Not Canonical\n\n"), good[len(carryMagic)+len("vault@site-b.invalid")+2:]...),
		"02-forged.slpk": forged,
	}
	for name, b := range bad {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(dir, ents[0].Name()), filepath.Join(dir, "03-link.slpk")); err != nil {
		t.Fatal(err)
	}
	rep, err := vault.Import(ctx, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Count(CarryFailed) != 4 || rep.Count(CarryImported) != 1 {
		t.Fatalf("import: %+v", rep.Files)
	}
	if ps, _ := vault.Peers(ctx); len(ps) != 1 || ps[0].Status != "paired" {
		t.Fatalf("vault's peers: %+v", ps)
	}
}

// plusAddressing delivers mail for local+tag@domain to local@domain, as the providers of
// docs/PROTOCOL.md section 17 do.
type plusAddressing struct{ mailbox.Transport }

func (p plusAddressing) Send(ctx context.Context, to string, pkg []byte) error {
	if local, domain, ok := strings.Cut(to, "@"); ok {
		local, _, _ = strings.Cut(local, "+")
		to = local + "@" + domain
	}
	return p.Transport.Send(ctx, to, pkg)
}

// TestGateway: a controller with a mailbox pairs with, and runs a command on, a node without
// one, through a gateway that forwards between its mailbox and a directory and holds no key of
// either (issue 12, deliverable 4).
func TestGateway(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	users := map[string]string{"ctl@example.test": "pw-c", "gw@example.test": "pw-g"}
	relay, err := mailbox.StartRelay(ctx, mailbox.RelayConfig{Users: users})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	mailNode := func(addr string) *Node {
		tr, err := mailbox.New(mailbox.Config{Address: addr, IMAPAddr: relay.IMAPAddr(), SMTPAddr: relay.SMTPAddr(),
			Username: addr, Password: users[addr], TLS: "none", AllowPlaintextAuth: true, CommandTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tr.Close() })
		n, err := Init(Options{Dir: filepath.Join(t.TempDir(), "state"), Transport: plusAddressing{tr}, RetryAfter: time.Hour},
			MailConfig{Address: addr, IMAP: relay.IMAPAddr(), SMTP: relay.SMTPAddr(), TLS: "none"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}
	ctl, gw := mailNode("ctl@example.test"), mailNode("gw@example.test")
	vault := openNoMail(t, "gw+vault@example.test")
	script, runs := counter(t)
	stick := t.TempDir()

	route, err := gw.AddGateway(ctx, Gateway{Name: "vault", Fingerprint: vault.Fingerprint().String()})
	if err != nil || route.Address != "gw+vault@example.test" {
		t.Fatalf("gateway add: %+v, %v", route, err)
	}
	// One round: the gateway reads its mail and writes what it holds for vault to the stick;
	// vault imports it and exports its answers; the gateway mails them on; ctl reads its mail.
	round := func() {
		t.Helper()
		if _, err := gw.Pump(ctx, false, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := gw.Export(ctx, "vault", stick); err != nil {
			t.Fatal(err)
		}
		rep, err := vault.Import(ctx, stick, true)
		if err != nil || rep.Count(CarryFailed) > 0 {
			t.Fatalf("vault's import: %+v, %v", rep.Files, err)
		}
		if _, err := vault.Export(ctx, "ctl", stick); err != nil {
			t.Fatal(err)
		}
		rep, err = gw.Import(ctx, stick, false)
		if err != nil || rep.Count(CarryFailed) > 0 {
			t.Fatalf("gateway's import: %+v, %v", rep.Files, err)
		}
		for _, f := range rep.Files {
			if f.Outcome != CarryForwarded || !f.Removed {
				t.Fatalf("gateway's import: %+v", rep.Files)
			}
		}
		if _, err := ctl.Pump(ctx, false, 0); err != nil {
			t.Fatal(err)
		}
	}

	added, err := ctl.AddPeer(ctx, PeerSpec{Name: "vault", Address: "gw+vault@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vault.AddPeer(ctx, PeerSpec{Name: "ctl", Address: "ctl@example.test", Code: added.GeneratedCode, Allow: []string{script}}); err != nil {
		t.Fatal(err)
	}
	round()
	if ps, _ := ctl.Peers(ctx); len(ps) != 1 || ps[0].Status != "paired" {
		t.Fatalf("ctl's peers after pairing through the gateway: %+v", ps)
	}
	r, err := ctl.Run(ctx, RunSpec{Peer: "vault", Request: commands.Request{Name: "exec", Argv: []string{script}}}, false, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	round() // the handshake
	round() // the command and its answer
	got, _, err := ctl.Result(r.CommandID)
	if err != nil || got.Status != StatusDone || string(got.Stdout) != "counted\n" || runs() != 1 {
		t.Fatalf("result: %+v, %v; ran %d times", got, err, runs())
	}
	// The gateway learned no key: it pinned nobody, and holds nothing.
	if ps, _ := gw.Peers(ctx); len(ps) != 0 {
		t.Fatalf("the gateway's peers: %+v", ps)
	}
	if st, _ := gw.Status(ctx); st.Outbox != 0 {
		t.Fatalf("the gateway's outbox: %d", st.Outbox)
	}
	if ents, _ := os.ReadDir(stick); len(ents) != 0 {
		t.Fatalf("left on the stick: %v", ents)
	}
}
