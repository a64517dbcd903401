//go:build unix

package commands

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Every way a command ends, with real processes, gives its Outcome (and Signal), a Result that
// survives the wire, and the shell's exit status where there is one.
func TestRunOutcomes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	notExec := filepath.Join(dir, "not-executable") // mode 0644
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noFormat := filepath.Join(dir, "no-format") // executable, but no "#!" and not a binary
	writeScript(t, noFormat, "exit 0\n")
	exe, hp := helper(t, "")
	with := func(mode string) Policy {
		return Policy{Allow: []string{exe}, Env: []string{helperEnv + "=" + mode, hp.Env[1]}}
	}
	cancelledEarly, cancel := context.WithCancel(context.Background())
	cancel()
	// cancelledRunning ends once the program has started: it writes to a FIFO the test reads.
	fifo := filepath.Join(dir, "started")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cancelledRunning, cancelRunning := context.WithCancel(context.Background())
	t.Cleanup(cancelRunning)
	go func() {
		defer cancelRunning()
		if b, err := os.ReadFile(fifo); err != nil || len(b) != 1 {
			t.Errorf("read the FIFO the program writes when it runs: %q, %v", b, err)
		}
	}()
	cases := []struct {
		name      string
		ctx       context.Context
		req       Request
		p         Policy
		outcome   Outcome
		exitCode  int
		signal    int
		shellCode int // -1: ShellExitCode says there is none
	}{
		{"exits 0", nil, Request{Name: CmdExec, Argv: []string{exe, "0"}}, with("exit"), OutcomeExited, 0, 0, 0},
		{"exits 3", nil, Request{Name: CmdExec, Argv: []string{exe, "3"}}, with("exit"), OutcomeExited, 3, 0, 3},
		{"kills itself with SIGKILL", nil, Request{Name: CmdExec, Argv: []string{exe}}, with("kill-self"), OutcomeSignaled, -1, 9, 137},
		{"timeout", nil, Request{Name: CmdExec, Argv: []string{exe}, Timeout: 500 * time.Millisecond}, with("hang"), OutcomeTimedOut, -1, 9, -1},
		{"cancelled while running", cancelledRunning, Request{Name: CmdExec, Argv: []string{exe, fifo}}, with("hang"), OutcomeCancelled, -1, 9, -1},
		{"cancelled before it started", cancelledEarly, Request{Name: CmdExec, Argv: []string{exe}}, with("hang"), OutcomeCancelled, -1, 0, -1},
		{"program not found", nil, Request{Name: CmdExec, Argv: []string{missing}}, Policy{Allow: []string{missing}}, OutcomeNotFound, -1, 0, -1},
		{"no execute permission", nil, Request{Name: CmdExec, Argv: []string{notExec}}, Policy{Allow: []string{notExec}}, OutcomeNotExecutable, -1, 0, -1},
		{"a directory", nil, Request{Name: CmdExec, Argv: []string{dir}}, Policy{Allow: []string{dir}}, OutcomeNotExecutable, -1, 0, -1},
		{"no executable format", nil, Request{Name: CmdExec, Argv: []string{noFormat}}, Policy{Allow: []string{noFormat}}, OutcomeNotExecutable, -1, 0, -1},
		{"missing working directory", nil, Request{Name: CmdExec, Argv: []string{exe, "0"}}, Policy{Allow: []string{exe}, Env: with("exit").Env, Dir: missing}, OutcomeStartFailed, -1, 0, -1},
		{"denied", nil, Request{Name: CmdExec, Argv: []string{"/bin/sh"}}, Policy{}, OutcomeDenied, -1, 0, -1},
		{"ping", nil, Request{Name: CmdPing}, Policy{}, OutcomeExited, 0, 0, 0},
		{"sysinfo", nil, Request{Name: CmdSysinfo}, Policy{}, OutcomeExited, 0, 0, 0},
	}
	reg := NewRegistry(Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := c.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			res := reg.Run(ctx, c.req, c.p)
			if res.Outcome != c.outcome || res.ExitCode != c.exitCode || res.Signal != c.signal || res.TimedOut != (c.outcome == OutcomeTimedOut) {
				t.Fatalf("Run(%q) = outcome %v, exit code %d, signal %d, timed out %v (error %q); want %v, %d, %d",
					c.req.Argv, res.Outcome, res.ExitCode, res.Signal, res.TimedOut, res.Error, c.outcome, c.exitCode, c.signal)
			}
			if (res.Error == "") != (c.outcome == OutcomeExited) {
				t.Errorf("Run(%q): Error %q; want one exactly when the program did not exit by itself", c.req.Argv, res.Error)
			}
			code, ok := res.ShellExitCode()
			if want := c.shellCode; ok != (want >= 0) || ok && code != want {
				t.Errorf("Run(%q).ShellExitCode() = %d, %v, want %d (-1: none)", c.req.Argv, code, ok, want)
			}
			b, err := EncodeResult(res)
			if err != nil {
				t.Fatalf("EncodeResult(Run(%q)) = %v", c.req.Argv, err)
			}
			got, err := DecodeResult(b)
			if err != nil || !equalResults(got, canonicalResult(res)) {
				t.Errorf("DecodeResult(EncodeResult(Run(%q))) = %+v, %v; want %+v", c.req.Argv, got, err, res)
			}
		})
	}
}

