package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
)

// pairCarol pairs alice with a third node, carol, and returns it (not serving).
func (l *lab) pairCarol() *Node {
	l.t.Helper()
	carol := l.open("carol", nil, true)
	added, err := carol.AddPeer(l.ctx, PeerSpec{Name: "alice", Address: "alice@example.test"})
	if err != nil {
		l.t.Fatal(err)
	}
	if _, err := l.alice.AddPeer(l.ctx, PeerSpec{Name: "carol", Address: "carol@example.test", Code: added.GeneratedCode, Tags: []string{"web"}}); err != nil {
		l.t.Fatal(err)
	}
	if _, err := l.alice.Tag(l.ctx, "bob", []string{"web"}, nil); err != nil {
		l.t.Fatal(err)
	}
	for range 3 {
		carol.Pump(l.ctx, false, 0)
		l.alice.Pump(l.ctx, false, 0)
	}
	return carol
}

// pings is one ping for each peer of target.
func (l *lab) pings(target string) []RunSpec {
	l.t.Helper()
	names, err := l.alice.ResolveTarget(l.ctx, target)
	if err != nil {
		l.t.Fatal(err)
	}
	var specs []RunSpec
	for _, name := range names {
		specs = append(specs, RunSpec{Peer: name, Request: commands.Request{Name: commands.CmdPing}})
	}
	return specs
}

// TestWaitMany: without an agent, WaitMany reads alice's mailbox itself and returns once every
// answer is in; with a peer that does not answer it returns at the caller's deadline, with the
// answers that came and the rest still sent; the same through the control socket (Client).
func TestWaitMany(t *testing.T) {
	l := newLab(t)
	carol := l.pairCarol()
	l.serveBob()
	defer l.stopBob()
	carolCtx, stopCarol := context.WithCancel(l.ctx)
	carolDone := make(chan struct{})
	go func() { defer close(carolDone); carol.Serve(carolCtx, false) }()

	ids, err := l.alice.SubmitMany(l.ctx, l.pings("@web"))
	if err != nil || len(ids) != 2 {
		t.Fatalf("SubmitMany(@web) = %v, %v", ids, err)
	}
	ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
	defer cancel()
	rs, err := l.alice.WaitMany(ctx, ids, nil)
	if err != nil || len(rs) != 2 || rs[0].Status != StatusDone || rs[1].Status != StatusDone || rs[0].Peer != "bob" || rs[1].Peer != "carol" {
		t.Fatalf("WaitMany without an agent = %+v, %v; want bob and carol done", rs, err)
	}

	// carol's agent stops: her answer does not come by the deadline.
	stopCarol()
	<-carolDone
	ids, err = l.alice.SubmitMany(l.ctx, l.pings("@web"))
	if err != nil {
		t.Fatal(err)
	}
	// bob's answer first, so that the deadline below is the only thing that ends the wait.
	if r, err := l.alice.Wait(ctx, ids[0], nil); err != nil || r.Status != StatusDone {
		t.Fatalf("bob's ping: %+v, %v", r, err)
	}
	short, cancelShort := context.WithTimeout(l.ctx, 300*time.Millisecond)
	defer cancelShort()
	rs, err = l.alice.WaitMany(short, ids, nil)
	if !errors.Is(err, context.DeadlineExceeded) || len(rs) != 2 || rs[0].Status != StatusDone || rs[1].Status != StatusSent {
		t.Fatalf("WaitMany with carol stopped = %+v, %v; want bob done, carol sent, and the deadline", rs, err)
	}

	// alice's agent and control socket: the Client polls; carol comes back and answers.
	actx, stopAlice := context.WithCancel(l.ctx)
	aliceDone := make(chan struct{})
	go func() { defer close(aliceDone); l.alice.Serve(actx, false) }()
	defer func() { stopAlice(); <-aliceDone }()
	if _, err := l.alice.ListenControl(actx); err != nil {
		t.Fatal(err)
	}
	cl, err := DialControl(l.dirs["alice"])
	if err != nil {
		t.Fatal(err)
	}
	short2, cancelShort2 := context.WithTimeout(l.ctx, 300*time.Millisecond)
	defer cancelShort2()
	if rs, err := cl.WaitMany(short2, ids, nil); !errors.Is(err, context.DeadlineExceeded) || len(rs) != 2 || rs[1].Status != StatusSent {
		t.Fatalf("Client.WaitMany with carol stopped = %+v, %v; want carol sent, and the deadline", rs, err)
	}
	carolCtx, stopCarol = context.WithCancel(l.ctx)
	carolDone = make(chan struct{})
	go func() { defer close(carolDone); carol.Serve(carolCtx, false) }()
	defer func() { stopCarol(); <-carolDone }()
	rs, err = cl.WaitMany(ctx, ids, nil)
	if err != nil || rs[0].Status != StatusDone || rs[1].Status != StatusDone {
		t.Fatalf("Client.WaitMany with carol back = %+v, %v; want both done", rs, err)
	}
	// And under Serve, the Node's own WaitMany is woken by the answers.
	ids, err = l.alice.SubmitMany(l.ctx, append(l.pings("@all"), RunSpec{Peer: "bob", Request: commands.Request{Name: commands.CmdExec, Argv: []string{"echo", "hi"}}}))
	if err != nil {
		t.Fatal(err)
	}
	rs, err = l.alice.WaitMany(ctx, ids, nil)
	if err != nil || len(rs) != 3 || !allFinal(rs) || string(rs[2].Stdout) != "hi\n" {
		t.Fatalf("WaitMany under Serve = %+v, %v", rs, err)
	}
	// Ids with no record are final at once (missing), and an empty list is done.
	if rs, err := cl.WaitMany(ctx, []CommandID{{7}}, nil); err != nil || len(rs) != 1 || rs[0].Status != StatusMissing {
		t.Fatalf("WaitMany of an unknown id = %+v, %v; want missing", rs, err)
	}
	if rs, err := l.alice.WaitMany(ctx, nil, nil); err != nil || len(rs) != 0 {
		t.Fatalf("WaitMany of no ids = %+v, %v", rs, err)
	}
}
