//go:build linux

package commands

import (
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The process-tree mechanism, for a Linux without a usable cgroup v2. The agent makes itself a
// child subreaper, so that a process whose parent ends is re-parented to the agent instead of
// to init; while commands run, a scanner walks /proc and assigns every process to the command
// it descends from; when a command ends, everything assigned to it is killed and reaped.
//
// A process is a command's when (rules checked in this order):
//   - it is the command's program, or its parent is one of the command's processes (same pid,
//     same start time);
//   - it lives in a session the command's processes made (the program's own: every exec
//     program leads a new session; or one that a process of the command created), and that
//     session is still the one they made: one of the command's processes is in it in the same
//     snapshot, or the process's parent is the agent. A session's number is its leader's pid,
//     which the kernel does not reuse while any process is in that session; once the session
//     is empty the number can become any new session's (a service that systemd starts, an
//     sshd login), so the number alone would hand the command unrelated processes. Every
//     process of a session descends (by fork) from its leader, so a session that holds one of
//     the agent's descendants holds nothing else: the command's processes are its
//     descendants, and so is a process re-parented to the agent (a subreaper adopts only its
//     own descendants). A session found empty is forgotten;
//   - its parent is the agent (its ancestors ended) and it holds the command's stdout or
//     stderr pipe (the agent's end is not inherited by anyone else);
//   - at the command's end only: its parent is the agent, it is not in the agent's session, it
//     is no command's program, it was forked after this command's program, and no other
//     command that is still running started before it was forked. That is a process whose
//     ancestors all ended before the scanner saw it (a fork, setsid and exit within one scan);
//     when several commands overlap in time it cannot be told whose it is, and it is left to
//     the one of them that ends last.

// scanEvery is the scanner's period while commands run.
const scanEvery = 50 * time.Millisecond

// treeReaper is the process-wide state of the mechanism.
type treeReaper struct {
	mu     sync.Mutex
	groups map[*treeGroup]struct{}
	// roots holds the program of every running command, whatever its mechanism: a program
	// is never another command's descendant. Programs start with mu held and are added
	// before it is released, so no assignment ever sees one unregistered.
	roots     map[int]struct{}
	scanning  bool
	subreaper error // from prctl, once
	once      sync.Once
}

var trees treeReaper

// treeGroup is one command's program and the processes assigned to it.
type treeGroup struct {
	t         *treeReaper
	log       *slog.Logger
	root      int
	rootStart uint64
	members   map[int]uint64   // pid -> start time
	sids      map[int]struct{} // sessions made by the command's processes (see assign)
	pipes     map[string]bool  // the output pipes, as /proc/<pid>/fd/<n> links read: "pipe:[inode]"
}

const prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER, Linux 3.4

func (t *treeReaper) init() {
	t.once.Do(func() {
		self() // read before any child exists
		if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
			t.subreaper = e
		}
		// Under the lock: startRoot may be registering a cgroup command's program meanwhile.
		t.mu.Lock()
		defer t.mu.Unlock()
		t.groups = map[*treeGroup]struct{}{}
		if t.roots == nil {
			t.roots = map[int]struct{}{}
		}
	})
}

// startRoot starts a command's program for another mechanism (a cgroup) with t.mu held and
// registers it as a root, so the process tree never takes it for an orphan; done forgets it.
func (t *treeReaper) startRoot(cmd *exec.Cmd) (done func(), err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pid := cmd.Process.Pid
	if t.roots == nil {
		t.roots = map[int]struct{}{}
	}
	t.roots[pid] = struct{}{}
	return func() {
		t.mu.Lock()
		delete(t.roots, pid)
		t.mu.Unlock()
	}, nil
}

func subreaperNote() string {
	trees.init()
	if trees.subreaper != nil {
		return " (but prctl(PR_SET_CHILD_SUBREAPER) failed: " + trees.subreaper.Error() + "; orphans go to init)"
	}
	return ""
}

// startInTree starts the program as a session leader and registers it. The start and the
// registration happen under the lock, so no scan or end can see the new program before it is
// known to be a command's program.
func startInTree(newCmd func() *exec.Cmd, killed *atomic.Bool, log *slog.Logger) (*exec.Cmd, procGroup, error) {
	t := &trees
	t.init()
	cmd := newCmd()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error {
		killed.Store(true)
		return killPgrp(cmd.Process.Pid)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	root := cmd.Process.Pid
	g := &treeGroup{t: t, log: log, root: root, members: map[int]uint64{}, sids: map[int]struct{}{root: {}}, pipes: map[string]bool{}}
	for _, w := range []io.Writer{cmd.Stdout, cmd.Stderr} {
		if f, ok := w.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok {
					g.pipes["pipe:["+strconv.FormatUint(st.Ino, 10)+"]"] = true
				}
			}
		}
	}
	// Our child cannot vanish before we wait for it, so its stat is there, zombie or not.
	if st, err := readStat(root); err == nil {
		g.rootStart = st.start
	}
	g.members[root] = g.rootStart
	t.groups[g] = struct{}{}
	t.roots[root] = struct{}{}
	if !t.scanning {
		t.scanning = true
		go t.scan()
	}
	return cmd, g, nil
}

