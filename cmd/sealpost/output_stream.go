package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sealpost/sealpost/node"
)

// A command's output larger than fits in one answer comes back as a stream of chunks
// (docs/PROTOCOL.md section 20), which the node joins in its spool files as they arrive. While
// `run --wait` waits, outputCopier copies what is there from the start to stdout and stderr (or
// stdout to --output FILE), so a long output shows as it comes and is never held in memory.

// streamPoll is how often run --wait looks for more of a streamed output.
var streamPoll = 250 * time.Millisecond

type outputCopier struct {
	stdout, stderr io.Writer
	copied         [2]int64
	buf            []byte
}

func newOutputCopier(stdout, stderr io.Writer) *outputCopier {
	return &outputCopier{stdout: stdout, stderr: stderr, buf: make([]byte, 256<<10)}
}

// copy writes what r's spool files hold beyond what was copied, up to the sizes r names (the
// contiguous prefix while it is still coming).
func (c *outputCopier) copy(r node.Result) error {
	if !r.Streamed {
		return nil
	}
	for i, p := range []struct {
		path string
		size int64
		w    io.Writer
	}{{r.StdoutPath, r.StdoutSize, c.stdout}, {r.StderrPath, r.StderrSize, c.stderr}} {
		if p.size <= c.copied[i] {
			continue
		}
		f, err := os.Open(p.path)
		if err != nil {
			return fmt.Errorf("read the streamed output: %w", err)
		}
		n, err := io.CopyBuffer(p.w, io.NewSectionReader(f, c.copied[i], p.size-c.copied[i]), c.buf)
		f.Close()
		c.copied[i] += n
		if err != nil {
			return fmt.Errorf("copy the streamed output: %w", err)
		}
	}
	return nil
}

// follow copies id's output as it arrives until ctx ends.
func (c *outputCopier) follow(ctx context.Context, api node.API, id node.CommandID) error {
	t := time.NewTicker(streamPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rs, err := api.ResultsOf(ctx, []node.CommandID{id})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if len(rs) == 1 {
			if err := c.copy(rs[0]); err != nil {
				return err
			}
		}
	}
}

// openOutput opens --output FILE: written under a temporary name beside it and renamed when the
// output is whole, so a half-written file never stands under the name.
func openOutput(path string) (*os.File, func(ok bool) error, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".sealpost-output-*")
	if err != nil {
		return nil, nil, fmt.Errorf("--output: %w", err)
	}
	finish := func(ok bool) error {
		if !ok {
			f.Close()
			os.Remove(f.Name())
			return nil
		}
		err := errors.Join(f.Sync(), f.Close())
		if err == nil {
			err = os.Rename(f.Name(), path)
		}
		if err != nil {
			os.Remove(f.Name())
			return fmt.Errorf("--output %s: %w", path, err)
		}
		return nil
	}
	return f, finish, nil
}
