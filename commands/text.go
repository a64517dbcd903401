package commands

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Text renders r for people, as the CLI shows a stored result: a header of what happened (the
// outcome's token when the agent sent one, with the signal's number), then stdout and stderr,
// then the sysinfo report if any. Remote output is shown as text with
// control characters (but newline and tab) and invalid UTF-8 escaped as \xNN or \u{...}, so
// printing Text on a terminal is safe; the raw bytes stay in Stdout and Stderr.
func (r Result) Text() string {
	var b strings.Builder
	switch {
	case r.Outcome == OutcomeUnknown: // an older agent's result: the lines below say what it sent
	case r.Signal != 0:
		fmt.Fprintf(&b, "outcome:   %v (signal %d)\n", r.Outcome, r.Signal)
	default:
		fmt.Fprintf(&b, "outcome:   %v\n", r.Outcome)
	}
	fmt.Fprintf(&b, "exit code: %d\n", r.ExitCode)
	fmt.Fprintf(&b, "duration:  %v\n", r.Duration)
	if !r.Started.IsZero() {
		fmt.Fprintf(&b, "started:   %s\n", r.Started.UTC().Format(time.RFC3339Nano))
	}
	if r.TimedOut {
		b.WriteString("timed out: yes\n")
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "error:     %s\n", printable([]byte(r.Error), false))
	}
	stream(&b, "stdout", r.Stdout, r.StdoutTruncated)
	stream(&b, "stderr", r.Stderr, r.StderrTruncated)
	if r.Info != nil {
		b.WriteString(r.Info.String())
	}
	return b.String()
}

func stream(b *strings.Builder, name string, data []byte, truncated bool) {
	if len(data) == 0 && !truncated {
		return
	}
	if truncated {
		fmt.Fprintf(b, "--- %s (truncated after %d bytes) ---\n", name, len(data))
	} else {
		fmt.Fprintf(b, "--- %s ---\n", name)
	}
	s := printable(data, true)
	b.WriteString(s)
	if !strings.HasSuffix(s, "\n") {
		b.WriteString("\n")
	}
}

// String renders the host facts one per line, leaving out what is unknown.
func (si SysInfo) String() string {
	var b strings.Builder
	line := func(label, format string, args ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", label+":", fmt.Sprintf(format, args...))
	}
	if si.Hostname != "" {
		line("hostname", "%s", printable([]byte(si.Hostname), false))
	}
	if si.OS != "" || si.Arch != "" {
		sys := printable([]byte(si.OS+"/"+si.Arch), false)
		if si.Kernel != "" {
			sys += ", kernel " + printable([]byte(si.Kernel), false)
		}
		line("system", "%s", sys)
	}
	if si.NumCPU > 0 {
		line("cpus", "%d", si.NumCPU)
	}
	if si.Uptime > 0 {
		line("uptime", "%s", humanDuration(si.Uptime))
	}
	if si.Load1 > 0 || si.Load5 > 0 || si.Load15 > 0 {
		line("load", "%.2f %.2f %.2f", si.Load1, si.Load5, si.Load15)
	}
	if si.MemTotal > 0 {
		line("memory", "%s available of %s", humanBytes(si.MemAvailable), humanBytes(si.MemTotal))
	}
	for _, d := range si.Disks {
		line("disk", "%s: %s free of %s", printable([]byte(d.Mount), false), humanBytes(d.Free), humanBytes(d.Total))
	}
	if si.Version != "" || si.GoVersion != "" {
		v := printable([]byte(si.Version), false)
		if v == "" {
			v = "unknown version"
		}
		if si.GoVersion != "" {
			v += " (" + printable([]byte(si.GoVersion), false) + ")"
		}
		line("sealpost", "%s", v)
	}
	return b.String()
}

// humanDuration renders an uptime as "3d 4h 5m", or "42s" under a minute.
func humanDuration(d time.Duration) string {
	if d < time.Minute {
		return d.Truncate(time.Second).String()
	}
	days := d / (24 * time.Hour)
	d -= days * 24 * time.Hour
	hours := d / time.Hour
	d -= hours * time.Hour
	mins := d / time.Minute
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh %dm", days, hours, mins)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	}
	return fmt.Sprintf("%dm", mins)
}

// humanBytes renders n in binary units with one decimal: "7.8 GiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// printable returns b as text safe for a terminal: invalid UTF-8 bytes become \xNN, control
// characters \u{NN} (newline and tab kept when multiline, else escaped too), and a backslash
// stays a backslash.
func printable(b []byte, multiline bool) string {
	var s strings.Builder
	s.Grow(len(b))
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&s, `\x%02x`, b[0])
		case multiline && (r == '\n' || r == '\t'):
			s.WriteRune(r)
		case unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || unicode.Is(unicode.Bidi_Control, r):
			fmt.Fprintf(&s, `\u{%x}`, r)
		default:
			s.Write(b[:n])
		}
		b = b[n:]
	}
	return s.String()
}
