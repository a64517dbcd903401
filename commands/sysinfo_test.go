package commands

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

func TestSysInfoHere(t *testing.T) {
	t.Parallel()
	si := collectSysInfo("v9.9.9")
	if si.OS != runtime.GOOS || si.Arch != runtime.GOARCH || si.NumCPU < 1 || si.Version != "v9.9.9" || si.GoVersion != runtime.Version() {
		t.Errorf("collectSysInfo() = %+v, want this runtime's OS, arch, CPUs and versions", si)
	}
	if err := validateSysInfo(&si); err != nil {
		t.Errorf("collectSysInfo() = %+v: %v", si, err)
	}
	if runtime.GOOS != "linux" {
		return
	}
	if si.Hostname == "" || si.Kernel == "" || si.Uptime <= 0 || si.MemTotal == 0 || si.MemAvailable > si.MemTotal || len(si.Disks) == 0 {
		t.Errorf("collectSysInfo() on Linux = %+v, want hostname, kernel, uptime, memory and at least one disk", si)
	}
	if len(si.Disks) > 0 && (si.Disks[0].Mount != "/" || si.Disks[0].Total == 0 || si.Disks[0].Free > si.Disks[0].Total) {
		t.Errorf("collectSysInfo() disks = %+v, want / first with a size", si.Disks)
	}
	t.Logf("\n%s", si)
}

func TestParseProc(t *testing.T) {
	t.Parallel()
	uptimes := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"350735.47 234388.90\n", 350735470 * time.Millisecond, true},
		{"0.00 0.00", 0, true},
		{"", 0, false},
		{"abc 1", 0, false},
		{"-5 1", 0, false},
		{"NaN 1", 0, false},
		{"1e300 1", 0, false},
	}
	for _, c := range uptimes {
		if got, ok := parseUptime(c.in); got != c.want || ok != c.ok {
			t.Errorf("parseUptime(%q) = %v, %v, want %v, %v", c.in, got, ok, c.want, c.ok)
		}
	}

	loads := []struct {
		in          string
		l1, l5, l15 float64
		ok          bool
	}{
		{"0.12 0.08 0.01 1/123 4567\n", 0.12, 0.08, 0.01, true},
		{"1 2", 0, 0, 0, false},
		{"1 x 3", 0, 0, 0, false},
		{"1 -2 3", 0, 0, 0, false},
		{"Inf 1 1", 0, 0, 0, false},
	}
	for _, c := range loads {
		l1, l5, l15, ok := parseLoadavg(c.in)
		if l1 != c.l1 || l5 != c.l5 || l15 != c.l15 || ok != c.ok {
			t.Errorf("parseLoadavg(%q) = %v %v %v %v, want %v %v %v %v", c.in, l1, l5, l15, ok, c.l1, c.l5, c.l15, c.ok)
		}
	}

	meminfo := "MemTotal:        8009012 kB\nMemFree:          123456 kB\nMemAvailable:    5347728 kB\nBuffers: x\nbogus line\n"
	if total, avail := parseMeminfo(meminfo); total != 8009012*1024 || avail != 5347728*1024 {
		t.Errorf("parseMeminfo(%q) = %d, %d, want %d, %d", meminfo, total, avail, uint64(8009012*1024), uint64(5347728*1024))
	}
	if total, avail := parseMeminfo("MemTotal: 99999999999999999999 kB\n"); total != 0 || avail != 0 {
		t.Errorf("parseMeminfo(overflow) = %d, %d, want 0, 0", total, avail)
	}

	mounts := "proc /proc proc rw 0 0\n" +
		"/dev/vda / ext4 rw 0 0\n" +
		"overlay /var/lib/docker/x overlay rw 0 0\n" +
		"tmpfs /run tmpfs rw 0 0\n" +
		"/dev/vdb1 /srv/my\\040data xfs rw 0 0\n" +
		"server:/export /mnt/nfs nfs4 rw 0 0\n" +
		"/dev/vdc /boot/efi vfat rw 0 0\n" +
		"short line\n" +
		"/dev/sdz relative ext4 rw 0 0\n" +
		"/dev/loop0 /snap/core/1 squashfs ro 0 0\n"
	got := diskCandidates(parseMounts(mounts))
	want := []string{"/", "/srv/my data", "/boot/efi"}
	if !slices.Equal(got, want) {
		t.Errorf("diskCandidates(%q) = %q, want %q", mounts, got, want)
	}
	for in, want := range map[string]string{`a\040b`: "a b", `a\011b\012c\134`: "a\tb\nc\\", `trail\04`: `trail\04`, `\999`: `\999`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
