package commands

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealpost/sealpost/fixtures"
)

// THREATS.md row 39: a program that starts children outside its process group, or leaves
// children running when it exits: every descendant is ended when the command ends, times out,
// or the agent stops. Each test runs once per mechanism: a cgroup per command (skipped where
// this machine offers no writable cgroup v2) and the process tree (always).

// reapModes runs f once with a registry forced to each mechanism.
func reapModes(t *testing.T, f func(t *testing.T, reg *Registry)) {
	t.Run("cgroup", func(t *testing.T) {
		if _, err := cgroupParent(); err != nil {
			t.Skipf("no writable cgroup v2 here (as root in CI it usually is): %v", err)
		}
		f(t, NewRegistry(Options{Reap: ReapCgroup}))
	})
	t.Run("tree", func(t *testing.T) {
		f(t, NewRegistry(Options{Reap: ReapProcTree}))
	})
}

// escape is a shell fragment that starts a process in a new session (so outside the
// program's process group and session) that writes its pid to the file $1 and sleeps, and
// waits until the pid is there. The escaped process writes its own pid: whether setsid(1)
// forks first depends on the shell.
const escape = `setsid sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 1000' "$1" &
while [ ! -e "$1" ]; do sleep 0.01; done
`

// shRun runs script with sh -c in dir, $1 set to dir/pid and $2... to args.
func shRun(t *testing.T, ctx context.Context, reg *Registry, dir, script string, timeout time.Duration, args ...string) Result {
	t.Helper()
	sh := lookPath(t, "sh")
	lookPath(t, "setsid")
	argv := append([]string{"sh", "-c", script, "sh", filepath.Join(dir, "pid")}, args...)
	req := Request{Name: CmdExec, Argv: argv, Timeout: timeout}
	return reg.Run(ctx, req, Policy{Allow: []string{sh}, Dir: dir})
}

// readPid reads a pid file a command wrote, and makes sure the process ends when the test
// does, whatever the code under test did.
func readPid(t *testing.T, path string, res Result) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the command wrote no pid file (%v); result %+v", err, res)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		t.Fatalf("pid file holds %q", b)
	}
	if st, err := readStat(pid); err == nil {
		t.Cleanup(func() { killExact(pid, st.start); reapIfOurs(pid) })
	}
	return pid
}

// ended reports whether pid has ended and is not left as a zombie of this process (init or
// whatever subreaper it went to reaps it, not our concern).
func ended(pid int) bool {
	st, err := readStat(pid)
	return err != nil || st.state == 'Z' && st.ppid != os.Getpid()
}

// waitEnded polls /proc until pid has ended, for at most a few seconds: SIGKILL is delivered
// at once, but the exit itself takes the kernel a moment.
func waitEnded(t *testing.T, pid int, what string) {
	t.Helper()
	fixtures.Eventually(t, 5*time.Second, fmt.Sprintf("%s (pid %d) ended after the command returned", what, pid), func() bool { return ended(pid) })
}

// checkEscaped makes sure the test's process really left the program's session.
func checkEscaped(t *testing.T, pid int) {
	t.Helper()
	if st, err := readStat(pid); err == nil && (st.sid != pid || st.pgid != pid) {
		t.Fatalf("process %d is in session %d, group %d: the test did not escape", pid, st.sid, st.pgid)
	}
}

func TestThreat39SetsidChildEndsOnTimeout(t *testing.T) {
	reapModes(t, func(t *testing.T, reg *Registry) {
		dir := t.TempDir()
		res := shRun(t, context.Background(), reg, dir, escape+"exec sleep 1000", 1500*time.Millisecond)
		pid := readPid(t, filepath.Join(dir, "pid"), res)
		if !res.TimedOut {
			t.Errorf("Run = %+v, want TimedOut", res)
		}
		checkEscaped(t, pid)
		waitEnded(t, pid, "the setsid child of a command that timed out")
	})
}