func TestOutcomeTokens(t *testing.T) {
	t.Parallel()
	want := map[Outcome]string{
		OutcomeUnknown: "unknown", OutcomeExited: "exited", OutcomeSignaled: "signaled", OutcomeTimedOut: "timed-out",
		OutcomeCancelled: "cancelled", OutcomeNotFound: "not-found", OutcomeNotExecutable: "not-executable",
		OutcomeStartFailed: "start-failed", OutcomeDenied: "denied",
	}
	if len(want) != int(numOutcomes) {
		t.Fatalf("the test knows %d outcomes, the package %d: give the new one its token here", len(want), numOutcomes)
	}
	for o, tok := range want {
		b, err := o.MarshalText()
		if string(b) != tok || err != nil || o.String() != tok {
			t.Errorf("Outcome(%d).MarshalText() = %q, %v; String() = %q; want %q", o, b, err, o.String(), tok)
		}
		if got, err := ParseOutcome(tok); got != o || err != nil {
			t.Errorf("ParseOutcome(%q) = %v, %v, want %v", tok, got, err, o)
		}
		var u Outcome = OutcomeDenied
		if err := u.UnmarshalText([]byte(tok)); err != nil || u != o {
			t.Errorf("UnmarshalText(%q) = %v, %v, want %v", tok, u, err, o)
		}
	}
	for _, tok := range []string{"", "Exited", "exited ", "timed_out", "killed", strings.Repeat("x", 1000), "\xff"} {
		got, err := ParseOutcome(tok)
		var ue *UnknownOutcomeError
		if got != OutcomeUnknown || !errors.As(err, &ue) || len(ue.Token) > maxOutcomeToken {
			t.Errorf("ParseOutcome(%.20q) = %v, %v, want OutcomeUnknown and an *UnknownOutcomeError", tok, got, err)
		}
		u := OutcomeExited
		if err := u.UnmarshalText([]byte(tok)); !errors.As(err, &ue) || u != OutcomeExited {
			t.Errorf("UnmarshalText(%.20q) = %v, leaving %v; want an *UnknownOutcomeError, unchanged", tok, err, u)
		}
	}
	b, err := numOutcomes.MarshalText()
	var ue *UnknownOutcomeError
	if b != nil || !errors.As(err, &ue) || ue.Value != numOutcomes {
		t.Errorf("Outcome(%d).MarshalText() = %q, %v, want an *UnknownOutcomeError", numOutcomes, b, err)
	}
	if s := Outcome(200).String(); s != "outcome(200)" {
		t.Errorf("Outcome(200).String() = %q", s)
	}
}