// scan assigns processes to the running commands every scanEvery, and reaps those of their
// processes that ended after being re-parented to the agent. It stops when no command runs.
func (t *treeReaper) scan() {
	tick := time.NewTicker(scanEvery)
	defer tick.Stop()
	for range tick.C {
		t.mu.Lock()
		procs, _ := readProcs() // under the lock: a snapshot older than another's would undo it
		if len(t.groups) == 0 {
			t.scanning = false
			t.mu.Unlock()
			return
		}
		for g := range t.groups {
			t.assign(g, procs, false)
			for pid, start := range g.members {
				if p := procs[pid]; pid != g.root && p.state == 'Z' && p.start == start && reapIfOurs(pid) {
					delete(g.members, pid)
				}
			}
		}
		t.mu.Unlock()
	}
}

// assign updates g's members from a /proc snapshot (see the rules above; orphans enables the
// last one). t.mu is held.
func (t *treeReaper) assign(g *treeGroup, procs map[int]procStat, orphans bool) {
	me := self()
	for pid, start := range g.members {
		if p, ok := procs[pid]; !ok || p.start != start {
			delete(g.members, pid) // ended and reaped, or the pid is another process now
		}
	}
	owned := func(p procStat) bool {
		for h := range t.groups {
			if s, ok := h.members[p.pid]; ok && s == p.start {
				return true
			}
		}
		return false
	}
	isMember := func(pid int) bool {
		p, ok := procs[pid]
		s, in := g.members[pid]
		return ok && in && s == p.start
	}
	// held: the sessions of g's that hold one of g's processes in this snapshot. A session
	// with no process at all has ended, and its number is free for an unrelated one.
	held, used := map[int]bool{}, map[int]bool{}
	for _, p := range procs {
		used[p.sid] = true
	}
	for sid := range g.sids {
		if !used[sid] {
			delete(g.sids, sid)
		}
	}
	for pid := range g.members {
		held[procs[pid].sid] = true // members were pruned above: each is in procs
	}
	for changed := true; changed; {
		changed = false
		for _, p := range procs {
			_, in := g.members[p.pid]
			_, root := t.roots[p.pid]
			if in || root || p.pid == me.pid || p.start < g.rootStart {
				continue
			}
			_, inSession := g.sids[p.sid]
			inSession = inSession && p.sid != me.sid && (held[p.sid] || p.ppid == me.pid)
			ok := isMember(p.ppid) || inSession
			orphan := p.ppid == me.pid && p.sid != me.sid && !owned(p) && !inCommandCgroup(p.pid)
			if !ok && orphan && g.holdsPipe(p.pid) {
				ok = true
			}
			if !ok && orphans && orphan {
				ok = true
				for h := range t.groups {
					if h != g && h.rootStart <= p.start {
						ok = false // ambiguous: left to h, which ends later
						break
					}
				}
			}
			if ok {
				g.members[p.pid] = p.start
				held[p.sid] = true
				if p.sid != me.sid {
					g.sids[p.sid] = struct{}{}
				}
				changed = true
			}
		}
	}
}

func (g *treeGroup) kill(root int) error { return killPgrp(root) }

// inCommandCgroup reports whether pid is in a per-command cgroup: a command of the cgroup
// mechanism's, never the process tree's.
func inCommandCgroup(pid int) bool {
	path, err := parseProcCgroup(readProc("/proc/" + strconv.Itoa(pid) + "/cgroup"))
	return err == nil && strings.Contains(path+"/", "/"+cgroupPrefix)
}

// holdsPipe reports whether pid has one of g's output pipes open.
func (g *treeGroup) holdsPipe(pid int) bool {
	if len(g.pipes) == 0 {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	d, err := os.Open(dir)
	if err != nil {
		return false
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if link, err := os.Readlink(dir + "/" + n); err == nil && g.pipes[link] {
			return true
		}
	}
	return false
}

// end kills and reaps every process assigned to g until none is left, then forgets g.
func (g *treeGroup) end() int {
	t := g.t
	killed := map[int]bool{}
	deadline := time.Now().Add(reapWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		t.mu.Lock()
		procs, err := readProcs()
		if err != nil {
			t.mu.Unlock()
			g.log.Warn("cannot read /proc; processes of a finished command may survive", "op", "reap", "err", err)
			break
		}
		t.assign(g, procs, true)
		live := 0
		for pid, start := range g.members {
			p := procs[pid]
			switch {
			case pid == g.root:
				// os/exec waits for it (it has, by now); never ours to reap.
			case p.state == 'Z':
				if reapIfOurs(pid) {
					delete(g.members, pid)
				}
			default:
				killExact(pid, start)
				killed[pid] = true
				live++
			}
		}
		t.mu.Unlock()
		if live == 0 {
			break
		}
		if time.Now().After(deadline) {
			g.log.Warn("processes of a finished command survive", "op", "reap", "count", live)
			break
		}
		time.Sleep(delay)
	}
	t.mu.Lock()
	delete(t.groups, g)
	delete(t.roots, g.root)
	t.mu.Unlock()
	return len(killed)
}
