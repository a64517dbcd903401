//go:build linux

package commands

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// self is this process as /proc shows it, read once.
var self = sync.OnceValue(func() procStat {
	st, err := readStat(os.Getpid())
	if err != nil {
		// Without /proc neither mechanism can find anything; this keeps the pid right.
		return procStat{pid: os.Getpid(), sid: -1}
	}
	return st
})

// readStat reads and parses /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// readProcs reads the stat of every process in /proc. Processes that end while it reads are
// left out.
func readProcs() (map[int]procStat, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	procs := make(map[int]procStat, len(names))
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid <= 0 {
			continue
		}
		if st, err := readStat(pid); err == nil {
			procs[pid] = st
		}
	}
	return procs, nil
}

// killExact sends SIGKILL to pid if it is still the process that was forked at start: the
// check and the kill are microseconds apart, and a pid is reused only after the pid space
// wrapped around.
func killExact(pid int, start uint64) {
	if st, err := readStat(pid); err == nil && st.start == start && st.state != 'Z' {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// reapIfOurs waits for pid if it is a zombie whose parent is this process: a descendant that
// was re-parented to us (we are a subreaper, or pid 1 of a namespace) and ended. Only pids
// known to belong to a command come here, never a child os/exec started, so no exit status
// is stolen from its Wait.
func reapIfOurs(pid int) bool {
	st, err := readStat(pid)
	if err != nil || st.state != 'Z' || st.ppid != self().pid {
		return false
	}
	var ws syscall.WaitStatus
	wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
	return err == nil && wpid == pid
}

// killPgrp kills the process group led by pid (the program, which leads its own session).
func killPgrp(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// startGroup starts the program newCmd makes, in a group from which none of its descendants
// can escape unseen: a cgroup of its own where the system allows it (and r's mode wants it),
// else the process tree. Every mode makes the program a session leader (so its process group
// is its own) and asks the kernel to SIGKILL it if the agent dies (Pdeathsig).
func (r *Registry) startGroup(newCmd func() *exec.Cmd, killed *atomic.Bool) (*exec.Cmd, procGroup, error) {
	if r.reap != ReapProcTree {
		parent, parentPath, err := cgroupParentPath()
		if err == nil {
			var cmd *exec.Cmd
			var g procGroup
			cmd, g, err = startInCgroup(newCmd, parent, parentPath, killed, r.log)
			if err == nil || r.reap == ReapCgroup {
				return cmd, g, err
			}
			// The cgroup could not be made or the program not started in it. Starting it in
			// the process tree tells which: if that works, the cgroup was at fault.
			r.log.Debug("cannot start in a cgroup; using the process tree", "op", "reap", "err", err)
			cmd, g, err2 := startInTree(newCmd, killed, r.log)
			if err2 == nil {
				var ce *cgroupStartError
				if errors.As(err, &ce) {
					cgroupFailed(err)
				}
			}
			return cmd, g, err2
		}
		if r.reap == ReapCgroup {
			return nil, nil, err
		}
	}
	return startInTree(newCmd, killed, r.log)
}

// Reaping describes, for the agent's log, how exec ends what a program leaves behind: which
// mechanism, and why not a cgroup when it is not one. Asking does what the first exec would:
// it detects cgroup v2 and, when the process tree is the mechanism, makes the agent a child
// subreaper, so an agent that asks at start adopts orphans from its first command on.
func (r *Registry) Reaping() string {
	if r.reap == ReapProcTree {
		return "process tree: the agent is a child subreaper and follows /proc" + subreaperNote()
	}
	parent, err := cgroupParent()
	switch {
	case err == nil:
		return "a cgroup v2 per command, under " + parent
	case r.reap == ReapCgroup:
		return "cgroup required but unavailable (exec cannot run): " + err.Error()
	}
	return "process tree: the agent is a child subreaper and follows /proc" + subreaperNote() + "; no cgroup: " + err.Error()
}

// --- cgroup v2 ---

var (
	cgroupOnce  sync.Once
	cgroupMu    sync.Mutex
	cgroupDirV  string // where per-command cgroups are made
	cgroupPathV string // the same cgroup as /proc/<pid>/cgroup names it
	cgroupErr   error  // why none are
)

// cgroupParent returns the directory in which this process makes per-command cgroups: its own
// cgroup v2, if it may create a child cgroup there and the kernel can start a process
// directly into one.
func cgroupParent() (string, error) {
	dir, _, err := cgroupParentPath()
	return dir, err
}

// cgroupParentPath is cgroupParent with the cgroup's path as /proc/<pid>/cgroup names it.
func cgroupParentPath() (dir, path string, err error) {
	cgroupOnce.Do(func() {
		dir, path, err := detectCgroup()
		cgroupMu.Lock()
		cgroupDirV, cgroupPathV, cgroupErr = dir, path, err
		cgroupMu.Unlock()
	})
	cgroupMu.Lock()
	defer cgroupMu.Unlock()
	return cgroupDirV, cgroupPathV, cgroupErr
}

// cgroupFailed stops using cgroups for the rest of the process's life.
func cgroupFailed(err error) {
	cgroupParent()
	cgroupMu.Lock()
	defer cgroupMu.Unlock()
	cgroupErr = fmt.Errorf("%w: a program could not be started in a cgroup: %w", ErrNoCgroup, err)
}

func detectCgroup() (dir, path string, err error) {
	path, err = parseProcCgroup(readProc("/proc/self/cgroup"))
	if err != nil {
		return "", "", fmt.Errorf("%w: /proc/self/cgroup names no cgroup v2", ErrNoCgroup)
	}
	dir, ok := cgroupDir(parseCgroup2Mounts(readProc("/proc/self/mountinfo")), path)
	if !ok {
		return "", "", fmt.Errorf("%w: this process's cgroup %s is not visible in a cgroup2 mount", ErrNoCgroup, path)
	}
	rel := strings.TrimSpace(readProc("/proc/sys/kernel/osrelease"))
	if !kernelAtLeast(rel, 5, 7) {
		return "", "", fmt.Errorf("%w: Linux %s cannot start a process in a cgroup (5.7 or later can)", ErrNoCgroup, rel)
	}
	if t, err := os.ReadFile(filepath.Join(dir, "cgroup.type")); err == nil && strings.TrimSpace(string(t)) != "domain" {
		return "", "", fmt.Errorf("%w: cgroup %s is %s, not a domain", ErrNoCgroup, dir, strings.TrimSpace(string(t)))
	}
	probe := filepath.Join(dir, cgroupName(self().pid, self().start, "probe"))
	if err := os.Mkdir(probe, 0o755); err != nil {
		return "", "", fmt.Errorf("%w: cannot create a cgroup in %s (under systemd the unit needs Delegate=yes): %w", ErrNoCgroup, dir, err)
	}
	if err := syscall.Rmdir(probe); err != nil {
		return "", "", fmt.Errorf("%w: cannot remove the cgroup %s: %w", ErrNoCgroup, probe, err)
	}
	return dir, path, nil
}

// cgroupStartError: the cgroup was made but the program could not be started in it.
type cgroupStartError struct{ err error }

func (e *cgroupStartError) Error() string { return e.err.Error() }
func (e *cgroupStartError) Unwrap() error { return e.err }

// cgroupGroup is a program in a cgroup of its own, made for it under the agent's cgroup.
type cgroupGroup struct {
	dir, path string // path: as /proc/<pid>/cgroup names it
	log       *slog.Logger
	done      func() // forgets the program as a root
}

// startInCgroup makes the command's cgroup and starts the program directly in it (clone3 with
// CLONE_INTO_CGROUP), so that not even its first fork happens outside.
func startInCgroup(newCmd func() *exec.Cmd, parent, parentPath string, killed *atomic.Bool, log *slog.Logger) (*exec.Cmd, procGroup, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	name := cgroupName(self().pid, self().start, hex.EncodeToString(rnd[:]))
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrNoCgroup, err)
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		syscall.Rmdir(dir)
		return nil, nil, fmt.Errorf("%w: open %s: %w", ErrNoCgroup, dir, err)
	}
	defer syscall.Close(fd)
	g := &cgroupGroup{dir: dir, path: joinCgroupPath(parentPath, name), log: log}
	cmd := newCmd()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, UseCgroupFD: true, CgroupFD: fd}
	cmd.Cancel = func() error {
		killed.Store(true)
		return g.kill(cmd.Process.Pid)
	}
	done, err := trees.startRoot(cmd)
	if err != nil {
		removeCgroup(dir)
		return nil, nil, &cgroupStartError{err}
	}
	g.done = done
	return cmd, g, nil
}