// The result payload carries the outcome and the signal; results without them (older agents)
// and with outcomes this build does not know (newer agents) still decode.
func TestDecodeResultOutcome(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)
	cases := []struct {
		name    string
		payload string
		want    Result
		eff     Outcome
	}{
		{"exited", `{"outcome":"exited","exit_code":3,"duration":1,"started":"2026-03-01T12:00:01Z"}`,
			Result{Outcome: OutcomeExited, ExitCode: 3, Duration: 1, Started: started}, OutcomeExited},
		{"signaled", `{"outcome":"signaled","exit_code":-1,"signal":9,"error":"killed by signal 9 (killed)","duration":1,"started":"2026-03-01T12:00:01Z"}`,
			Result{Outcome: OutcomeSignaled, ExitCode: -1, Signal: 9, Error: "killed by signal 9 (killed)", Duration: 1, Started: started}, OutcomeSignaled},
		{"unknown token from a newer agent", `{"outcome":"oom-killed","exit_code":-1,"signal":9,"stdout":"b3V0","duration":1,"started":"2026-03-01T12:00:01Z"}`,
			Result{ExitCode: -1, Signal: 9, Stdout: []byte("out"), Duration: 1, Started: started}, OutcomeUnknown},
		{"the unknown token", `{"outcome":"unknown","exit_code":-1,"duration":1,"started":"2026-03-01T12:00:01Z"}`,
			Result{ExitCode: -1, Duration: 1, Started: started}, OutcomeUnknown},
		{"old agent, exited", `{"exit_code":0,"stdout":"b3V0","duration":1,"started":"2026-03-01T12:00:01Z"}`,
			Result{ExitCode: 0, Stdout: []byte("out"), Duration: 1, Started: started}, OutcomeExited},
		{"old agent, timed out", `{"exit_code":-1,"timed_out":true,"error":"timed out after 1s","duration":1,"started":"2026-03-01T12:00:01Z"}`,
			Result{ExitCode: -1, TimedOut: true, Error: "timed out after 1s", Duration: 1, Started: started}, OutcomeTimedOut},
		{"old agent, not found", `{"exit_code":-1,"error":"program not found: /x","duration":1,"started":"2026-03-01T12:00:01Z"}`,
			Result{ExitCode: -1, Error: "program not found: /x", Duration: 1, Started: started}, OutcomeUnknown},
		{"old agent, killed by a signal", `{"exit_code":-1,"error":"killed by signal 9 (killed)","duration":1,"started":"2026-03-01T12:00:01Z"}`,
			Result{ExitCode: -1, Error: "killed by signal 9 (killed)", Duration: 1, Started: started}, OutcomeUnknown},
	}
	for _, c := range cases {
		got, err := DecodeResult([]byte(c.payload))
		if err != nil || !reflect.DeepEqual(got, c.want) || got.EffectiveOutcome() != c.eff {
			t.Errorf("%s: DecodeResult(%s) = %+v, %v (effective %v); want %+v (effective %v)", c.name, c.payload, got, err, got.EffectiveOutcome(), c.want, c.eff)
			continue
		}
		b, err := EncodeResult(got)
		if err != nil {
			t.Errorf("%s: EncodeResult = %v", c.name, err)
			continue
		}
		again, err := DecodeResult(b)
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("%s: DecodeResult(EncodeResult) = %+v, %v; want %+v", c.name, again, err, got)
		}
		if c.want.Outcome == OutcomeUnknown && strings.Contains(string(b), `"outcome"`) {
			t.Errorf("%s: EncodeResult = %s: an unknown outcome is left out", c.name, b)
		}
	}
	for _, c := range []struct{ payload, field string }{
		{`{"outcome":3}`, "outcome"},
		{`{"outcome":null}`, "outcome"},
		{`{"outcome":"exited","outcome":"signaled"}`, "outcome"},
		{`{"Outcome":"exited"}`, "Outcome"},
		{`{"signal":128}`, "signal"},
		{`{"signal":-1}`, "signal"},
		{`{"signal":"9"}`, "signal"},
		{`{"signal":9.5}`, "signal"},
	} {
		got, err := DecodeResult([]byte(c.payload))
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != c.field || !reflect.DeepEqual(got, Result{}) {
			t.Errorf("DecodeResult(%s) = %+v, %v, want a *DecodeError for %q", c.payload, got, err, c.field)
		}
	}
	for _, c := range []struct {
		r     Result
		field string
	}{
		{Result{Outcome: numOutcomes}, "outcome"},
		{Result{Signal: MaxSignal + 1}, "signal"},
		{Result{Signal: -1}, "signal"},
	} {
		b, err := EncodeResult(c.r)
		var de *DecodeError
		if !errors.As(err, &de) || de.Field != c.field || b != nil {
			t.Errorf("EncodeResult(%+v) = %s, %v, want a *DecodeError for %q", c.r, b, err, c.field)
		}
	}
}

