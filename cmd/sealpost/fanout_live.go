package main

import (
	"fmt"
	"io"
	"strings"
)

// liveTable draws a block of lines on the terminal (stderr) and redraws it in place: the
// fan-out's live table. It goes through the console, under its lock, so that a write to stdout
// or stderr meanwhile (a log line) takes the block's last line away first, as it does for the
// one-line progress; the lines above it then stay on the screen, above what was written, and
// the next draw starts below.
type liveTable struct {
	c     *console
	lines int // lines of the block on screen, when c.shown
}

// eraseLocked takes the block off the screen: up to its first line, then erase to the end of
// the screen. The caller holds c.mu.
func (t *liveTable) eraseLocked() {
	if !t.c.shown {
		return
	}
	s := "\r"
	if t.lines > 1 {
		s += fmt.Sprintf("\033[%dA", t.lines-1)
	}
	io.WriteString(t.c.term, s+"\033[J")
	t.c.shown = false
}

// draw replaces the block on screen with s (lines, without a newline at the end).
func (t *liveTable) draw(s string) {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.eraseLocked()
	io.WriteString(t.c.term, s)
	t.c.shown, t.lines = true, strings.Count(s, "\n")+1
}

// clear takes the block off the screen, if it is there.
func (t *liveTable) clear() {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.eraseLocked()
}
