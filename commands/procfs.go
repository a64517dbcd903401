package commands

import (
	"errors"
	"strconv"
	"strings"
)

// The parsers of the Linux files the reaper reads: /proc/<pid>/stat, /proc/self/cgroup and
// /proc/self/mountinfo. They are pure (no I/O) so that every platform builds and fuzzes them.

// errProcFormat: a /proc file did not have the expected form.
var errProcFormat = errors.New("commands: malformed /proc data")

// procStat holds the fields of /proc/<pid>/stat the reaper uses.
type procStat struct {
	pid   int
	state byte // R, S, D, Z, T, ...; 'Z' is a zombie: ended, waiting for its parent to reap it
	ppid  int
	pgid  int
	sid   int
	// start is when the process was forked, in clock ticks after boot: with pid it names one
	// process, even after the pid is reused.
	start uint64
}

// parseStat parses /proc/<pid>/stat: "pid (comm) state ppid pgrp session tty_nr tpgid flags
// minflt cminflt majflt cmajflt utime stime cutime cstime priority nice num_threads
// itrealvalue starttime ...". comm may hold spaces and parentheses, so the fields after it are
// counted from the last ')'.
func parseStat(b []byte) (procStat, error) {
	s := string(b)
	open := strings.IndexByte(s, '(')
	end := strings.LastIndexByte(s, ')')
	if open < 1 || end < open || s[open-1] != ' ' {
		return procStat{}, errProcFormat
	}
	pid, err := strconv.Atoi(s[:open-1])
	if err != nil || pid <= 0 {
		return procStat{}, errProcFormat
	}
	f := strings.Fields(s[end+1:])
	// f[0] state, f[1] ppid, f[2] pgrp, f[3] session, f[19] starttime.
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errProcFormat
	}
	var st procStat
	st.pid, st.state = pid, f[0][0]
	ints := []*int{&st.ppid, &st.pgid, &st.sid}
	for i, p := range ints {
		n, err := strconv.Atoi(f[1+i])
		if err != nil || n < 0 {
			return procStat{}, errProcFormat
		}
		*p = n
	}
	if st.start, err = strconv.ParseUint(f[19], 10, 64); err != nil {
		return procStat{}, errProcFormat
	}
	return st, nil
}

// parseProcCgroup returns the cgroup v2 path in /proc/<pid>/cgroup: the line "0::<path>".
func parseProcCgroup(s string) (string, error) {
	for line := range strings.SplitSeq(s, "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			if !strings.HasPrefix(path, "/") || strings.Contains(path, "/../") || strings.HasSuffix(path, "/..") {
				return "", errProcFormat
			}
			return path, nil
		}
	}
	return "", errProcFormat
}

// cgroupMount is one cgroup2 mount from /proc/self/mountinfo: the directory of the hierarchy
// it shows (root, as in /proc/self/cgroup) and where it is mounted (dir).
type cgroupMount struct {
	root, dir string
}

// parseCgroup2Mounts returns the cgroup2 mounts in /proc/self/mountinfo, whose lines read
// "id parent major:minor root mountpoint options [optional fields...] - fstype source
// superoptions", with root and mountpoint octal-escaped like /proc/self/mounts.
func parseCgroup2Mounts(s string) []cgroupMount {
	var out []cgroupMount
	for line := range strings.SplitSeq(s, "\n") {
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(f) || f[sep+1] != "cgroup2" {
			continue
		}
		root, dir := unescapeMount(f[3]), unescapeMount(f[4])
		if !strings.HasPrefix(root, "/") || !strings.HasPrefix(dir, "/") {
			continue
		}
		out = append(out, cgroupMount{root: root, dir: dir})
	}
	return out
}

// cgroupDir returns the directory that shows the cgroup at path (as /proc/self/cgroup names
// it) in one of mounts: the mount whose root holds path, the longest such root first.
func cgroupDir(mounts []cgroupMount, path string) (string, bool) {
	best, found := cgroupMount{}, false
	for _, m := range mounts {
		if !within(path, m.root) || found && len(m.root) <= len(best.root) {
			continue
		}
		best, found = m, true
	}
	if !found {
		return "", false
	}
	rel := strings.TrimPrefix(path, best.root)
	if best.root == "/" {
		rel = path
	}
	dir := strings.TrimSuffix(best.dir, "/") + "/" + strings.TrimPrefix(rel, "/")
	if dir != "/" {
		dir = strings.TrimSuffix(dir, "/")
	}
	return dir, true
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	return dir == "/" || path == dir || strings.HasPrefix(path, dir+"/")
}

// cgroupPrefix starts the name of every per-command cgroup. The full name is
// "sealpost-cmd-<agent pid>-<agent start>-<random>": the agent that made it (its pid and start
// time, see procStat.start), so that a later agent knows a cgroup left behind by one that
// died from one that still runs.
const cgroupPrefix = "sealpost-cmd-"

// parseCgroupName returns the agent pid and start time a per-command cgroup's name holds.
func parseCgroupName(name string) (pid int, start uint64, ok bool) {
	rest, ok := strings.CutPrefix(name, cgroupPrefix)
	if !ok {
		return 0, 0, false
	}
	f := strings.Split(rest, "-")
	if len(f) != 3 || f[2] == "" {
		return 0, 0, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 0 || strconv.Itoa(pid) != f[0] {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[1], 10, 64)
	if err != nil || strconv.FormatUint(start, 10) != f[1] {
		return 0, 0, false
	}
	return pid, start, true
}

// cgroupName builds the name parseCgroupName reads.
func cgroupName(pid int, start uint64, random string) string {
	return cgroupPrefix + strconv.Itoa(pid) + "-" + strconv.FormatUint(start, 10) + "-" + random
}

// kernelAtLeast compares a release such as "6.8.0-45-generic" with major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	f := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return false
	}
	a, err1 := strconv.Atoi(f[0])
	b, err2 := strconv.Atoi(f[1])
	return err1 == nil && err2 == nil && (a > major || a == major && b >= minor)
}
