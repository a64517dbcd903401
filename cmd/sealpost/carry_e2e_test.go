package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

type carryJSON struct {
	Dir   string `json:"dir"`
	Files []struct {
		Name    string `json:"name"`
		Type    string `json:"type"`
		Outcome string `json:"outcome"`
		Detail  string `json:"detail"`
		Removed bool   `json:"removed"`
	} `json:"files"`
}

func (c carryJSON) count(outcome string) int {
	k := 0
	for _, f := range c.Files {
		if f.Outcome == outcome {
			k++
		}
	}
	return k
}

// TestCarryE2E: two nodes without a mailbox (init --no-mail), as their users meet them, pair by
// code, open a session and run a command by carrying one directory back and forth with export
// and import; importing the directory again runs nothing twice, and import --remove clears what
// was applied (issue 12, deliverable 3).
func TestCarryE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	dir := t.TempDir()
	ctl, vault, stick := filepath.Join(dir, "ctl"), filepath.Join(dir, "vault"), filepath.Join(dir, "stick")
	if err := os.Mkdir(stick, 0o700); err != nil {
		t.Fatal(err)
	}
	counter := filepath.Join(dir, "runs")
	script := filepath.Join(dir, "count")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+counter+"\necho counted\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	runs := func() int { b, _ := os.ReadFile(counter); return strings.Count(string(b), "ran\n") }

	mustOK(t, sp(t, nil, "--state", ctl, "init", "--no-mail", "--address", "ctl@site-a.invalid"), "init ctl --no-mail")
	mustOK(t, sp(t, nil, "--state", vault, "init", "--no-mail", "--address", "vault@site-b.invalid"), "init vault --no-mail")
	st := mustOK(t, sp(t, nil, "--state", vault, "status", "--json"), "status")
	var status struct {
		NoMail bool `json:"no_mail"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &status); err != nil || !status.NoMail {
		t.Fatalf("status --json of a --no-mail node: %s (%v)", st.stdout, err)
	}

	added := mustOK(t, sp(t, nil, "--state", ctl, "peer", "add", "vault", "--address", "vault@site-b.invalid"), "peer add vault")
	code := regexp.MustCompile(`Pairing code for vault: (\S+)`).FindStringSubmatch(added.stdout)
	if code == nil {
		t.Fatalf("peer add printed no code:\n%s", added.stdout)
	}
	mustOK(t, sp(t, nil, "--state", vault, "peer", "add", "ctl", "--address", "ctl@site-a.invalid", "--code", code[1], "--allow", script), "peer add ctl")

	// carry: export on one side, import on the other, and what the import says.
	carry := func(from, peer, to string, extra ...string) carryJSON {
		t.Helper()
		mustOK(t, sp(t, nil, "--state", from, "export", "--peer", peer, "--json", stick), "export --peer "+peer)
		r := mustOK(t, sp(t, nil, append([]string{"--state", to, "import", "--json", stick}, extra...)...), "import")
		var c carryJSON
		if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
			t.Fatalf("import --json: %v\n%s", err, r.stdout)
		}
		return c
	}
	carry(ctl, "vault", vault)
	carry(vault, "ctl", ctl)
	r := sp(t, nil, "--state", ctl, "run", "vault", "--json", "--", script)
	var sent struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &sent); err != nil || sent.ID == "" {
		t.Fatalf("run --json: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
	carry(ctl, "vault", vault) // the handshake
	carry(vault, "ctl", ctl)
	if c := carry(ctl, "vault", vault); c.count("imported") != 1 || runs() != 1 {
		t.Fatalf("the command's import: %+v; ran %d times", c, runs())
	}
	carry(vault, "ctl", ctl) // its answer
	res := mustOK(t, sp(t, nil, "--state", ctl, "results", sent.ID, "--json"), "results")
	var got struct {
		Status string `json:"status"`
		Stdout string `json:"stdout"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil || got.Status != "done" || got.Stdout != "counted\n" {
		t.Fatalf("results: %s (%v)", res.stdout, err)
	}

	// A file pulled across: larger than an answer holds, so it travels as chunks.
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o700); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 300_000)
	rand.Read(want)
	if err := os.WriteFile(filepath.Join(share, "data"), want, 0o600); err != nil {
		t.Fatal(err)
	}
	mustOK(t, sp(t, nil, "--state", vault, "peer", "add", "ctl", "--allow-read", share), "peer add ctl --allow-read")
	local := filepath.Join(dir, "pulled")
	pullID := "0123456789abcdef0123456789abcdef"
	if r := sp(t, nil, "--state", ctl, "pull", "vault", filepath.Join(share, "data"), local, "--id", pullID, "--timeout", "1s"); r.code != exitPending {
		t.Fatalf("pull with nobody to carry it: exit %d, want %d (pending)\n%s", r.code, exitPending, r.stderr)
	}
	if _, err := os.Stat(local); !os.IsNotExist(err) {
		t.Fatalf("a pull still under way left %s: %v", local, err)
	}
	carry(ctl, "vault", vault)
	if c := carry(vault, "ctl", ctl); c.count("imported") < 2 {
		t.Fatalf("the pull's chunks and answer: %+v", c)
	}
	mustOK(t, sp(t, nil, "--state", ctl, "pull", "vault", filepath.Join(share, "data"), local, "--id", pullID), "pull again by its id")
	if b, err := os.ReadFile(local); err != nil || !bytes.Equal(b, want) {
		t.Fatalf("pulled %d of %d bytes: %v", len(b), len(want), err)
	}

	// The same directory again, on both sides: nothing runs, nothing is applied again.
	for _, state := range []string{vault, ctl} {
		r := mustOK(t, sp(t, nil, "--state", state, "import", stick), "import again")
		if strings.Contains(r.stdout, "imported ") || !strings.Contains(r.stdout, "seen") {
			t.Fatalf("import again:\n%s", r.stdout)
		}
	}
	if runs() != 1 {
		t.Fatalf("the command ran %d times", runs())
	}
	c := carry(vault, "ctl", vault, "--remove") // nothing waits for ctl; vault clears its files
	for _, f := range c.Files {
		if f.Removed == (f.Outcome == "skipped") {
			t.Fatalf("import --remove: %+v", c.Files)
		}
	}

	// A bad file is reported, exits 1, and does not stop the good ones.
	if err := os.WriteFile(filepath.Join(stick, "junk.slpk"), []byte("not a package"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := sp(t, nil, "--state", ctl, "import", stick)
	if bad.code != 1 || !strings.Contains(bad.stdout, "failed") || !strings.Contains(bad.stdout, "junk.slpk") {
		t.Fatalf("import of a bad file: exit %d\n%s\n%s", bad.code, bad.stdout, bad.stderr)
	}
}
