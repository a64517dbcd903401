package main

import (
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// Crash and restore end to end: the agent killed with SIGKILL inside a batch of commands, and a
// whole state directory put back from a copy. Both run real processes (a `sealpost relay` and the
// nodes' CLI) and look at the mailboxes from outside over IMAP, as an operator would.

const crashPassword = "relay-password"

// crashLab is a relay, alice (the controller, without an agent) and bob (the agent), initialised
// and paired, with a script bob allows that appends its first argument to a counter file.
type crashLab struct {
	dir          string
	env          []string // every process: the password, and a witness directory of the test's own
	alice, bob   string   // state directories
	aliceAddr    string
	bobAddr      string
	imap         string
	smtp         string
	counter      string // one line per run of script: its first argument
	gate         string // script 5 waits for this file to exist (bounded), see newCrashLab
	script       string
	inspect      func(t *testing.T, user, folder string) []fixtures.StoredMail
	witness      string // SEALPOST_WITNESS_DIR of every process
	bobAgentArgs []string
}

func newCrashLab(t *testing.T) *crashLab {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	dir := t.TempDir()
	l := &crashLab{
		dir: dir, alice: filepath.Join(dir, "alice"), bob: filepath.Join(dir, "bob"),
		aliceAddr: "alice@example.test", bobAddr: "bob@example.test",
		counter: filepath.Join(dir, "runs.txt"), gate: filepath.Join(dir, "gate"),
		script: filepath.Join(dir, "count"), witness: t.TempDir(),
	}
	// Outside both state directories, so that a copy of bob's directory does not bring it back.
	l.env = []string{"PW=" + crashPassword, "SEALPOST_WITNESS_DIR=" + l.witness}
	l.bobAgentArgs = []string{"-v", "--state", l.bob, "agent"}

	relay := start(t, nil, "relay", "--listen", "127.0.0.1", "--smtp-port", "0", "--imap-port", "0",
		"--user", l.aliceAddr+":"+crashPassword, "--user", l.bobAddr+":"+crashPassword)
	line, err := relay.stdout.ReadString('\n')
	if err != nil {
		t.Fatalf("relay did not start: %v", err)
	}
	m := regexp.MustCompile(`SMTP (\S+), IMAP (\S+),`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("relay printed %q", line)
	}
	smtpAddr := m[1]
	l.imap, l.smtp = m[2], smtpAddr
	l.inspect = fixtures.IMAPInspector(l.imap, map[string]string{l.aliceAddr: crashPassword, l.bobAddr: crashPassword}, nil)

	// Script 5 holds still until the test opens the gate, so that a test can kill the agent
	// while a command of the batch is certainly running. The wait is bounded: an orphaned
	// script never outlives the test by much.
	body := "#!/bin/sh\necho \"$1\" >> " + l.counter + "\n" +
		"if [ \"$1\" = 5 ]; then i=0; while [ ! -e " + l.gate + " ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; fi\n" +
		"echo \"counted $1\"\n"
	if err := os.WriteFile(l.script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(l.gate, nil, 0o644) })

	for _, n := range []struct{ state, addr string }{{l.alice, l.aliceAddr}, {l.bob, l.bobAddr}} {
		mustOK(t, sp(t, l.env, "--state", n.state, "init", "--address", n.addr, "--imap", l.imap, "--smtp", smtpAddr,
			"--login", n.addr, "--password-env", "PW", "--tls", "none"), "init "+n.addr)
	}
	pairCLI(t, l.env, l.alice, l.aliceAddr, l.bob, l.bobAddr, l.script)
	return l
}

// startBob starts bob's agent and waits until it serves its control socket.
func (l *crashLab) startBob(t *testing.T) *proc {
	t.Helper()
	os.Remove(filepath.Join(l.bob, "agent.sock")) // a killed agent leaves its socket behind
	p := start(t, l.env, l.bobAgentArgs...)
	waitForSocket(t, l.bob)
	return p
}

