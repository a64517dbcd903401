package commands

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestCheckOutputLine(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"ok\nsecond\n", "ok"},
		{"\n\n  disk 91%\t used \r\nmore", "disk 91%  used"},
		{"\x1b[31mred\x1b[0m\n", "[31mred[0m"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{strings.Repeat("é", 200), strings.Repeat("é", MaxCheckOutput/2)},
	} {
		if got := CheckOutputLine([]byte(c.in)); got != c.want {
			t.Errorf("CheckOutputLine(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestReportChecksBounds(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	many := map[string]CheckResult{}
	for i := range MaxChecks + 1 {
		many[fmt.Sprintf("c%d", i)] = CheckResult{Exit: 1, At: at}
	}
	removed := make([]string, MaxChecks+1)
	for i := range removed {
		removed[i] = fmt.Sprintf("c%d", i)
	}
	for _, rep := range []Report{
		{Seq: 1, Checks: many},
		{Seq: 2, Base: 1, ChecksRemoved: removed},
		{Seq: 1, Checks: map[string]CheckResult{strings.Repeat("x", MaxCheckName+1): {}}},
		{Seq: 1, Checks: map[string]CheckResult{"x": {Output: strings.Repeat("x", MaxCheckOutput+1)}}},
		{Seq: 2, Base: 1, Checks: map[string]CheckResult{"x": {}}, ChecksRemoved: []string{"x"}},
	} {
		_, err := EncodeRequest(Request{Name: CmdReport, Report: &rep})
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("EncodeRequest(report with %d checks, %d removed) = %v, want a *DecodeError", len(rep.Checks), len(rep.ChecksRemoved), err)
		}
	}
	delete(many, "c0")
	rep := Report{Seq: 1, Checks: many}
	if _, err := EncodeRequest(Request{Name: CmdReport, Report: &rep}); err != nil {
		t.Errorf("EncodeRequest(report with %d checks) = %v, want success", len(many), err)
	}
}
