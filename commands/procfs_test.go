package commands

import (
	"strconv"
	"strings"
	"testing"
)

const statSample = "4242 (sh -c (x) y) S 4200 4242 4242 0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 98765 2527232 207 18446744073709551615 1 1 0 0 0 0 0 0 65538 0 0 0 17 1 0 0 0 0 0\n"

const mountinfoSample = `24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
52 40 0:27 /system.slice/sealpost.service /run/cg\040dir rw,nosuid shared:9 master:3 - cgroup2 cgroup2 rw,nsdelegate
`

func TestParseStat(t *testing.T) {
	got, err := parseStat([]byte(statSample))
	want := procStat{pid: 4242, state: 'S', ppid: 4200, pgid: 4242, sid: 4242, start: 98765}
	if err != nil || got != want {
		t.Errorf("parseStat(%q) = %+v, %v, want %+v", statSample, got, err, want)
	}
	for _, bad := range []string{"", "4242", "4242 (sh) S 1 2 3", "x (sh) S 1 2 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5", "4242(sh) S 1 2 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5", "4242 (sh) S -1 2 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 5"} {
		if got, err := parseStat([]byte(bad)); err == nil || got != (procStat{}) {
			t.Errorf("parseStat(%q) = %+v, %v, want an error and the zero value", bad, got, err)
		}
	}
}

