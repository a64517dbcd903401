package commands

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestResolveAllow(t *testing.T) {
	dir := t.TempDir()
	tool := filepath.Join(dir, "tool")
	writeScript(t, tool, "#!/bin/sh\n")
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "subdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)

	ok := []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"tool"}, []string{tool}},           // looked up in PATH
		{[]string{tool}, []string{tool}},             // absolute
		{[]string{dir + "//./tool"}, []string{tool}}, // cleaned
		{[]string{"tool", tool, dir + "/../" + filepath.Base(dir) + "/tool"}, []string{tool}}, // one entry per path
	}
	for _, c := range ok {
		got, err := ResolveAllow(c.in)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("ResolveAllow(%q) = %q, %v, want %q", c.in, got, err, c.want)
		}
	}

	bad := []struct {
		in []string
		is error // the error wraps it, when not nil
	}{
		{[]string{"no-such-program"}, exec.ErrNotFound},
		{[]string{"plain"}, exec.ErrNotFound}, // LookPath skips files that are not executable
		{[]string{filepath.Join(dir, "missing")}, fs.ErrNotExist},
		{[]string{plain}, fs.ErrPermission},
		{[]string{filepath.Join(dir, "subdir")}, nil},
		{[]string{"./tool"}, nil},
		{[]string{"bin/tool"}, nil},
		{[]string{""}, nil},
		{[]string{"/dev/null"}, nil}, // not a regular file
		{[]string{"tool", "no-such-program"}, exec.ErrNotFound},
	}
	for _, c := range bad {
		got, err := ResolveAllow(c.in)
		if err == nil || got != nil || (c.is != nil && !errors.Is(err, c.is)) {
			t.Errorf("ResolveAllow(%q) = %q, %v, want an error wrapping %v", c.in, got, err, c.is)
		}
	}

	// Every failing entry is reported.
	_, err := ResolveAllow([]string{filepath.Join(dir, "missing"), plain})
	if !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("ResolveAllow(missing, plain) = %v, want both failures", err)
	}
}

// What ResolveAllow writes is what Check accepts: a name resolved when the policy was written
// runs by the same name later.
func TestResolveAllowThenCheck(t *testing.T) {
	sh := lookPath(t, "sh")
	allow, err := ResolveAllow([]string{"sh"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := NewRegistry(Options{}).Check(Request{Name: CmdExec, Argv: []string{"sh", "-c", "true"}}, Policy{Allow: allow})
	if err != nil || got.Argv[0] != filepath.Clean(sh) {
		t.Errorf("Check(sh) under ResolveAllow(sh) = %q, %v, want %s", got.Argv, err, sh)
	}
}

// A denial tells the requester the exact command that would allow the program on this agent,
// naming the peer as this agent knows it, unless the name or program could not be pasted as is.
func TestDenialSuggestsTheCommand(t *testing.T) {
	for _, c := range []struct {
		peer, prog, want string
	}{
		{"alice", "rm", "sealpost peer add alice --allow rm"},
		{"alice", "/usr/bin/rm", "sealpost peer add alice --allow /usr/bin/rm"},
		{"", "rm", "sealpost peer add NAME --allow rm"},
		{"a;reboot", "rm", "sealpost peer add NAME --allow rm"},
		{"-x", "rm", "sealpost peer add NAME --allow rm"},
		{"alice", "--help", "sealpost peer add alice --allow PROGRAM"},
		{"alice", "rm$(reboot)", "sealpost peer add alice --allow PROGRAM"},
	} {
		_, err := resolveProgram(c.prog, Policy{Peer: c.peer, Allow: []string{"/usr/bin/true"}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("peer %q asking for %q: denial %v, want it to contain %q", c.peer, c.prog, err, c.want)
		}
	}
}
