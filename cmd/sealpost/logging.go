package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/sealpost/sealpost/node"
)

// logFormat is --log-format: how log records are written to stderr. text is slog's key=value
// lines, for people and journald; json is one JSON object a line, for Loki and other collectors.
type logFormat string

const (
	logText logFormat = "text"
	logJSON logFormat = "json"
)

func (f *logFormat) String() string { return string(*f) }

func (f *logFormat) Set(s string) error {
	switch logFormat(s) {
	case logText, logJSON:
		*f = logFormat(s)
		return nil
	}
	return fmt.Errorf("want text or json, not %q", s)
}

// newLogHandler writes every record (the level is filtered by minLevel) to w in format f, with
// the text of each value escaped by node.Printable: values may quote what a mail said, and a log is
// read on terminals (THREATS row 41).
func newLogHandler(w io.Writer, f logFormat) slog.Handler {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: escapeAttr}
	if f == logJSON {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}

// escapeAttr makes the message and every value that prints as text safe for a terminal: strings,
// errors and Stringers pass through node.Printable; numbers, times and durations cannot hold control
// characters. slog resolves LogValuers (secrets redacting themselves) before this sees them.
func escapeAttr(_ []string, a slog.Attr) slog.Attr {
	switch v := a.Value; v.Kind() {
	case slog.KindString:
		if s := v.String(); node.Printable(s) != s {
			a.Value = slog.StringValue(node.Printable(s))
		}
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			a.Value = slog.StringValue(node.Printable(x.Error()))
		case fmt.Stringer:
			a.Value = slog.StringValue(node.Printable(x.String()))
		case []byte:
			a.Value = slog.StringValue(node.Printable(string(x)))
		}
	}
	return a
}

// minLevel passes on the records of at least its level to a handler shared with other loggers,
// so that the node's logger (warnings unless -v) and the agent's start and stop lines (always)
// write through one handler, whole line by whole line.
type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{m.h.WithAttrs(as), m.min}
}
func (m minLevel) WithGroup(name string) slog.Handler { return minLevel{m.h.WithGroup(name), m.min} }