func TestCgroupPaths(t *testing.T) {
	mounts := parseCgroup2Mounts(mountinfoSample)
	want := []cgroupMount{{root: "/", dir: "/sys/fs/cgroup/unified"}, {root: "/system.slice/sealpost.service", dir: "/run/cg dir"}}
	if len(mounts) != len(want) || mounts[0] != want[0] || mounts[1] != want[1] {
		t.Fatalf("parseCgroup2Mounts = %+v, want %+v", mounts, want)
	}
	for _, c := range []struct{ path, dir string }{
		{"/", "/sys/fs/cgroup/unified"},
		{"/user.slice/x", "/sys/fs/cgroup/unified/user.slice/x"},
		{"/system.slice/sealpost.service", "/run/cg dir"},
		{"/system.slice/sealpost.service/sub", "/run/cg dir/sub"},
		{"/system.slice/sealpost.services", "/sys/fs/cgroup/unified/system.slice/sealpost.services"},
	} {
		if got, ok := cgroupDir(mounts, c.path); !ok || got != c.dir {
			t.Errorf("cgroupDir(%q) = %q, %v, want %q", c.path, got, ok, c.dir)
		}
	}
	if got, ok := cgroupDir(mounts[1:], "/other"); ok {
		t.Errorf("cgroupDir(/other) outside the only mount = %q, want not found", got)
	}
	for in, want := range map[string]string{
		"0::/\n": "/",
		"12:pids:/a\n0::/system.slice/x.service\n": "/system.slice/x.service",
	} {
		if got, err := parseProcCgroup(in); err != nil || got != want {
			t.Errorf("parseProcCgroup(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "1:name=systemd:/\n", "0::/../outside\n", "0::relative\n"} {
		if got, err := parseProcCgroup(bad); err == nil {
			t.Errorf("parseProcCgroup(%q) = %q, want an error", bad, got)
		}
	}
}

func TestCgroupName(t *testing.T) {
	name := cgroupName(321, 99619, "60c481c52efa4c0e")
	if pid, start, ok := parseCgroupName(name); !ok || pid != 321 || start != 99619 {
		t.Errorf("parseCgroupName(%q) = %d, %d, %v", name, pid, start, ok)
	}
	for _, bad := range []string{"sealpost-cmd-", "sealpost-cmd-1-2", "sealpost-cmd-01-2-x", "sealpost-cmd-1-2-", "sealpost-cmd-0-2-x", "other-1-2-x", "sealpost-cmd-1-2-x-y"} {
		if _, _, ok := parseCgroupName(bad); ok {
			t.Errorf("parseCgroupName(%q) ok, want not", bad)
		}
	}
}

func TestKernelAtLeast(t *testing.T) {
	for rel, want := range map[string]bool{"6.8.0-45-generic": true, "5.7.0": true, "5.6.19": false, "4.19.0": false, "5.10": true, "": false, "x": false} {
		if got := kernelAtLeast(rel, 5, 7); got != want {
			t.Errorf("kernelAtLeast(%q, 5, 7) = %v, want %v", rel, got, want)
		}
	}
}

// FuzzParseStat: no panic; an error comes with the zero value; a success has a positive pid
// and, written back in the kernel's format, parses to itself.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statSample))
	f.Add([]byte("1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"))
	f.Add([]byte("7 ()) Z 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 18446744073709551615"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseStat(b)
		if err != nil {
			if st != (procStat{}) {
				t.Fatalf("parseStat(%q) = %+v with error %v", b, st, err)
			}
			return
		}
		if st.pid <= 0 || st.ppid < 0 || st.pgid < 0 || st.sid < 0 {
			t.Fatalf("parseStat(%q) = %+v", b, st)
		}
		line := strconv.Itoa(st.pid) + " (c) " + string([]byte{st.state}) + " " + strconv.Itoa(st.ppid) + " " +
			strconv.Itoa(st.pgid) + " " + strconv.Itoa(st.sid) + strings.Repeat(" 0", 15) + " " + strconv.FormatUint(st.start, 10)
		if again, err := parseStat([]byte(line)); err != nil || again != st {
			t.Fatalf("parseStat(%q) = %+v, written as %q parses to %+v, %v", b, st, line, again, err)
		}
	})
}

// FuzzCgroupFiles: /proc/self/cgroup and /proc/self/mountinfo. A cgroup path found is
// absolute, without "..", and on a line of the input; every mount has absolute root and
// directory; a directory found for the path is absolute; a per-command cgroup name that
// parses is the one cgroupName builds.
func FuzzCgroupFiles(f *testing.F) {
	f.Add("0::/system.slice/sealpost.service\n", mountinfoSample, "sealpost-cmd-321-99619-60c481c52efa4c0e")
	f.Add("12:pids:/\n0::/\n", "41 31 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "sealpost-cmd-1-2-probe")
	f.Add("0::/a/../b", "1 2 3:4 /a /x\\040y - - cgroup2\n", "sealpost-cmd--1-2-x")
	f.Fuzz(func(t *testing.T, cgroup, mountinfo, name string) {
		path, err := parseProcCgroup(cgroup)
		if err == nil && (!strings.HasPrefix(path, "/") || strings.Contains(path+"/", "/../") || !strings.Contains("\n"+cgroup+"\n", "\n0::"+path+"\n")) {
			t.Fatalf("parseProcCgroup(%q) = %q", cgroup, path)
		}
		mounts := parseCgroup2Mounts(mountinfo)
		if lines := strings.Count(mountinfo, "\n") + 1; len(mounts) > lines {
			t.Fatalf("parseCgroup2Mounts(%q) = %d mounts from %d lines", mountinfo, len(mounts), lines)
		}
		for _, m := range mounts {
			if !strings.HasPrefix(m.root, "/") || !strings.HasPrefix(m.dir, "/") {
				t.Fatalf("parseCgroup2Mounts(%q): %+v", mountinfo, m)
			}
		}
		if err == nil {
			if dir, ok := cgroupDir(mounts, path); ok && !strings.HasPrefix(dir, "/") {
				t.Fatalf("cgroupDir(%+v, %q) = %q", mounts, path, dir)
			}
		}
		if pid, start, ok := parseCgroupName(name); ok {
			random := name[strings.LastIndexByte(name, '-')+1:]
			if pid <= 0 || cgroupName(pid, start, random) != name {
				t.Fatalf("parseCgroupName(%q) = %d, %d: cgroupName gives %q", name, pid, start, cgroupName(pid, start, random))
			}
		}
	})
}