func TestThreat39BackgroundChildEndsAtExit(t *testing.T) {
	reapModes(t, func(t *testing.T, reg *Registry) {
		dir := t.TempDir()
		res := shRun(t, context.Background(), reg, dir, `sleep 1000 & echo $! > "$1"; exit 0`, time.Minute)
		pid := readPid(t, filepath.Join(dir, "pid"), res)
		if res.ExitCode != 0 || res.Error != "" {
			t.Errorf("Run = %+v, want exit code 0 and no error", res)
		}
		waitEnded(t, pid, "the background child of a command that exited")
	})
}

func TestThreat39SetsidChildEndsAtExit(t *testing.T) {
	reapModes(t, func(t *testing.T, reg *Registry) {
		dir := t.TempDir()
		res := shRun(t, context.Background(), reg, dir, escape+"exit 0", time.Minute)
		pid := readPid(t, filepath.Join(dir, "pid"), res)
		if res.ExitCode != 0 || res.Error != "" {
			t.Errorf("Run = %+v, want exit code 0 and no error", res)
		}
		checkEscaped(t, pid)
		waitEnded(t, pid, "the setsid child of a command that exited")
	})
}

// A deeper escape: a daemon-style double fork, where the process that called setsid is gone
// before its child is seen.
func TestThreat39DoubleForkEndsAtExit(t *testing.T) {
	reapModes(t, func(t *testing.T, reg *Registry) {
		script := `setsid sh -c '(echo $$ > /dev/null; sh -c '\''echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 1000'\'' "$0" &) ' "$1"
while [ ! -e "$1" ]; do sleep 0.01; done
exit 0`
		dir := t.TempDir()
		res := shRun(t, context.Background(), reg, dir, script, time.Minute)
		pid := readPid(t, filepath.Join(dir, "pid"), res)
		if res.ExitCode != 0 || res.Error != "" {
			t.Errorf("Run = %+v, want exit code 0 and no error", res)
		}
		waitEnded(t, pid, "the grandchild of a setsid child of a command that exited")
	})
}

// The agent stopping cancels the context of the commands it runs.
func TestThreat39SetsidChildEndsOnCancel(t *testing.T) {
	reapModes(t, func(t *testing.T, reg *Registry) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan Result, 1)
		go func() { done <- shRun(t, ctx, reg, dir, escape+"exec sleep 1000", time.Minute) }()
		// Cancel once the escaped process is there.
		fixtures.Eventually(t, 10*time.Second, "the escaped process wrote its pid file", func() bool { return exists(filepath.Join(dir, "pid")) })
		cancel()
		res := <-done
		pid := readPid(t, filepath.Join(dir, "pid"), res)
		if res.TimedOut || res.ExitCode != -1 || res.Error == "" {
			t.Errorf("Run cancelled = %+v, want exit code -1, an error, not TimedOut", res)
		}
		checkEscaped(t, pid)
		waitEnded(t, pid, "the setsid child of a cancelled command")
	})
}

// detached is escape for a process that also lets go of the command's output, as a daemon
// does, and writes its pid to $1.detached.
const detached = `setsid sh -c 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec sleep 1000 </dev/null >/dev/null 2>&1' "$1.detached" &
while [ ! -e "$1.detached" ]; do sleep 0.01; done
`

