package commands

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// collectSysInfo gathers what the platform offers; platformInfo (per OS) fills in the rest.
// Nothing here fails: a fact that cannot be read stays zero. Every string is made to fit the
// Result limits, so a sysinfo Result always encodes.
func collectSysInfo(version string) SysInfo {
	si := SysInfo{
		OS:        runtime.GOOS,
		Arch:      runtime.GOARCH,
		NumCPU:    runtime.NumCPU(),
		Version:   version,
		GoVersion: runtime.Version(),
	}
	si.Hostname, _ = os.Hostname()
	platformInfo(&si)
	for _, s := range []*string{&si.Hostname, &si.OS, &si.Kernel, &si.Arch, &si.Version, &si.GoVersion} {
		*s = clip(*s, MaxInfoString)
	}
	return si
}

// The parsers below read the Linux /proc formats. They live here, not in the Linux file, so
// that their tests run everywhere.

// parseUptime reads /proc/uptime: "seconds-up seconds-idle".
func parseUptime(s string) (time.Duration, bool) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, false
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil || !(secs >= 0) || secs > 1e9 {
		return 0, false
	}
	return time.Duration(secs * float64(time.Second)).Round(10 * time.Millisecond), true
}

// parseLoadavg reads /proc/loadavg: "0.12 0.08 0.01 1/123 4567".
func parseLoadavg(s string) (l1, l5, l15 float64, ok bool) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return 0, 0, 0, false
	}
	var v [3]float64
	for i := range v {
		x, err := strconv.ParseFloat(f[i], 64)
		if err != nil || !(x >= 0) || x > 1e9 {
			return 0, 0, 0, false
		}
		v[i] = x
	}
	return v[0], v[1], v[2], true
}

// parseMeminfo reads MemTotal and MemAvailable (in kB) from /proc/meminfo and returns bytes.
func parseMeminfo(s string) (total, avail uint64) {
	for line := range strings.Lines(s) {
		key, rest, ok := strings.Cut(line, ":")
		if !ok || key != "MemTotal" && key != "MemAvailable" {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil || n > 1<<53 {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n *= 1024
		}
		if key == "MemTotal" {
			total = n
		} else {
			avail = n
		}
	}
	return total, avail
}

// mountEntry is one line of /proc/self/mounts.
type mountEntry struct {
	source, dir, fstype string
}

// parseMounts reads /proc/self/mounts (fstab format, with octal escapes for space, tab,
// newline and backslash in the first two fields).
func parseMounts(s string) []mountEntry {
	var out []mountEntry
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		out = append(out, mountEntry{source: unescapeMount(f[0]), dir: unescapeMount(f[1]), fstype: f[2]})
	}
	return out
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// localFS are the file system types sysinfo reports: local, on-disk ones. Pseudo file systems
// (proc, sysfs, tmpfs, cgroup, overlay, squashfs, ...) say nothing about disk space, and
// network ones (nfs, cifs, ...) are left out because statfs on a dead server blocks.
// "/" is always reported, whatever its type.
var localFS = map[string]bool{
	"ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true, "zfs": true,
	"f2fs": true, "jfs": true, "reiserfs": true, "bcachefs": true, "nilfs2": true,
	"vfat": true, "exfat": true, "ntfs": true, "ntfs3": true, "hfsplus": true, "fuseblk": true,
}

// diskCandidates picks the mounts sysinfo reports, "/" first, in mount order otherwise; the
// caller still drops duplicates of one device.
func diskCandidates(mounts []mountEntry) []string {
	out := []string{"/"}
	for _, m := range mounts {
		if m.dir == "/" || !localFS[m.fstype] || !strings.HasPrefix(m.dir, "/") ||
			len(m.dir) > MaxMountBytes || !utf8.ValidString(m.dir) {
			continue
		}
		out = append(out, m.dir)
	}
	return out
}
