package commands

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.txt (TestTextGolden)")

func TestTextGolden(t *testing.T) {
	started := time.Date(2026, 3, 1, 12, 0, 1, 500_000_000, time.UTC)
	cases := []struct {
		name string
		r    Result
	}{
		{"ping", Result{Duration: 1200 * time.Microsecond, Started: started}},
		{"exec", Result{ExitCode: 0, Stdout: []byte("Filesystem Size Used Avail Use% Mounted on\n/dev/vda 50G 12G 36G 25% /\n"),
			Duration: 34 * time.Millisecond, Started: started}},
		{"exec-failed", Result{ExitCode: 3, Stdout: []byte("partial line without newline"), StdoutTruncated: true,
			Stderr:   []byte("\x1b[31mred\x1b[0m\r\nbad byte \xff, tab\there, bell\a, bidi \u202e, nul \x00\n"),
			Duration: time.Second, Started: started}},
		{"timed-out", Result{ExitCode: -1, TimedOut: true, Error: "timed out after 200ms; the process group was killed",
			Duration: 201 * time.Millisecond, Started: started}},
		{"denied", Result{ExitCode: -1, Error: "commands: denied: program \"sh\x1b[2J\" matches no program allowed for this peer"}},
		{"sysinfo", Result{Duration: 5 * time.Millisecond, Started: started, Info: &SysInfo{
			Hostname: "web1", OS: "linux", Kernel: "6.1.0-13-amd64", Arch: "amd64", Uptime: 77*time.Hour + 5*time.Minute + 9*time.Second,
			Load1: 0.12, Load5: 0.08, Load15: 0.01, MemTotal: 8201187328, MemAvailable: 5476083712,
			Disks:  []Disk{{"/", 52576092160, 38654705664}, {"/srv/data", 1 << 40, 1 << 39}},
			NumCPU: 4, Version: "v0.1.0", GoVersion: "go1.26.8"}}},
		{"signaled", Result{Outcome: OutcomeSignaled, ExitCode: -1, Signal: 9, Error: "killed by signal 9 (killed)",
			Duration: 3 * time.Millisecond, Started: started}},
		{"not-found", Result{Outcome: OutcomeNotFound, ExitCode: -1, Error: "program not found: /usr/local/bin/backup", Started: started}},
		{"exited", Result{Outcome: OutcomeExited, ExitCode: 3, Stderr: []byte("no such table\n"), Duration: time.Second, Started: started}},
		{"sysinfo-minimal", Result{Info: &SysInfo{OS: "plan9", Arch: "386", NumCPU: 1, Uptime: 42 * time.Second}}},
	}
	for _, c := range cases {
		got := c.r.Text()
		path := filepath.Join("testdata", "golden", c.name+".txt")
		if *update {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./commands/ -run TestTextGolden -update)", err)
		}
		if got != string(want) {
			t.Errorf("%s: Text() =\n%s\nwant\n%s", c.name, got, want)
		}
		for _, r := range got {
			if r < ' ' && r != '\n' && r != '\t' || r == 0x7f || r == '\u202e' {
				t.Errorf("%s: Text() holds control character %U", c.name, r)
			}
		}
	}
}

func TestHumanUnits(t *testing.T) {
	t.Parallel()
	for in, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 1 << 30: "1.0 GiB", 1<<64 - 1: "16.0 EiB"} {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{42 * time.Second: "42s", 5 * time.Minute: "5m", 61 * time.Minute: "1h 1m", 49 * time.Hour: "2d 1h 0m"} {
		if got := humanDuration(in); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", in, got, want)
		}
	}
	if got := printable([]byte("a\nb"), false); strings.Contains(got, "\n") {
		t.Errorf("printable(%q, single line) = %q, want the newline escaped", "a\nb", got)
	}
}