// Two commands at once (two peers): one ending kills what it left, never what the other
// still runs. The other's processes go when it ends.
func TestThreat39ConcurrentCommands(t *testing.T) {
	reapModes(t, func(t *testing.T, reg *Registry) {
		dirA, dirB := t.TempDir(), t.TempDir()
		release := filepath.Join(dirA, "release")
		doneA := make(chan Result, 1)
		go func() {
			// A keeps one child in its session and one that left it, and runs until released.
			script := `sleep 1000 & echo $! > "$1.bg"; ` + escape + `while [ ! -e "$2" ]; do sleep 0.01; done`
			doneA <- shRun(t, context.Background(), reg, dirA, script, time.Minute, release)
		}()
		fixtures.Eventually(t, 10*time.Second, "command A wrote its pid file", func() bool { return exists(filepath.Join(dirA, "pid")) })
		resB := shRun(t, context.Background(), reg, dirB, escape+detached+"exit 0", time.Minute)
		pidB := readPid(t, filepath.Join(dirB, "pid"), resB)
		detachedB := readPid(t, filepath.Join(dirB, "pid.detached"), resB)
		if resB.ExitCode != 0 || resB.Error != "" {
			t.Errorf("Run(B) = %+v, want exit code 0 and no error", resB)
		}
		// A still runs: both its children must be alive.
		bgA := readPid(t, filepath.Join(dirA, "pid.bg"), Result{})
		escA := readPid(t, filepath.Join(dirA, "pid"), Result{})
		for _, pid := range []int{bgA, escA} {
			if ended(pid) {
				t.Errorf("process %d of the running command A ended when command B did", pid)
			}
		}
		waitEnded(t, pidB, "the setsid child of command B")
		if reg.reap == ReapCgroup {
			waitEnded(t, detachedB, "the detached setsid child of command B") // with cgroups, at once
		}
		if err := os.WriteFile(release, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		resA := <-doneA
		if resA.ExitCode != 0 || resA.Error != "" {
			t.Errorf("Run(A) = %+v, want exit code 0 and no error", resA)
		}
		waitEnded(t, bgA, "the background child of command A")
		waitEnded(t, escA, "the setsid child of command A")
		// The process tree cannot always tell whose a process is that left its session and
		// its output while both commands ran: it is left to the one that ends last, A.
		waitEnded(t, detachedB, "the detached setsid child of command B")
	})
}

// An agent that died left a command's cgroup with a live process in it; the next agent's
// KillLeftovers ends it and removes the cgroup, and leaves a running agent's cgroup alone.
func TestThreat39KillLeftovers(t *testing.T) {
	parent, parentPath, err := cgroupParentPath()
	if err != nil {
		t.Skipf("no writable cgroup v2 here (as root in CI it usually is): %v", err)
	}
	sh := lookPath(t, "sh")
	me := self()
	// A dead agent: this pid with another start time is another process, long gone.
	dead := filepath.Join(parent, cgroupName(me.pid, me.start+1, "leftover"))
	live := filepath.Join(parent, cgroupName(me.pid, me.start, "live"))
	dir := t.TempDir()
	pids := map[string]int{}
	for name, cg := range map[string]string{"dead": dead, "live": live} {
		if err := os.Mkdir(cg, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { killCgroup(cg, joinCgroupPath(parentPath, filepath.Base(cg))) })
		// The "previous agent's" command: a shell that left a child behind and exited, as a
		// command does whose agent died.
		fd, err := syscall.Open(cg, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		pidFile := filepath.Join(dir, name)
		cmd := exec.Command(sh, "-c", `sleep 1000 & echo $! > "$0"`, pidFile)
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Setsid: true}
		err = cmd.Run()
		syscall.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		pids[name] = readPid(t, pidFile, Result{})
	}
	n, err := KillLeftovers()
	if err != nil || n < 1 { // more when an earlier test binary died with commands running
		t.Errorf("KillLeftovers() = %d, %v, want at least 1, nil", n, err)
	}
	waitEnded(t, pids["dead"], "the process in a dead agent's cgroup")
	if exists(dead) {
		t.Errorf("the dead agent's cgroup %s is still there", dead)
	}
	if ended(pids["live"]) || !exists(live) {
		t.Errorf("KillLeftovers ended a running agent's command (process %d, cgroup there: %v)", pids["live"], exists(live))
	}
}

// With cgroups available, the zero Options choose them.
func TestReapAutoPrefersCgroup(t *testing.T) {
	reg := NewRegistry(Options{})
	desc := reg.Reaping()
	if _, err := cgroupParent(); err != nil {
		t.Skipf("no writable cgroup v2 here: %v (registry says %q)", err, desc)
	}
	if !strings.HasPrefix(desc, "a cgroup v2 per command") {
		t.Errorf("Reaping() = %q, want a cgroup per command", desc)
	}
}
