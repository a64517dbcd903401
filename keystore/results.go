package keystore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Result is the outcome of one command as the controller records it, from
// the moment it is issued to its final answer, with the resend bookkeeping
// of a command in flight (Attempts, LastAttempt). Its output may hold
// anything the command printed, so LogValue shows sizes only.
//
// Outcome is a short lowercase token (letters, digits, '-'; e.g. "exited",
// "signaled", "timed-out") whose set node and commands define; keystore only
// stores it.
//
// Layout:
//
//	results          cmd id (16)              -> JSON (without the output)
//	results_by_sent  T(sent) || cmd id        -> ""
//	result_output    cmd id (16) || stream (1) -> the output, raw (stream 1 stdout, 2 stderr;
//	                                             no row for an empty stream)
//
// The output lives apart from the record so that a walk over the records (a
// listing, a status, a prune) never reads it: a history of commands that each
// printed a megabyte costs a few hundred bytes a result to list, and one
// result's output is read only when that result is asked for. A record written
// before schema 4 may hold its output inline (JSON stdout, stderr); it reads
// the same, and the output moves to result_output when the result is put again.
type Result struct {
	CommandID [16]byte
	Peer      string
	Command   []string
	// Request is the request's name (ping, sysinfo, exec, report, report-every): what kind of
	// command it was, which the command line does not say (a program may be called ping).
	// Empty in results recorded before it was kept.
	Request         string
	Status          string
	Outcome         string
	ExitCode        int
	Signal          int
	Error           string
	Stdout          []byte
	Stderr          []byte
	StdoutTruncated bool
	StderrTruncated bool
	Sent            time.Time
	Started         time.Time // when the peer started running it
	Duration        time.Duration
	Finished        time.Time // zero until the result is final
	Attempts        int       // transmissions of the command so far
	LastAttempt     time.Time // the latest of them
	// Streamed: the output came as a stream (docs/PROTOCOL.md section 20) and lives in spool
	// files, not in Stdout and Stderr; StdoutSize and StderrSize are its sizes.
	Streamed               bool
	StdoutSize, StderrSize int64
}

type resultRecord struct {
	CommandID       string        `json:"command_id"` // hex
	Peer            string        `json:"peer"`
	Command         []string      `json:"command,omitempty"`
	Request         string        `json:"request,omitempty"`
	Status          string        `json:"status"`
	Outcome         string        `json:"outcome,omitempty"`
	ExitCode        int           `json:"exit_code"`
	Signal          int           `json:"signal,omitempty"`
	Error           string        `json:"error,omitempty"`
	Stdout          []byte        `json:"stdout,omitempty"`
	Stderr          []byte        `json:"stderr,omitempty"`
	StdoutTruncated bool          `json:"stdout_truncated,omitempty"`
	StderrTruncated bool          `json:"stderr_truncated,omitempty"`
	Sent            time.Time     `json:"sent"`
	Started         time.Time     `json:"started,omitzero"`
	Duration        time.Duration `json:"duration,omitempty"` // nanoseconds
	Finished        time.Time     `json:"finished,omitzero"`
	Attempts        int           `json:"attempts,omitempty"`
	LastAttempt     time.Time     `json:"last_attempt,omitzero"`
	Streamed        bool          `json:"streamed,omitempty"`
	StdoutSize      int64         `json:"stdout_size,omitempty"`
	StderrSize      int64         `json:"stderr_size,omitempty"`
}

const (
	maxOutcomeLen   = 32
	resultIndexLen  = timeKeyLen + 16
	maxHexPrefixLen = 32
)

// LogValue shows ids, status and output sizes, never the output itself.
func (r Result) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("cmd_id", id16(r.CommandID)),
		slog.String("peer", r.Peer),
		slog.String("status", r.Status),
		slog.String("outcome", r.Outcome),
		slog.Int("exit_code", r.ExitCode),
		slog.Int("stdout_bytes", len(r.Stdout)),
		slog.Int("stderr_bytes", len(r.Stderr)),
		slog.Int("attempts", r.Attempts),
	)
}

