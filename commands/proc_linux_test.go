package commands

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) state ...": comm may hold spaces and parentheses; the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// killGroupOf kills the process group pid belongs to, unless it is the test's own.
func killGroupOf(pid int) {
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid > 1 && pgid != syscall.Getpgrp() {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// The process tree's first use (a cgroup command whose program could not start there falls back
// to it) and a cgroup command's start at the same time touch the tree's maps only under its
// lock. Run with -race, which reported the two unordered writes before.
func TestTreeInitWhileStartRoot(t *testing.T) {
	t.Parallel()
	exe, hp := helper(t, "exit")
	var tr treeReaper // fresh: its init has not run
	var wg sync.WaitGroup
	wg.Go(func() {
		cmd := exec.Command(exe, "0")
		cmd.Env = hp.Env
		done, err := tr.startRoot(cmd)
		if err != nil {
			t.Errorf("startRoot(%s) = %v", exe, err)
			return
		}
		cmd.Wait()
		done()
	})
	wg.Go(tr.init)
	wg.Wait()
}
