package sealpost_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/node"
	"github.com/sealpost/sealpost/web"
)

// The fleet benchmark: one controller and many agents on the embedded relay (issue 11, "Scale").
// The agents and the relay run in a child process (this test binary, started again with
// SEALPOST_FLEET_AGENTS set; TestFleetAgentsProcess), the controller in the benchmark's own
// process, so that the process's CPU time and peak memory (getrusage) are the controller's own.
//
//	go test -run '^$' -bench 'Fleet1000' -benchtime 1x -timeout 60m .
//
// SEALPOST_FLEET_PEERS changes the number of agents (default 1000).

// fleetChild is what the child process tells the controller, as one JSON line on its stdout.
type fleetChild struct {
	IMAP, SMTP string
	Password   string // alice's, on the child's relay
	Agents     []fleetAgent
}

type fleetAgent struct {
	Name, Address, Fingerprint string
}

const fleetDomain = "fleet.test"

// TestFleetAgentsProcess is the child process of BenchmarkFleet1000: unless
// SEALPOST_FLEET_AGENTS is set it returns at once. It starts a relay and the agents, arms their
// pairing with the controller whose fingerprint it reads from stdin, serves them, and runs until
// its stdin closes.
func TestFleetAgentsProcess(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("SEALPOST_FLEET_AGENTS"))
	if n <= 0 {
		t.Skip("the child process of BenchmarkFleet1000; runs only when it starts it")
	}
	dir := os.Getenv("SEALPOST_FLEET_DIR")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	users := map[string]string{"alice@" + fleetDomain: "pw-alice"}
	for i := range n {
		users[fmt.Sprintf("agent%04d@%s", i, fleetDomain)] = fmt.Sprintf("pw-%d", i)
	}
	relay, err := mailbox.StartRelay(ctx, mailbox.RelayConfig{Users: users})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	in := bufio.NewReader(os.Stdin)
	out := fleetChild{IMAP: relay.IMAPAddr(), SMTP: relay.SMTPAddr(), Password: users["alice@"+fleetDomain]}
	agents := make([]*node.Node, n)
	for i := range n {
		addr := fmt.Sprintf("agent%04d@%s", i, fleetDomain)
		tr, err := mailbox.New(mailbox.Config{Address: addr, IMAPAddr: relay.IMAPAddr(), SMTPAddr: relay.SMTPAddr(),
			Username: addr, Password: users[addr], TLS: mailbox.TLSNone, AllowPlaintextAuth: true, CommandTimeout: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		a, err := node.Init(node.Options{Dir: filepath.Join(dir, fmt.Sprintf("agent%04d", i)), Transport: tr, RetryAfter: time.Hour},
			node.MailConfig{Address: addr, IMAP: relay.IMAPAddr(), SMTP: relay.SMTPAddr(), TLS: "none"})
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		agents[i] = a
		out.Agents = append(out.Agents, fleetAgent{Name: fmt.Sprintf("agent%04d", i), Address: addr, Fingerprint: a.Fingerprint().String()})
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		t.Fatal(err)
	}
	line, err := in.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var alice struct{ Fingerprint string }
	if err := json.Unmarshal([]byte(line), &alice); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, a := range agents {
		if _, err := a.AddPeer(ctx, node.PeerSpec{Name: "alice", Address: "alice@" + fleetDomain, Fingerprint: alice.Fingerprint}); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); a.Serve(ctx, false) }()
	}
	fmt.Println(`{"serving":true}`)
	io.Copy(io.Discard, in) // until the controller closes our stdin
	cancel()
	wg.Wait()
}

// fleetUsage is the controller process's CPU time and peak resident memory so far.
func fleetUsage(tb testing.TB) (cpu time.Duration, maxRSS int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return cpu, ru.Maxrss * 1024
}

// BenchmarkFleet1000: a controller with 1,000 peers. Measured, each on its own line of the log
// and as metrics: pairing all of them; the first fan-out (`ping` to @all: it opens every session,
// one handshake each, whose RSA-3072 key the controller makes); then a fan-out with the sessions
// open: the time to seal and queue it, until every answer is in, and the controller's CPU for it;
// a sysinfo fan-out, then the fleet view of all peers; the state's size after each step; the
// controller's peak memory.
func BenchmarkFleet1000(b *testing.B) {
	peers := 1000
	if v, err := strconv.Atoi(os.Getenv("SEALPOST_FLEET_PEERS")); err == nil && v > 0 {
		peers = v
	}
	for range b.N {
		benchFleet(b, peers)
	}
}