func (r Result) validate() error {
	if err := checkID("command", r.CommandID); err != nil {
		return err
	}
	if err := checkText("result peer", r.Peer, maxAddressLen, false); err != nil {
		return err
	}
	if err := checkText("result status", r.Status, maxNameLen, false); err != nil {
		return err
	}
	if err := checkToken("result outcome", r.Outcome); err != nil {
		return err
	}
	if err := checkToken("result request", r.Request); err != nil {
		return err
	}
	switch {
	case r.Signal < 0:
		return invalidf("result signal %d", r.Signal)
	case r.Duration < 0:
		return invalidf("result duration %v", r.Duration)
	case r.Attempts < 0:
		return invalidf("result attempts %d", r.Attempts)
	}
	for _, t := range []struct {
		what string
		t    time.Time
	}{{"sent", r.Sent}, {"started", r.Started}, {"finished", r.Finished}, {"last attempt", r.LastAttempt}} {
		if err := jsonTime("result "+t.what, t.t); err != nil {
			return err
		}
	}
	return nil
}

// checkToken accepts "" or a short token of lowercase letters, digits and '-'.
func checkToken(kind, s string) error {
	if len(s) > maxOutcomeLen {
		return invalidf("%s is %d bytes, limit %d", kind, len(s), maxOutcomeLen)
	}
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return invalidf("%s %q is not a lowercase token", kind, s)
		}
	}
	return nil
}

func (r Result) record() resultRecord {
	return resultRecord{hex.EncodeToString(r.CommandID[:]), r.Peer, r.Command, r.Request, r.Status, r.Outcome, r.ExitCode, r.Signal,
		r.Error, r.Stdout, r.Stderr, r.StdoutTruncated, r.StderrTruncated, r.Sent.UTC(), r.Started.UTC(), r.Duration,
		r.Finished.UTC(), r.Attempts, r.LastAttempt.UTC(), r.Streamed, r.StdoutSize, r.StderrSize}
}

// indexKey is the result's row in results_by_sent.
func (r Result) indexKey() []byte {
	k := make([]byte, resultIndexLen)
	putTimeKey(k, r.Sent)
	copy(k[timeKeyLen:], r.CommandID[:])
	return k
}

func decodeResult(k, v []byte) (Result, error) {
	var rec resultRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return Result{}, corruptf("result %x: %v", k, err)
	}
	if len(k) != 16 {
		return Result{}, corruptf("result key %x is %d bytes", k, len(k))
	}
	id, err := hex.DecodeString(rec.CommandID)
	if err != nil || !bytes.Equal(id, k) {
		return Result{}, corruptf("result under key %x says command %q", k, rec.CommandID)
	}
	what := fmt.Sprintf("result %x", k)
	if err := errors.Join(storedTime(what, "sent", rec.Sent), storedTime(what, "started", rec.Started),
		storedTime(what, "finished", rec.Finished), storedTime(what, "last_attempt", rec.LastAttempt)); err != nil {
		return Result{}, err
	}
	if err := errors.Join(checkToken("result outcome", rec.Outcome), checkToken("result request", rec.Request)); err != nil || rec.Signal < 0 || rec.Duration < 0 || rec.Attempts < 0 {
		return Result{}, corruptf("%s: outcome %q, signal %d, duration %d, attempts %d", what, rec.Outcome, rec.Signal, rec.Duration, rec.Attempts)
	}
	r := Result{Peer: rec.Peer, Command: rec.Command, Request: rec.Request, Status: rec.Status, Outcome: rec.Outcome, ExitCode: rec.ExitCode,
		Signal: rec.Signal, Error: rec.Error, Stdout: rec.Stdout, Stderr: rec.Stderr, StdoutTruncated: rec.StdoutTruncated,
		Streamed: rec.Streamed, StdoutSize: rec.StdoutSize, StderrSize: rec.StderrSize,
		StderrTruncated: rec.StderrTruncated, Sent: rec.Sent, Started: rec.Started, Duration: rec.Duration,
		Finished: rec.Finished, Attempts: rec.Attempts, LastAttempt: rec.LastAttempt}
	copy(r.CommandID[:], id)
	return r, nil
}

