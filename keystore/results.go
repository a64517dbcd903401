package keystore

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Result is the outcome of one command as the controller records it. Its
// output may hold anything the command printed, so LogValue shows sizes only.
//
// Layout: results: command id (16) -> JSON.
type Result struct {
	CommandID [16]byte
	Peer      string
	Command   []string
	Status    string
	ExitCode  int
	Error     string
	Stdout    []byte
	Stderr    []byte
	Sent      time.Time
	Finished  time.Time
}

type resultRecord struct {
	CommandID string    `json:"command_id"` // hex
	Peer      string    `json:"peer"`
	Command   []string  `json:"command,omitempty"`
	Status    string    `json:"status"`
	ExitCode  int       `json:"exit_code"`
	Error     string    `json:"error,omitempty"`
	Stdout    []byte    `json:"stdout,omitempty"`
	Stderr    []byte    `json:"stderr,omitempty"`
	Sent      time.Time `json:"sent"`
	Finished  time.Time `json:"finished,omitzero"`
}

// LogValue shows ids, status and output sizes, never the output itself.
func (r Result) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("cmd_id", id16(r.CommandID)),
		slog.String("peer", r.Peer),
		slog.String("status", r.Status),
		slog.Int("exit_code", r.ExitCode),
		slog.Int("stdout_bytes", len(r.Stdout)),
		slog.Int("stderr_bytes", len(r.Stderr)),
	)
}

func (r Result) validate() error {
	if err := checkID("command", r.CommandID); err != nil {
		return err
	}
	if err := checkText("result peer", r.Peer, maxAddressLen, false); err != nil {
		return err
	}
	return checkText("result status", r.Status, maxNameLen, false)
}

func (r Result) record() resultRecord {
	return resultRecord{hex.EncodeToString(r.CommandID[:]), r.Peer, r.Command, r.Status, r.ExitCode, r.Error, r.Stdout, r.Stderr, r.Sent.UTC(), r.Finished.UTC()}
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
	if err := errors.Join(storedTime(fmt.Sprintf("result %x", k), "sent", rec.Sent), storedTime(fmt.Sprintf("result %x", k), "finished", rec.Finished)); err != nil {
		return Result{}, err
	}
	r := Result{Peer: rec.Peer, Command: rec.Command, Status: rec.Status, ExitCode: rec.ExitCode, Error: rec.Error,
		Stdout: rec.Stdout, Stderr: rec.Stderr, Sent: rec.Sent, Finished: rec.Finished}
	copy(r.CommandID[:], id)
	return r, nil
}

// Result returns the result of command cmd.
func (tx *Tx) Result(cmd [16]byte) (Result, bool, error) {
	if err := checkID("command", cmd); err != nil {
		return Result{}, false, err
	}
	v := tx.bucket(bResults).Get(cmd[:])
	if v == nil {
		return Result{}, false, nil
	}
	r, err := decodeResult(cmd[:], v)
	return r, err == nil, err
}

// PutResult stores or replaces the result for r.CommandID (a result moves
// from "sent" to its final status by being put again).
func (tx *Tx) PutResult(r Result) error {
	if err := r.validate(); err != nil {
		return err
	}
	if err := putJSON(tx.bucket(bResults), clone(r.CommandID[:]), r.record()); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_result", slog.Any("cmd_id", id16(r.CommandID)), slog.String("status", r.Status))
	}
	return nil
}

// Results lists every result ordered by Sent, then command id. The bucket is
// keyed by id, so this loads and sorts; results are few enough per node that
// a time index would cost more writes than it saves reads.
func (tx *Tx) Results() ([]Result, error) {
	var out []Result
	err := tx.bucket(bResults).ForEach(func(k, v []byte) error {
		r, err := decodeResult(k, v)
		if err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	slices.SortStableFunc(out, func(a, b Result) int {
		if c := a.Sent.Compare(b.Sent); c != 0 {
			return c
		}
		return bytes.Compare(a.CommandID[:], b.CommandID[:])
	})
	return out, err
}