func benchFleet(b *testing.B, peers int) {
	b.StopTimer()
	dir := b.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestFleetAgentsProcess$", "-test.v")
	child.Env = append(os.Environ(), "SEALPOST_FLEET_AGENTS="+strconv.Itoa(peers), "SEALPOST_FLEET_DIR="+filepath.Join(dir, "agents"))
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); child.Wait() }()
	lines := bufio.NewReader(stdout)
	readJSON := func(v any) {
		for {
			line, err := lines.ReadBytes('\n')
			if err != nil {
				b.Fatalf("the agents' process: %v", err)
			}
			if len(line) > 0 && line[0] == '{' {
				if err := json.Unmarshal(line, v); err != nil {
					b.Fatal(err)
				}
				return
			}
		}
	}
	var info fleetChild
	readJSON(&info)

	addr := "alice@" + fleetDomain
	tr, err := mailbox.New(mailbox.Config{Address: addr, IMAPAddr: info.IMAP, SMTPAddr: info.SMTP,
		Username: addr, Password: info.Password, TLS: mailbox.TLSNone, AllowPlaintextAuth: true, CommandTimeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	aliceDir := filepath.Join(dir, "alice")
	alice, err := node.Init(node.Options{Dir: aliceDir, Transport: tr, RetryAfter: time.Hour, HandshakeTimeout: time.Hour},
		node.MailConfig{Address: addr, IMAP: info.IMAP, SMTP: info.SMTP, TLS: "none"})
	if err != nil {
		b.Fatal(err)
	}
	defer alice.Close()
	json.NewEncoder(stdin).Encode(map[string]string{"Fingerprint": alice.Fingerprint().String()})
	var serving struct{ Serving bool }
	readJSON(&serving)

	stateSize := func() int64 {
		fi, err := os.Stat(filepath.Join(aliceDir, "state.db"))
		if err != nil {
			b.Fatal(err)
		}
		return fi.Size()
	}
	step := func(name string, start time.Time, cpu0 time.Duration) {
		cpu, rss := fleetUsage(b)
		b.Logf("%-34s %8.2f s wall, %8.2f s controller CPU; state %6.1f MB, controller peak RSS %6.1f MB",
			name, time.Since(start).Seconds(), (cpu - cpu0).Seconds(), float64(stateSize())/1e6, float64(rss)/1e6)
	}

	// Pairing, by fingerprint on both sides.
	start := time.Now()
	cpu0, _ := fleetUsage(b)
	for _, a := range info.Agents {
		if _, err := alice.AddPeer(ctx, node.PeerSpec{Name: a.Name, Address: a.Address, Fingerprint: a.Fingerprint, Tags: []string{"fleet"}}); err != nil {
			b.Fatal(err)
		}
	}
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { defer close(served); alice.Serve(serveCtx, false) }()
	defer func() { stopServe(); <-served }()
	// Polled, not signalled: an Events reader would make every mailed package name its peer,
	// which is work the fan-outs below must not be charged with.
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for pairing := -1; pairing != 0; {
		ps, err := alice.Peers(ctx)
		if err != nil {
			b.Fatal(err)
		}
		pairing = 0
		for _, p := range ps {
			if p.Status == "pairing" {
				pairing++
			}
		}
		if pairing == 0 {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			b.Fatalf("%d peers still pairing", pairing)
		}
	}
	step(fmt.Sprintf("pair %d peers", peers), start, cpu0)

	fanout := func(name string, req commands.Request) {
		names, err := alice.ResolveTarget(ctx, "@fleet")
		if err != nil || len(names) != peers {
			b.Fatalf("@fleet = %d names, %v", len(names), err)
		}
		specs := make([]node.RunSpec, len(names))
		for i, n := range names {
			specs[i] = node.RunSpec{Peer: n, Request: req}
		}
		start := time.Now()
		cpu0, _ := fleetUsage(b)
		ids, err := alice.SubmitMany(ctx, specs)
		if err != nil {
			b.Fatal(err)
		}
		step(name+": sealed, queued, mailed", start, cpu0)
		for _, id := range ids {
			if r, err := alice.Wait(ctx, id, nil); err != nil || r.Status != node.StatusDone {
				b.Fatalf("%s: %+v, %v", id, r, err)
			}
		}
		step(name+": every answer in", start, cpu0)
		cpu, _ := fleetUsage(b)
		b.ReportMetric((cpu - cpu0).Seconds(), name+"-cpu-s")
		b.ReportMetric(time.Since(start).Seconds(), name+"-s")
	}
	b.StartTimer()
	fanout("first-ping", commands.Request{Name: commands.CmdPing}) // opens every session
	fanout("ping", commands.Request{Name: commands.CmdPing})
	fanout("sysinfo", commands.Request{Name: commands.CmdSysinfo})
	b.StopTimer()

	start = time.Now()
	cpu0, _ = fleetUsage(b)
	fl, err := alice.Fleet(ctx, "")
	if err != nil || len(fl) != peers {
		b.Fatalf("fleet: %d rows, %v", len(fl), err)
	}
	step("fleet view", start, cpu0)
	b.ReportMetric(time.Since(start).Seconds()*1000, "fleet-ms")

	// The dashboard's fleet page, rendered by its handler over the node (as `sealpost
	// dashboard` does, without the HTTP server around it).
	const token = "bench-token-0123456789"
	h := web.New(web.Options{Token: token, Open: func(context.Context) (web.Source, func(), error) { return alice, func() {}, nil }})
	start = time.Now()
	cpu0, _ = fleetUsage(b)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "http://127.0.0.1/", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		b.Fatalf("dashboard: %d %s", rec.Code, rec.Body.String())
	}
	step(fmt.Sprintf("dashboard fleet page (%d KB)", rec.Body.Len()/1000), start, cpu0)
	b.ReportMetric(time.Since(start).Seconds()*1000, "dashboard-ms")
	_, rss := fleetUsage(b)
	b.ReportMetric(float64(rss)/1e6, "peak-rss-MB")
	b.ReportMetric(float64(stateSize())/float64(peers), "state-B/peer")
}