func (g *cgroupGroup) kill(root int) error {
	if err := writeCgroupFile(g.dir, "cgroup.kill"); err == nil {
		return nil
	}
	return killPgrp(root) // before Linux 5.14; end finds the rest
}

func (g *cgroupGroup) end() int {
	n, err := killCgroup(g.dir, g.path)
	if err != nil {
		g.log.Warn("processes of a finished command may survive", "op", "reap", "err", err)
	}
	g.done()
	return n
}

// writeCgroupFile writes "1" to one of a cgroup's control files (cgroup.kill, cgroup.freeze).
func writeCgroupFile(dir, name string) error {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("1")
	if err2 := f.Close(); err == nil {
		err = err2
	}
	return err
}

// populated reports whether a process is left in the cgroup dir or below it.
func populated(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return false // gone
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return strings.TrimSpace(v) != "0"
		}
	}
	return false
}

// cgroupPids lists the processes in the cgroup dir and in the cgroups below it.
func cgroupPids(dir string) []int {
	var pids []int
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for f := range strings.FieldsSeq(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			pids = append(pids, cgroupPids(filepath.Join(dir, e.Name()))...)
		}
	}
	return pids
}

// killCgroup ends every process in the cgroup dir (path as /proc names it) and in the
// cgroups a program may have made below it, waits until none is left, reaps those that were
// re-parented to this process, and removes the cgroups. It returns how many processes it
// found to kill.
func killCgroup(dir, path string) (int, error) {
	seen := map[int]bool{}
	for _, pid := range cgroupPids(dir) {
		seen[pid] = true
	}
	// cgroup.kill (Linux 5.14) kills the whole subtree at once, forks in flight included.
	// Before it, the cgroup is frozen (5.2) so that nothing forks while each process gets
	// SIGKILL; a frozen process still dies of SIGKILL.
	hasKill := writeCgroupFile(dir, "cgroup.kill") == nil
	if !hasKill {
		writeCgroupFile(dir, "cgroup.freeze")
	}
	deadline := time.Now().Add(reapWait)
	for delay := time.Millisecond; populated(dir); delay = min(2*delay, 50*time.Millisecond) {
		if !hasKill {
			for _, pid := range cgroupPids(dir) {
				seen[pid] = true
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if time.Now().After(deadline) {
			return len(seen), fmt.Errorf("cgroup %s still holds processes %v after %v", dir, cgroupPids(dir), reapWait)
		}
		time.Sleep(delay)
	}
	reapCgroupZombies(path)
	for {
		err := removeCgroup(dir)
		if err == nil || !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return len(seen), err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// removeCgroup removes an empty cgroup and the cgroups below it, deepest first.
func removeCgroup(dir string) error {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			if err := removeCgroup(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	if err := syscall.Rmdir(dir); err != nil && !errors.Is(err, syscall.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: dir, Err: err}
	}
	return nil
}

// KillLeftovers ends the processes that commands of an earlier agent left running when that
// agent died (crashed, was killed with SIGKILL, lost its machine's power), and removes their
// cgroups. The agent calls it when it starts. It looks only at per-command cgroups under this
// process's own cgroup whose maker is gone; those of an agent still running (another one in
// the same cgroup, or this one) are left alone. It returns how many processes it ended.
//
// Without a usable cgroup v2 there is nothing it can find and it returns 0, nil: the process
// tree mechanism relies on Pdeathsig alone for an agent's death (see the package
// documentation).
func KillLeftovers() (int, error) {
	parent, parentPath, err := cgroupParentPath()
	if err != nil {
		return 0, nil
	}
	entries, err := os.ReadDir(parent)
	if err != nil {
		return 0, err
	}
	killed := 0
	var errs []error
	for _, e := range entries {
		pid, start, ok := parseCgroupName(e.Name())
		if !e.IsDir() || !ok || agentAlive(pid, start) {
			continue
		}
		n, err := killCgroup(filepath.Join(parent, e.Name()), joinCgroupPath(parentPath, e.Name()))
		killed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return killed, errors.Join(errs...)
}

// agentAlive reports whether the process pid that was forked at start still runs.
func agentAlive(pid int, start uint64) bool {
	st, err := readStat(pid)
	return err == nil && st.start == start && st.state != 'Z'
}

func joinCgroupPath(parent, name string) string {
	return strings.TrimSuffix(parent, "/") + "/" + name
}

const prGetChildSubreaper = 37 // PR_GET_CHILD_SUBREAPER

// orphansComeHere reports whether a process whose parent ends is re-parented to this one: it
// is pid 1 of its namespace (an agent as a container's only process) or a child subreaper.
func orphansComeHere() bool {
	var on int32
	_, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prGetChildSubreaper, uintptr(unsafe.Pointer(&on)), 0)
	return os.Getpid() == 1 || e == 0 && on != 0
}

// reapCgroupZombies reaps the zombies re-parented to this process that were in the cgroup at
// path or below it (a zombie still names its cgroup in /proc/<pid>/cgroup). A command's
// program itself is os/exec's to wait for, and it has by the time this runs.
func reapCgroupZombies(path string) {
	if !orphansComeHere() {
		return
	}
	procs, err := readProcs()
	if err != nil {
		return
	}
	me := self().pid
	for pid, p := range procs {
		if p.state != 'Z' || p.ppid != me {
			continue
		}
		if cg, err := parseProcCgroup(readProc("/proc/" + strconv.Itoa(pid) + "/cgroup")); err == nil && within(cg, path) {
			reapIfOurs(pid)
		}
	}
}