// stopBob ends bob's agent with SIGTERM (the way an operator stops it) and waits for it.
func (l *crashLab) stopBob(t *testing.T, p *proc) {
	t.Helper()
	stopAgent(t, p)
}

// handshake opens alice's session to bob with one ping, bob's agent running.
func (l *crashLab) handshake(t *testing.T) {
	t.Helper()
	bob := l.startBob(t)
	if r := mustOK(t, sp(t, l.env, "--state", l.alice, "ping", "bob", "--timeout", "60s"), "ping"); !strings.HasPrefix(r.stdout, "answer from bob:") {
		t.Fatalf("ping printed %q", r.stdout)
	}
	l.stopBob(t, bob)
}

// runs returns how many times the script ran with each argument.
func (l *crashLab) runs(t *testing.T) map[string]int {
	t.Helper()
	b, err := os.ReadFile(l.counter)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line != "" {
			out[line]++
		}
	}
	return out
}

// answer is one RESPONSE or ERROR mail in a mailbox, seen from outside.
type answer struct {
	messageID string
	command   string // hex command id, from the package header in clear (docs/PROTOCOL.md section 3)
	kind      byte   // 5 RESPONSE, 6 ERROR
}

// answersTo lists the answers in user's mailbox: the INBOX, the processed and the rejected
// folders, whatever the server's hierarchy delimiter. The INBOX is read first, so that a mail
// moved out of it while the folders are read is seen at least once; duplicates (the same
// Message-Id) count once.
func (l *crashLab) answersTo(t *testing.T, user string) map[string]answer {
	t.Helper()
	out := map[string]answer{}
	for _, folder := range []string{"INBOX", "sealpost/processed", "sealpost-processed", "sealpost/rejected", "sealpost-rejected"} {
		for _, sm := range l.inspect(t, user, folder) {
			pkg, _, err := mailbox.ParseMail(sm.Raw, mailbox.Limits{})
			if err != nil || len(pkg) < 96 || (pkg[5] != 5 && pkg[5] != 6) {
				continue
			}
			msg, err := mail.ReadMessage(strings.NewReader(string(sm.Raw)))
			if err != nil {
				t.Fatalf("a sealpost mail in %s's %s does not parse: %v", user, folder, err)
			}
			id := msg.Header.Get("Message-Id")
			if id == "" {
				t.Fatalf("a sealpost mail in %s's %s has no Message-Id", user, folder)
			}
			out[id] = answer{messageID: id, command: hex.EncodeToString(pkg[80:96]), kind: pkg[5]}
		}
	}
	return out
}

// poll waits until cond holds (fixtures.Eventually).
func poll(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	fixtures.Eventually(t, within, what, cond)
}

type statusOut struct {
	Agent  bool `json:"agent"`
	Outbox int  `json:"outbox"`
}

func (l *crashLab) status(t *testing.T, state string) statusOut {
	t.Helper()
	r := mustOK(t, sp(t, l.env, "--state", state, "status", "--json"), "status --json")
	var s statusOut
	if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	return s
}

