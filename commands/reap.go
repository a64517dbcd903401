package commands

import (
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// ReapMode says how exec finds every process a program started, to end them all when the
// command ends (it exits, times out or is cancelled). See the package documentation, section
// "Descendants", for what each mechanism guarantees.
type ReapMode int

const (
	// ReapAuto, the zero value: a cgroup per command where the system offers a writable cgroup
	// v2 hierarchy (Linux), the process tree otherwise.
	ReapAuto ReapMode = iota
	// ReapCgroup: a cgroup per command, or the command does not run (its Result says why).
	ReapCgroup
	// ReapProcTree: never cgroups; on Linux the agent becomes a child subreaper and follows the
	// process tree through /proc. Elsewhere only the program's process group is known.
	ReapProcTree
)

func (m ReapMode) String() string {
	switch m {
	case ReapAuto:
		return "auto"
	case ReapCgroup:
		return "cgroup"
	case ReapProcTree:
		return "process tree"
	}
	return "ReapMode(" + strconv.Itoa(int(m)) + ")"
}

// procGroup is one running program and every process it started. startGroup (one per
// platform) starts the program and sets exec.Cmd's Cancel to kill them all at once.
type procGroup interface {
	// end runs once the program itself was waited for: it ends whatever it left behind, reaps
	// what is ours to reap and releases what the group held. It returns how many processes it
	// had to kill, as far as it knows.
	end() int
}

// reapWait bounds how long end keeps killing a group that keeps forking, or waits for killed
// processes to go; past it the group is given up and logged.
const reapWait = 10 * time.Second

// drain copies one of the program's output pipes into a buffer until EOF.
type drain struct {
	f    *os.File
	done chan struct{}
}

func startDrain(f *os.File, w io.Writer) *drain {
	d := &drain{f: f, done: make(chan struct{})}
	go func() {
		defer close(d.done)
		io.Copy(w, f)
	}()
	return d
}

// finishDrains waits for every drain to reach EOF, at most delay, then closes the read ends.
// It reports whether it had to stop reading early because a process still held a write end.
func finishDrains(delay time.Duration, ds ...*drain) (abandoned bool) {
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for _, d := range ds {
		select {
		case <-d.done:
		case <-timer.C:
			abandoned = true
		}
		if abandoned {
			break
		}
	}
	for _, d := range ds {
		d.f.Close() // ends a Read still blocked on a pipe a stray process holds
	}
	return abandoned
}

// lockedWriter serializes writes to a cappedBuffer with reading it: after finishDrains gave up
// on a pipe, its copy may still be running while Run reads the buffer.
type lockedWriter struct {
	mu     sync.Mutex
	buf    *cappedBuffer
	sealed bool
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sealed {
		return len(p), nil
	}
	return w.buf.Write(p)
}

// seal stops further writes and returns the buffer, now safe to read.
func (w *lockedWriter) seal() *cappedBuffer {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sealed = true
	return w.buf
}