// Output streams, the last byte of a result_output key.
const (
	streamStdout = 1
	streamStderr = 2
)

func outputKey(id []byte, stream byte) []byte {
	return append(clone(id), stream)
}

// result reads one result; with output, its output too, else none.
func (tx *Tx) result(id []byte, output bool) (Result, bool, error) {
	v := tx.bucket(bResults).Get(id)
	if v == nil {
		return Result{}, false, nil
	}
	r, err := decodeResult(id, v)
	if err != nil {
		return Result{}, false, err
	}
	if output {
		tx.readOutput(&r)
	} else {
		r.Stdout, r.Stderr = nil, nil // an inline (schema 3) output, dropped
	}
	return r, true, nil
}

// readOutput fills r's output from result_output, unless the record held it inline.
func (tx *Tx) readOutput(r *Result) {
	if r.Stdout != nil || r.Stderr != nil {
		return
	}
	out := tx.bucket(bResultOutput)
	if v := out.Get(outputKey(r.CommandID[:], streamStdout)); v != nil {
		r.Stdout = clone(v)
	}
	if v := out.Get(outputKey(r.CommandID[:], streamStderr)); v != nil {
		r.Stderr = clone(v)
	}
}

// putOutput stores r's output in result_output, a row for each stream that is not empty, and
// deletes the row of an empty one.
func (tx *Tx) putOutput(r Result) error {
	out := tx.bucket(bResultOutput)
	for _, s := range []struct {
		stream byte
		data   []byte
	}{{streamStdout, r.Stdout}, {streamStderr, r.Stderr}} {
		k := outputKey(r.CommandID[:], s.stream)
		var err error
		if len(s.data) == 0 {
			err = out.Delete(k)
		} else {
			err = out.Put(k, clone(s.data))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Result returns the result of command cmd.
func (tx *Tx) Result(cmd [16]byte) (Result, bool, error) {
	if err := checkID("command", cmd); err != nil {
		return Result{}, false, err
	}
	return tx.result(cmd[:], true)
}

// ResultOutput returns the output of command cmd's result: what Result returns in Stdout and
// Stderr, read alone. ok is false when there is no such result.
func (tx *Tx) ResultOutput(cmd [16]byte) (stdout, stderr []byte, ok bool, err error) {
	r, ok, err := tx.Result(cmd)
	return r.Stdout, r.Stderr, ok, err
}

// PutResult stores or replaces the result for r.CommandID (a result moves
// from "sent" to its final status by being put again), keeping its row in
// results_by_sent.
func (tx *Tx) PutResult(r Result) error {
	if err := r.validate(); err != nil {
		return err
	}
	old, ok, err := tx.result(r.CommandID[:], false)
	if err != nil {
		return err
	}
	if ok && !old.Sent.Equal(r.Sent) {
		if err := tx.bucket(bResultsBySent).Delete(old.indexKey()); err != nil {
			return err
		}
	}
	rec := r.record()
	rec.Stdout, rec.Stderr = nil, nil // in result_output
	if err := putJSON(tx.bucket(bResults), clone(r.CommandID[:]), rec); err != nil {
		return err
	}
	if err := tx.putOutput(r); err != nil {
		return err
	}
	if err := tx.bucket(bResultsBySent).Put(r.indexKey(), []byte{}); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_result", slog.Any("cmd_id", id16(r.CommandID)), slog.String("status", r.Status))
	}
	return nil
}

// deleteResult removes a result and its index row.
func (tx *Tx) deleteResult(r Result) error {
	if err := tx.bucket(bResults).Delete(r.CommandID[:]); err != nil {
		return err
	}
	if err := tx.putOutput(Result{CommandID: r.CommandID}); err != nil { // deletes both rows
		return err
	}
	return tx.bucket(bResultsBySent).Delete(r.indexKey())
}

// Results lists every result ordered by Sent, then command id, walking
// results_by_sent.
func (tx *Tx) Results() ([]Result, error) {
	var out []Result
	c := tx.bucket(bResultsBySent).Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		r, err := tx.indexedResult(k, true)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// ResultSummaries calls fn with each result sent after the one cursor names (nil: from the
// first), in Results' order, without its output (Stdout and Stderr nil: ResultOutput reads
// it), until fn returns false or an error, which it returns. cursor, given to fn with each
// result, names that result: a caller that stops may go on later, in another transaction,
// from where it stopped, so that a long listing need not hold one transaction open. It reads
// the records only, never an output, so a walk over a history of large outputs costs the
// records.
func (tx *Tx) ResultSummaries(after []byte, fn func(r Result, cursor []byte) (more bool, err error)) error {
	c := tx.bucket(bResultsBySent).Cursor()
	k, _ := c.First()
	if after != nil {
		if k, _ = c.Seek(after); k != nil && bytes.Equal(k, after) {
			k, _ = c.Next()
		}
	}
	for ; k != nil; k, _ = c.Next() {
		r, err := tx.indexedResult(k, false)
		if err != nil {
			return err
		}
		if more, err := fn(r, clone(k)); err != nil || !more {
			return err
		}
	}
	return nil
}

func (tx *Tx) indexedResult(k []byte, output bool) (Result, error) {
	if len(k) != resultIndexLen {
		return Result{}, corruptf("results_by_sent key %x is %d bytes", k, len(k))
	}
	r, ok, err := tx.result(k[timeKeyLen:], output)
	if err == nil && !ok {
		err = corruptf("results_by_sent names missing result %x", k[timeKeyLen:])
	}
	return r, err
}

// PruneResults deletes finished results: those sent before the cutoff whose
// Finished is set and also before it; at most limit of them (limit <= 0: no
// limit), oldest first. keystore does not know which statuses are final; a
// result is final to it once Finished is set, which the caller does when it
// records the final answer. A result still in flight, however old, stays. It
// walks results_by_sent from the oldest and stops at the cutoff, so its cost
// is the results older than the cutoff, not the whole history. It returns how
// many it deleted.
func (tx *Tx) PruneResults(before time.Time, limit int) (int, error) {
	end := timeKey(before)
	var doomed []Result
	c := tx.bucket(bResultsBySent).Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:min(len(k), timeKeyLen)], end) < 0; k, _ = c.Next() {
		if limit > 0 && len(doomed) >= limit {
			break
		}
		r, err := tx.indexedResult(k, false)
		if err != nil {
			return 0, err
		}
		if !r.Finished.IsZero() && r.Finished.Before(before) {
			doomed = append(doomed, r)
		}
	}
	for _, r := range doomed {
		if err := tx.deleteResult(r); err != nil {
			return 0, err
		}
	}
	if tx.debugOn() && len(doomed) > 0 {
		tx.logOp("prune_results", slog.Int("count", len(doomed)))
	}
	return len(doomed), nil
}

// ResultsByPrefix returns the results whose command id, in hex, starts with
// prefix (1 to 32 hex digits, either case; an odd count matches the high
// half of the last byte), in id order. It seeks to the prefix, so it reads
// only the matches. An empty or non-hex prefix is ErrInvalid.
func (tx *Tx) ResultsByPrefix(prefix string) ([]Result, error) {
	if prefix == "" || len(prefix) > maxHexPrefixLen {
		return nil, invalidf("command id prefix %q: want 1 to %d hex digits", prefix, maxHexPrefixLen)
	}
	p := strings.ToLower(prefix)
	odd := len(p)%2 == 1
	if odd {
		p += "0"
	}
	seek, err := hex.DecodeString(p)
	if err != nil {
		return nil, invalidf("command id prefix %q is not hex", prefix)
	}
	whole := seek
	if odd {
		whole = seek[:len(seek)-1]
	}
	var out []Result
	c := tx.bucket(bResults).Cursor()
	for k, v := c.Seek(seek); k != nil && bytes.HasPrefix(k, whole); k, v = c.Next() {
		if odd && (len(k) < len(seek) || k[len(seek)-1]>>4 != seek[len(seek)-1]>>4) {
			break
		}
		r, err := decodeResult(k, v)
		if err != nil {
			return out, err
		}
		tx.readOutput(&r)
		out = append(out, r)
	}
	return out, nil
}