// TestKillAgentMidBatch kills bob's agent with SIGKILL while it works through a batch of 20
// commands (the fifth is running, those after it read or still in the inbox), restarts it, and
// checks what the crash cost: every command ran exactly once (only the one running at the kill
// may be answered outcome-unknown, THREATS row 25), and no command got more than one answer
// mailed after the restart (docs/PROTOCOL.md section 11: each mail commits with the cursor past
// it and a note that it is still to be moved, so the restart neither reads the batch again nor
// answers it again).
func TestKillAgentMidBatch(t *testing.T) {
	l := newCrashLab(t)
	l.handshake(t)

	// Twenty commands queued while bob's agent is down: they wait in his inbox as one batch.
	const total = 20
	ids := make([]string, total) // hex command id of the script run with argument i+1
	line := regexp.MustCompile(`^([0-9a-f]{32}) \S+\n$`)
	for i := range total {
		r := mustOK(t, sp(t, l.env, "--state", l.alice, "run", "bob", "--", l.script, strconv.Itoa(i+1)), "run")
		m := line.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("run printed %q; want the command id and its status", r.stdout)
		}
		ids[i] = m[1]
	}
	arg := map[string]string{} // command id -> script argument
	for i, id := range ids {
		arg[id] = strconv.Itoa(i + 1)
	}
	poll(t, "the 20 commands in bob's inbox", 30*time.Second, func() bool {
		return fixtures.InboxCount(t, l.imap, l.bobAddr, crashPassword) >= total
	})

	bob := l.startBob(t)
	poll(t, "bob's agent starting the fifth command", 60*time.Second, func() bool { return l.runs(t)["5"] == 1 })
	if err := bob.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := bob.cmd.Wait(); err == nil {
		t.Fatal("bob's agent exited cleanly; want it killed")
	}
	// What bob mailed before the kill; then the orphaned script 5 may end.
	before := l.answersTo(t, l.aliceAddr)
	if err := os.WriteFile(l.gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	bob = l.startBob(t)
	answered := func() bool {
		seen := map[string]bool{}
		for _, a := range l.answersTo(t, l.aliceAddr) {
			seen[a.command] = true
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	}
	poll(t, "an answer to each of the 20 commands in alice's mailbox", 120*time.Second, answered)
	// Bob is done when his inbox is empty and his outbox too: nothing more will be mailed.
	poll(t, "bob's inbox and outbox empty", 60*time.Second, func() bool {
		return fixtures.InboxCount(t, l.imap, l.bobAddr, crashPassword) == 0 && l.status(t, l.bob).Outbox == 0
	})
	after := l.answersTo(t, l.aliceAddr)
	l.stopBob(t, bob)

	// At most one answer per command was mailed after the restart: the answers already mailed
	// are not mailed again, and none is mailed twice.
	isOurs := map[string]bool{}
	for _, id := range ids {
		isOurs[id] = true
	}
	answeredBefore, mailedAfter := map[string]bool{}, map[string]int{}
	for mid, a := range after {
		if _, old := before[mid]; old {
			answeredBefore[a.command] = true
		} else {
			mailedAfter[a.command]++
		}
	}
	remailed, newAnswers := 0, 0
	for _, id := range ids {
		newAnswers += mailedAfter[id]
		if answeredBefore[id] {
			remailed += mailedAfter[id]
		}
		if mailedAfter[id] > 1 {
			t.Errorf("command %s (script %s) got %d answers mailed after the restart; want at most 1", id, arg[id], mailedAfter[id])
		}
	}
	for cmd, n := range mailedAfter {
		if !isOurs[cmd] {
			t.Errorf("%d answers to command %s, which alice never sent to bob in this batch", n, cmd)
		}
	}

	// Every command ran exactly once. Each has a final result: done, except the fifth, which
	// was running when the agent was killed and may be answered outcome-unknown (THREATS row 25:
	// it may have run, so it never runs again).
	mustOK(t, sp(t, l.env, "--state", l.alice, "agent", "--once"), "agent --once (alice)")
	r := mustOK(t, sp(t, l.env, "--state", l.alice, "results", "--json", "--limit", "0"), "results --json")
	var results []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &results); err != nil {
		t.Fatalf("results --json: %v\n%s", err, r.stdout)
	}
	status := map[string]string{}
	for _, res := range results {
		status[res.ID] = res.Status
	}
	runs := l.runs(t)
	byStatus := map[string]int{}
	for i, id := range ids {
		byStatus[status[id]]++
		n := runs[arg[id]]
		switch {
		case n == 0 && status[id] == "outcome-unknown":
			// Read and committed Executing, but still waiting in the executor's queue when the
			// agent was killed: it never started, yet the restart gave it up.
			t.Errorf("command %s (script %s) never ran and was answered outcome-unknown; want it run once after the restart (it had not started at the kill)", id, arg[id])
		case n != 1:
			t.Errorf("command %s (script %s, %s) ran %d times; want exactly once", id, arg[id], status[id], n)
		case status[id] != "done" && !(i == 4 && status[id] == "outcome-unknown"):
			t.Errorf("command %s (script %s) ran once but ended %q; want done", id, arg[id], status[id])
		}
	}
	answeredAtKill := 0
	for _, id := range ids {
		if answeredBefore[id] {
			answeredAtKill++
		}
	}
	t.Logf("at the kill: %d of %d commands answered in alice's mailbox; after the restart: %d answers mailed, %d of them to commands already answered; results %v",
		answeredAtKill, total, newAnswers, remailed, byStatus)
}

