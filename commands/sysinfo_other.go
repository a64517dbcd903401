//go:build !linux

package commands

// platformInfo: outside Linux, sysinfo reports only what the Go runtime knows (hostname, OS,
// architecture, CPU count, versions); the other fields stay zero.
func platformInfo(*SysInfo) {}
