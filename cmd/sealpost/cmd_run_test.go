package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

// fateAgent listens on dir's control socket like an agent that dies in the middle of a run:
// it reads the request and hangs up without an answer. It reports the ids of the runs it read.
func fateAgent(t *testing.T, dir string) <-chan string {
	t.Helper()
	ln, err := net.Listen("unix", filepath.Join(dir, node.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ids := make(chan string, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var req struct {
				Op  string `json:"op"`
				Run struct {
					ID string `json:"id"`
				} `json:"run"`
			}
			// DialControl's probe sends nothing; a run request is answered with nothing.
			if json.NewDecoder(c).Decode(&req) == nil && req.Op == "run" {
				ids <- req.Run.ID
			}
			c.Close()
		}
	}()
	return ids
}

// TestRunFateUnknown: `run` against an agent that takes the request and dies before answering
// returns a *node.FateUnknownError carrying the id the agent was given, which exits
// exitUnknown (not exitSealpost, on which a script might retry and run the command twice) and
// is printed; run again with --id, the same id goes out.
func TestRunFateUnknown(t *testing.T) {
	dir := t.TempDir()
	ids := fateAgent(t, dir)
	var out, errOut bytes.Buffer
	g := &globals{state: dir, stdout: &out, stderr: &errOut}
	err := runRun(context.Background(), g, []string{"bob", "--", "true"})
	var unknown *node.FateUnknownError
	if !errors.As(err, &unknown) {
		t.Fatalf("run against an agent that hangs up = %v (%T), want a *node.FateUnknownError", err, err)
	}
	sent := <-ids
	if unknown.ID.String() != sent {
		t.Fatalf("the error names command %s, the agent was given %s", unknown.ID, sent)
	}
	if code := exitCode(&errOut, "run", err); code != exitUnknown {
		t.Fatalf("exit code %d, want %d", code, exitUnknown)
	}
	if !strings.Contains(errOut.String(), sent) {
		t.Fatalf("stderr does not show the command id %s:\n%s", sent, errOut.String())
	}

	err = runRun(context.Background(), g, []string{"bob", "--id", sent, "--", "true"})
	if !errors.As(err, &unknown) || unknown.ID.String() != sent {
		t.Fatalf("run --id %s = %v, want a *node.FateUnknownError for that id", sent, err)
	}
	if again := <-ids; again != sent {
		t.Fatalf("run --id %s sent id %s", sent, again)
	}
}

// TestRunWhileAgentStarts: a command issued while an agent holds the state lock but does not
// listen yet keeps trying the socket and reaches the agent once it listens.
func TestRunWhileAgentStarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	n, err := node.Init(node.Options{Dir: dir}, node.MailConfig{Address: "alice@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close() // the "agent": it holds the lock from here on
	retrying := make(chan struct{})
	var once sync.Once
	setOpenAPIKnobs(t, 10*time.Millisecond, time.Minute, func() { once.Do(func() { close(retrying) }) })

	type opened struct {
		api  node.API
		done func()
		err  error
	}
	res := make(chan opened, 1)
	go func() {
		api, done, err := openAPI(context.Background(), &globals{state: dir, stderr: io.Discard})
		res <- opened{api, done, err}
	}()
	<-retrying // the state was locked, and the socket did not answer yet
	ctx, cancel := context.WithCancel(context.Background())
	ctl, err := n.ListenControl(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); ctl.Wait() }()
	o := <-res
	if o.err != nil {
		t.Fatalf("openAPI while the agent starts: %v", o.err)
	}
	defer o.done()
	if _, ok := o.api.(*node.Client); !ok {
		t.Fatalf("openAPI returned a %T, want the agent's *node.Client", o.api)
	}
	if id, err := o.api.Identity(ctx); err != nil || id.Fingerprint != n.Fingerprint().String() {
		t.Fatalf("Identity through the socket = %+v, %v", id, err)
	}
}

// TestStateHeldWithoutAgent: when the state stays locked and no agent answers, openAPI gives up
// after agentStartWait with the lock's *node.StateInUseError.
func TestStateHeldWithoutAgent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	n, err := node.Init(node.Options{Dir: dir}, node.MailConfig{Address: "alice@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	setOpenAPIKnobs(t, 10*time.Millisecond, 50*time.Millisecond, nil)
	_, _, err = openAPI(context.Background(), &globals{state: dir, stderr: io.Discard})
	var inUse *node.StateInUseError
	if !errors.As(err, &inUse) {
		t.Fatalf("openAPI on a locked state without an agent = %v, want a *node.StateInUseError", err)
	}
}

func setOpenAPIKnobs(t *testing.T, lock, start time.Duration, retried func()) {
	oldLock, oldStart, oldRetried := stateLockTimeout, agentStartWait, dialRetried
	stateLockTimeout, agentStartWait, dialRetried = lock, start, retried
	t.Cleanup(func() { stateLockTimeout, agentStartWait, dialRetried = oldLock, oldStart, oldRetried })
}

// TestResultExitUnknownOutcome: a result whose outcome this build cannot read exits 125 (sealpost
// cannot say how the program ended), not with an exit code it would have to guess from.
func TestResultExitUnknownOutcome(t *testing.T) {
	r := node.Result{Status: node.StatusDone, Outcome: commands.OutcomeUnknown, ExitCode: 0, Error: "cancelled"}
	var ec exitCodeError
	if err := resultExit("bob", r); !errors.As(err, &ec) || ec.code != exitSealpost {
		t.Fatalf("resultExit(%+v) = %v; want exit %d", r, err, exitSealpost)
	}
	r = node.Result{Status: node.StatusDone, Outcome: commands.OutcomeSignaled, Signal: 9, ExitCode: -1}
	if err := resultExit("bob", r); !errors.As(err, &ec) || ec.code != 137 {
		t.Fatalf("resultExit(%+v) = %v; want exit 137", r, err)
	}
}
