package node

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestAllow: Allow adds resolved programs to one peer's list and takes them off by base name or
// path, directly and through the control socket; an unknown peer or a program that is not on
// the list changes nothing and says which.
func TestAllow(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	echo, err := exec.LookPath("echo")
	if err != nil {
		t.Skip("no echo in PATH")
	}
	trueProg, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true in PATH")
	}
	before, err := l.bob.Peers(ctx)
	if err != nil || len(before) != 1 {
		t.Fatalf("bob's peers = %+v, %v; want alice", before, err)
	}
	// What newLab allowed, besides echo and true (which this test adds and takes away).
	had := slices.DeleteFunc(slices.Clone(before[0].Allow), func(p string) bool { return filepath.Base(p) == "echo" || filepath.Base(p) == "true" })
	got, err := l.bob.Allow(ctx, "alice", []string{"true", echo}, nil)
	if want := sorted(append([]string{echo, trueProg}, had...)...); err != nil || !slices.Equal(got, want) {
		t.Fatalf("Allow(alice, add true, echo) = %q, %v; want %q", got, err, want)
	}
	if _, err := l.bob.Allow(ctx, "alice", nil, []string{"uptime-not-there"}); !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("Allow(remove a program not on the list) = %v, want ErrNotAllowed", err)
	}
	if _, err := l.bob.Allow(ctx, "nobody", []string{"true"}, nil); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("Allow(an unknown peer) = %v, want ErrUnknownPeer", err)
	}
	if _, err := l.bob.ListenControl(ctx); err != nil {
		t.Fatal(err)
	}
	cl, err := DialControl(l.dirs["bob"])
	if err != nil {
		t.Fatal(err)
	}
	got, err = cl.Allow(ctx, "alice", nil, []string{"echo"})
	if want := sorted(append([]string{trueProg}, had...)...); err != nil || !slices.Equal(got, want) {
		t.Fatalf("Allow through the socket (remove echo) = %q, %v; want %q", got, err, want)
	}
	peers, err := cl.Peers(ctx)
	if err != nil || len(peers) != 1 || !slices.Equal(peers[0].Allow, got) {
		t.Fatalf("Peers after Allow = %+v, %v; want alice allowed %q", peers, err, got)
	}
	got, err = cl.Allow(ctx, "alice", nil, []string{trueProg})
	if err != nil || !slices.Equal(got, sorted(had...)) {
		t.Fatalf("Allow through the socket (remove %s) = %q, %v; want %q", trueProg, got, err, had)
	}
}

func sorted(s ...string) []string { slices.Sort(s); return slices.Compact(s) }
