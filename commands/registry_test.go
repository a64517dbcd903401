package commands

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The registry and the wire format know the same names, and no others, but for the two status
// report names, which the node answers itself (and the registry denies).
func TestRegistryNames(t *testing.T) {
	t.Parallel()
	if got := NewRegistry(Options{}).Names(); !slices.Equal(got, builtinNames) {
		t.Errorf("Names() = %q, want %q", got, builtinNames)
	}
	for _, name := range builtinNames {
		argv := []string(nil)
		if name == CmdExec {
			argv = []string{"x"}
		}
		if _, err := EncodeRequest(Request{Name: name, Argv: argv}); err != nil {
			t.Errorf("EncodeRequest(%q) = %v", name, err)
		}
	}
	for _, req := range []Request{{Name: CmdReportEvery, Every: MinReportEvery}, {Name: CmdReport, Report: &Report{Seq: 1}},
		{Name: CmdStream, Of: "000102030405060708090a0b0c0d0e0f", Done: true}} {
		if _, err := EncodeRequest(req); err != nil {
			t.Errorf("EncodeRequest(%q) = %v", req.Name, err)
		}
		if _, err := NewRegistry(Options{}).Check(req, Policy{}); !errors.Is(err, ErrUnknownCommand) {
			t.Errorf("Check(%q) = %v, want ErrUnknownCommand: the node answers it, the registry runs nothing", req.Name, err)
		}
	}
	if got := append(slices.Clone(builtinNames), CmdReport, CmdReportEvery, CmdStream, CmdPull, CmdPush); !slices.Equal(slices.Sorted(slices.Values(got)), requestNames) {
		t.Errorf("requestNames = %q, want the registry's and the names the node answers", requestNames)
	}
}

func TestRunLogs(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := NewRegistry(Options{Logger: log})
	reg.Run(context.Background(), Request{Name: CmdPing}, Policy{})
	reg.Run(context.Background(), Request{Name: CmdExec, Argv: []string{"sh"}}, Policy{})
	out := buf.String()
	if !strings.Contains(out, "op=run cmd=ping") || !strings.Contains(out, "op=check cmd=exec") {
		t.Errorf("log after ping and a denied exec = %q, want a run record and a check record", out)
	}
	// nil Logger: silent, no panic.
	NewRegistry(Options{}).Run(context.Background(), Request{Name: CmdPing}, Policy{})
}

func TestRunConcurrent(t *testing.T) {
	t.Parallel()
	exe, p := helper(t, "argv")
	reg := NewRegistry(Options{})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			arg := fmt.Sprint("run-", i)
			res := reg.Run(context.Background(), Request{Name: CmdExec, Argv: []string{exe, arg}}, p)
			if want := fmt.Sprintf("[%q]\n", arg); string(res.Stdout) != want {
				t.Errorf("Run(helper %s) = %q (%+v), want %q", arg, res.Stdout, res, want)
			}
		})
	}
	wg.Wait()
}
