package commands

import "testing"

// THREATS.md row 39, the process tree's attribution: a session the command made is its only
// while it is still that session. Once it is empty its number (its leader's pid) can be
// reused by any new session on the machine, and a process of that one must not be killed
// with the command. The snapshots are synthetic: their pids are above the kernel's largest
// pid_max (2^22), so none of them names a real process.
func TestThreat39TreeReusedSessionNumber(t *testing.T) {
	me := self()
	const base = 1 << 23
	const (
		root   = base + 1 // the command's program, leader of its own session
		leader = base + 2 // a child of the program that made a session of its own
		other  = base + 3
	)
	rootProc := procStat{pid: root, state: 'S', ppid: me.pid, pgid: root, sid: root, start: 1000}
	leaderProc := procStat{pid: leader, state: 'S', ppid: root, pgid: leader, sid: leader, start: 1010}
	tests := []struct {
		name  string
		later [][]procStat // snapshots after the one that records the session
		pid   int          // the process in question, in the last snapshot
		want  bool         // whether it is the command's
	}{{
		name: "number reused by a new session leader after the session ended",
		later: [][]procStat{{
			{pid: leader, state: 'S', ppid: 1, pgid: leader, sid: leader, start: 2000},
		}},
		pid: leader,
	}, {
		name: "number reused, the new session's leader gone and its child left",
		later: [][]procStat{{
			{pid: other, state: 'S', ppid: 1, pgid: other, sid: leader, start: 2010},
		}},
		pid: other,
	}, {
		name: "session seen empty, then a process of the agent's with the number",
		later: [][]procStat{{}, {
			{pid: other, state: 'S', ppid: me.pid, pgid: other, sid: leader, start: 2010},
		}},
		pid: other,
	}, {
		name: "the session's leader gone, its child re-parented to the agent",
		later: [][]procStat{{
			{pid: other, state: 'S', ppid: me.pid, pgid: leader, sid: leader, start: 1020},
		}},
		pid:  other,
		want: true,
	}, {
		name: "the session's leader still in it, a process of it re-parented elsewhere",
		later: [][]procStat{{
			leaderProc,
			{pid: other, state: 'S', ppid: 1, pgid: leader, sid: leader, start: 1020},
		}},
		pid:  other,
		want: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &treeReaper{groups: map[*treeGroup]struct{}{}, roots: map[int]struct{}{root: {}}}
			g := &treeGroup{t: tr, root: root, rootStart: rootProc.start,
				members: map[int]uint64{root: rootProc.start}, sids: map[int]struct{}{root: {}},
				pipes: map[string]bool{}}
			tr.groups[g] = struct{}{}
			snap := func(ps ...procStat) map[int]procStat {
				m := map[int]procStat{me.pid: me, root: rootProc}
				for _, p := range ps {
					m[p.pid] = p
				}
				return m
			}
			tr.assign(g, snap(leaderProc), false)
			if s, ok := g.members[leader]; !ok || s != leaderProc.start {
				t.Fatalf("after the first snapshot, members = %v, want %d (start %d) in it", g.members, leader, leaderProc.start)
			}
			var last map[int]procStat
			for _, ps := range tt.later {
				last = snap(ps...)
				tr.assign(g, last, false)
			}
			s, in := g.members[tt.pid]
			if got := in && s == last[tt.pid].start; got != tt.want {
				t.Errorf("process %+v is the command's = %v, want %v (members %v)", last[tt.pid], got, tt.want, g.members)
			}
		})
	}
}
