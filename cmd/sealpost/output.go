package main

import (
	"encoding/json"
	"io"
	"os"
	"sync"
)

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// isTerminal reports whether f is a character device (a terminal), for progress output.
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// console draws a transient progress line on the terminal (stderr) and keeps it from mixing
// with output: every write to stdout or stderr goes through one of its writers, which clears a
// line on show first, under one lock, so no write lands in the middle of it. Only made when
// stderr is a terminal; on a pipe or file nothing is drawn.
type console struct {
	mu    sync.Mutex
	term  io.Writer // where the progress line is drawn: the terminal on stderr
	shown bool      // a progress line is on screen
}

// clearLine is carriage return and "erase to the end of the line".
const clearLine = "\r\033[K"

// writer returns w wrapped so that writing to it first takes the progress line away.
func (c *console) writer(w io.Writer) io.Writer { return consoleWriter{c, w} }

// show draws s as the progress line, replacing the one on screen.
func (c *console) show(s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.term, clearLine+s)
	c.shown = true
}

// clear takes the progress line away, if one is on screen.
func (c *console) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
}

func (c *console) clearLocked() {
	if c.shown {
		io.WriteString(c.term, clearLine)
		c.shown = false
	}
}

type consoleWriter struct {
	c *console
	w io.Writer
}

func (cw consoleWriter) Write(p []byte) (int, error) {
	cw.c.mu.Lock()
	defer cw.c.mu.Unlock()
	cw.c.clearLocked()
	return cw.w.Write(p)
}
