package commands

import (
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
)

// maxDisksReported is how many disks sysinfo lists (the wire allows MaxDisks).
const maxDisksReported = 16

func platformInfo(si *SysInfo) {
	si.Kernel = strings.TrimSpace(readProc("/proc/sys/kernel/osrelease"))
	si.Uptime, _ = parseUptime(readProc("/proc/uptime"))
	si.Load1, si.Load5, si.Load15, _ = parseLoadavg(readProc("/proc/loadavg"))
	si.MemTotal, si.MemAvailable = parseMeminfo(readProc("/proc/meminfo"))
	si.Disks = disks(parseMounts(readProc("/proc/self/mounts")))
}

// readProc reads a /proc file, at most 1 MiB of it; "" when it cannot.
func readProc(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b)
}

// disks statfs's the candidate mounts, one entry per device.
func disks(mounts []mountEntry) []Disk {
	var out []Disk
	var devs []uint64
	for _, dir := range diskCandidates(mounts) {
		if len(out) == maxDisksReported {
			break
		}
		var st syscall.Stat_t
		var fs syscall.Statfs_t
		if syscall.Stat(dir, &st) != nil || syscall.Statfs(dir, &fs) != nil || fs.Blocks == 0 {
			continue
		}
		dev := uint64(st.Dev)
		if slices.Contains(devs, dev) {
			continue
		}
		devs = append(devs, dev)
		unit := uint64(fs.Frsize)
		if unit == 0 {
			unit = uint64(fs.Bsize)
		}
		out = append(out, Disk{Mount: dir, Total: fs.Blocks * unit, Free: fs.Bavail * unit})
	}
	return out
}