func TestEffectiveOutcomeAndShellExitCode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		r    Result
		eff  Outcome
		code int // -1: none
	}{
		{Result{Outcome: OutcomeExited, ExitCode: 0}, OutcomeExited, 0},
		{Result{Outcome: OutcomeExited, ExitCode: 255}, OutcomeExited, 255},
		{Result{Outcome: OutcomeExited, ExitCode: 3, Error: "the program exited but a process it started kept its output open"}, OutcomeExited, 3},
		{Result{Outcome: OutcomeSignaled, ExitCode: -1, Signal: 9}, OutcomeSignaled, 137},
		{Result{Outcome: OutcomeSignaled, ExitCode: -1, Signal: 11}, OutcomeSignaled, 139},
		{Result{Outcome: OutcomeSignaled, ExitCode: -1}, OutcomeSignaled, -1}, // no signal number: no status
		{Result{Outcome: OutcomeTimedOut, ExitCode: -1, Signal: 9, TimedOut: true}, OutcomeTimedOut, -1},
		{Result{Outcome: OutcomeCancelled, ExitCode: -1, Signal: 9}, OutcomeCancelled, -1},
		{Result{Outcome: OutcomeNotFound, ExitCode: -1}, OutcomeNotFound, -1},
		{Result{Outcome: OutcomeNotExecutable, ExitCode: -1}, OutcomeNotExecutable, -1},
		{Result{Outcome: OutcomeStartFailed, ExitCode: -1}, OutcomeStartFailed, -1},
		{Result{Outcome: OutcomeDenied, ExitCode: -1}, OutcomeDenied, -1},
		// Older agents: only the typed fields count, never Error's text.
		{Result{ExitCode: 2}, OutcomeExited, 2},
		{Result{ExitCode: 0, Undelivered: "552 too big"}, OutcomeExited, 0},
		{Result{ExitCode: -1, TimedOut: true, Error: "timed out"}, OutcomeTimedOut, -1},
		{Result{ExitCode: -1, Error: "killed by signal 9 (killed)"}, OutcomeUnknown, -1},
		{Result{ExitCode: -1, Error: "program not found: /x"}, OutcomeUnknown, -1},
		{Result{ExitCode: 1, Error: "the program exited but a process it started kept its output open"}, OutcomeUnknown, -1},
	}
	for _, c := range cases {
		if got := c.r.EffectiveOutcome(); got != c.eff {
			t.Errorf("%+v.EffectiveOutcome() = %v, want %v", c.r, got, c.eff)
		}
		code, ok := c.r.ShellExitCode()
		if ok != (c.code >= 0) || ok && code != c.code || !ok && code != 0 {
			t.Errorf("%+v.ShellExitCode() = %d, %v, want %d (-1: none)", c.r, code, ok, c.code)
		}
	}
}
