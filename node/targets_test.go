package node

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/commands"
)

// FuzzParseTarget: any string parses or fails with a *TargetError; what parses has no empty
// part, and every tag it names is a valid one.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"bob", "@web", "@all", "bob,@web,db1", "", ",", "@", "@Web", "a b", "bob,,x", "@web,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		parts, err := ParseTarget(s)
		if err != nil {
			var te *TargetError
			if !errors.As(err, &te) {
				t.Fatalf("ParseTarget(%q) = %v, not a *TargetError", s, err)
			}
			return
		}
		if len(parts) == 0 {
			t.Fatalf("ParseTarget(%q) = no parts, no error", s)
		}
		for _, p := range parts {
			if p.Name == "" || strings.Contains(p.Name, ",") {
				t.Fatalf("ParseTarget(%q): part %+v", s, p)
			}
		}
	})
}

// TestResolveTarget: names, tags, @all and lists resolve to sorted unique names; a name or tag
// that names nobody is an error that says which part.
func TestResolveTarget(t *testing.T) {
	l := newLab(t)
	carol := l.open("carol", nil, true)
	added, err := carol.AddPeer(l.ctx, PeerSpec{Name: "alice", Address: "alice@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.alice.AddPeer(l.ctx, PeerSpec{Name: "carol", Address: "carol@example.test", Code: added.GeneratedCode, Tags: []string{"web", "eu"}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		carol.Pump(l.ctx, false, 0)
		l.alice.Pump(l.ctx, false, 0)
	}
	if tags, err := l.alice.Tag(l.ctx, "bob", []string{"web"}, nil); err != nil || !slices.Equal(tags, []string{"web"}) {
		t.Fatalf("Tag bob web = %v, %v", tags, err)
	}
	for target, want := range map[string][]string{
		"bob":          {"bob"},
		"@web":         {"bob", "carol"},
		"@eu":          {"carol"},
		"@all":         {"bob", "carol"},
		"carol,@web":   {"bob", "carol"},
		"bob,bob,@all": {"bob", "carol"},
	} {
		got, err := l.alice.ResolveTarget(l.ctx, target)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ResolveTarget(%q) = %v, %v; want %v", target, got, err, want)
		}
	}
	for target, part := range map[string]string{"@db": "@db", "bob,dave": "dave", "bob,,carol": "", "@Web": "@Web"} {
		_, err := l.alice.ResolveTarget(l.ctx, target)
		var te *TargetError
		if !errors.As(err, &te) || te.Part != part {
			t.Errorf("ResolveTarget(%q) = %v; want a *TargetError about %q", target, err, part)
		}
	}
	if _, err := l.alice.Tag(l.ctx, "bob", nil, []string{"db"}); err == nil {
		t.Error("removing a tag bob does not have: no error")
	}
	if tags, err := l.alice.Tag(l.ctx, "bob", nil, []string{"web"}); err != nil || tags != nil {
		t.Errorf("untag bob web = %v, %v; want none", tags, err)
	}
	ps, err := l.alice.Peers(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name == "carol" && !slices.Equal(p.Tags, []string{"eu", "web"}) {
			t.Errorf("carol in peer list: tags %v", p.Tags)
		}
	}
	if err := l.alice.RemovePeer(l.ctx, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.alice.ResolveTarget(l.ctx, "@eu"); err == nil {
		t.Error("@eu still names a peer after carol was removed")
	}
}

// TestSubmitMany: commands to several peers are sealed in one pass and each is answered once.
func TestSubmitMany(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	specs := []RunSpec{
		{Peer: "bob", Request: commands.Request{Name: commands.CmdPing}},
		{Peer: "bob", Request: commands.Request{Name: commands.CmdExec, Argv: []string{countScript}}},
		{Peer: "bob", Request: commands.Request{Name: commands.CmdExec, Argv: []string{countScript}}},
	}
	ids, err := l.alice.SubmitMany(l.ctx, specs)
	if err != nil || len(ids) != 3 {
		t.Fatalf("SubmitMany = %v, %v", ids, err)
	}
	l.waitAll(ids)
	rs, err := l.alice.ResultsOf(l.ctx, append(ids, CommandID{1}))
	if err != nil || len(rs) != 4 {
		t.Fatalf("ResultsOf = %v, %v", rs, err)
	}
	for i, r := range rs[:3] {
		if r.CommandID != ids[i] || r.Status != StatusDone {
			t.Errorf("result %d: %+v", i, r)
		}
	}
	if rs[3].Status != StatusMissing {
		t.Errorf("an id never submitted: %+v", rs[3])
	}
	if n := runs(t); n != 2 {
		t.Errorf("ran %d times, want 2", n)
	}
	// Again with the same ids: nothing is sent twice.
	for i := range specs {
		specs[i].ID = ids[i]
	}
	if again, err := l.alice.SubmitMany(l.ctx, specs); err != nil || !slices.Equal(again, ids) {
		t.Fatalf("SubmitMany again = %v, %v", again, err)
	}
}

// TestFleetFromAnswers: the fleet view shows a peer's sysinfo members once it answered a
// sysinfo, and the round trip of its last ping, with nothing pending after.
func TestFleetFromAnswers(t *testing.T) {
	l := newLab(t)
	l.serveBob()
	ids, err := l.alice.SubmitMany(l.ctx, []RunSpec{
		{Peer: "bob", Request: commands.Request{Name: commands.CmdSysinfo}},
		{Peer: "bob", Request: commands.Request{Name: commands.CmdPing}},
	})
	if err != nil {
		t.Fatal(err)
	}
	l.waitAll(ids)
	fl, err := l.alice.Fleet(l.ctx, "")
	if err != nil || len(fl) != 1 {
		t.Fatalf("Fleet = %+v, %v", fl, err)
	}
	e := fl[0]
	if e.Name != "bob" || e.SysInfo == nil || e.SysInfo.Hostname == "" || e.RoundTrip <= 0 || e.Pending != 0 || e.Stale {
		t.Fatalf("bob's fleet entry: %+v", e)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "last_seen", "stale", "hostname", "os", "kernel"} {
		if _, ok := m[k]; !ok {
			t.Errorf("fleet JSON has no %q: %s", k, b)
		}
	}
}

// TestParseTargetBadTag: a tag keystore refuses gives a TargetError naming the part, with
// ParseTarget's own reason (not keystore's error with its prefix cut off).
func TestParseTargetBadTag(t *testing.T) {
	for _, target := range []string{"@Web", "bob,@-x", "@" + strings.Repeat("a", 65), "@a b", "@"} {
		_, err := ParseTarget(target)
		var te *TargetError
		if !errors.As(err, &te) || te.Part == "" || te.Reason != badTagReason {
			t.Errorf("ParseTarget(%q) = %#v, want a *TargetError about its tag with reason %q", target, err, badTagReason)
		}
	}
}