// TestRestoreWholeStateDirE2E is THREATS row 31 from outside: bob's whole state directory (the
// database and its generation file together) is put back from a copy taken before a command ran,
// and every mail of his processed folder is appended to his inbox again. The restore witness,
// kept outside the directory (SEALPOST_WITNESS_DIR), shows the restore: bob's log says so, and
// the command does not run a second time.
func TestRestoreWholeStateDirE2E(t *testing.T) {
	l := newCrashLab(t)
	l.handshake(t)

	backup := filepath.Join(l.dir, "bob-backup")
	copyTree(t, l.bob, backup)

	bob := l.startBob(t)
	r := sp(t, l.env, "--state", l.alice, "run", "bob", "--wait", "--timeout", "60s", "--", l.script, "1")
	if r.code != 0 || r.stdout != "counted 1\n" {
		t.Fatalf("run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	l.stopBob(t, bob)

	if err := os.RemoveAll(l.bob); err != nil {
		t.Fatal(err)
	}
	copyTree(t, backup, l.bob)
	if n := fixtures.ReinjectProcessed(t, l.imap, l.bobAddr, crashPassword, 1000); n == 0 {
		t.Fatal("found no processed mail to re-inject")
	}

	once := sp(t, l.env, "-v", "--state", l.bob, "agent", "--once")
	if once.code != 0 {
		t.Fatalf("agent --once after the restore: exit %d\n%s", once.code, once.stderr)
	}
	if line := restoreLogged(once.stderr); line != "" {
		t.Logf("bob's log: %s", line)
	} else {
		t.Errorf("bob's log does not report the restore (op=restore); does the CLI pass SEALPOST_WITNESS_DIR to the state store?\n%s", once.stderr)
	}
	if n := l.runs(t)["1"]; n != 1 {
		t.Errorf("the command ran %d times; want exactly once", n)
	}
	if left := fixtures.InboxCount(t, l.imap, l.bobAddr, crashPassword); left != 0 {
		t.Errorf("%d re-injected mails left in bob's inbox after agent --once", left)
	}
}

// restoreLogged returns the warning (slog's text form, as `-v` writes it) that carries the
// attribute op=restore, or "".
func restoreLogged(log string) string {
	for _, line := range strings.Split(log, "\n") {
		if hasField(line, "level=WARN") && hasField(line, "op=restore") {
			return line
		}
	}
	return ""
}

func hasField(line, field string) bool {
	for _, f := range strings.Fields(line) {
		if f == field {
			return true
		}
	}
	return false
}

// copyTree copies the directory src to dst as `cp -a` would for a state directory: regular
// files and directories with their modes (and, as root, their owners), modification times kept.
// A socket (a running agent's) is not copied.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, info.Mode().Perm()); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if err := os.WriteFile(target, b, info.Mode().Perm()); err != nil {
				return err
			}
		default:
			return nil
		}
		// WriteFile and Mkdir apply the umask: set the modes exactly.
		if err := os.Chmod(target, info.Mode().Perm()); err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
			if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
		}
		if d.IsDir() {
			return nil
		}
		return os.Chtimes(target, info.ModTime(), info.ModTime())
	})
	if err != nil {
		t.Fatalf("copy %s to %s: %v", src, dst, err)
	}
}
