package keystore

import (
	"encoding/json"
	"log/slog"
	"time"
)

// The status reports this node was asked to mail (docs/PROTOCOL.md section 19, "Status
// reports"): on the reporting peer (the agent), one row per controller that asked.
//
//	report_to  peer name -> JSON ReportTo
//
// keystore keeps the reported state as the JSON node built (it does not import commands). A row
// whose peer is gone is dropped by node the next time it is due.

// ReportTo is one controller's standing request for status reports, and where this node's
// reports to it stand.
type ReportTo struct {
	Name string `json:"name"`
	// Every is the interval asked for (> 0); NextDue is when the next report is due.
	Every   time.Duration `json:"every"`
	NextDue time.Time     `json:"next_due"`
	// Run names the numbering of the reports (random, picked when reporting starts and when
	// the controller answers need_whole; 0: none picked yet); Seq is the sequence number of the
	// last report sent (0: none yet).
	Run uint64 `json:"run,omitempty"`
	Seq uint64 `json:"seq,omitempty"`
	// SentID and SentState are the command id and the whole state of report Seq, kept until
	// its answer comes: an answer with exit 0 makes that state the acknowledged one. SentAt is
	// when report Seq was sent: with SentID set it is in flight, and no other report goes
	// until it is answered or its lifetime passed.
	SentID    [16]byte        `json:"sent_id,omitzero"`
	SentState json.RawMessage `json:"sent_state,omitempty"`
	SentAt    time.Time       `json:"sent_at,omitzero"`
	// Missed counts the reports in a row whose lifetime passed without an answer; from the
	// third on, the interval doubles (node backs off from a controller that does not answer).
	Missed int `json:"missed,omitempty"`
	// AckedSeq and AckedState are the last report the controller acknowledged, against which
	// the next report is a delta; AckedAt when that report was sent. AckedSeq 0: the next
	// report is whole.
	AckedSeq   uint64          `json:"acked_seq,omitempty"`
	AckedState json.RawMessage `json:"acked_state,omitempty"`
	AckedAt    time.Time       `json:"acked_at,omitzero"`
}

func (r ReportTo) validate() error {
	if err := checkName(r.Name); err != nil {
		return err
	}
	if r.Every <= 0 {
		return invalidf("report_to %q: interval %v is not positive", r.Name, r.Every)
	}
	if r.Missed < 0 {
		return invalidf("report_to %q: %d missed reports", r.Name, r.Missed)
	}
	if r.AckedSeq > r.Seq {
		return invalidf("report_to %q: acknowledged report %d was never sent (last %d)", r.Name, r.AckedSeq, r.Seq)
	}
	for _, raw := range []json.RawMessage{r.SentState, r.AckedState} {
		if len(raw) > 0 && !json.Valid(raw) {
			return invalidf("report_to %q: a state is not JSON", r.Name)
		}
	}
	return nil
}

func decodeReportTo(k, v []byte) (ReportTo, error) {
	var r ReportTo
	if err := json.Unmarshal(v, &r); err != nil {
		return ReportTo{}, corruptf("report_to %q: %v", k, err)
	}
	if r.Name != string(k) {
		return ReportTo{}, corruptf("report_to %q holds the reports to %q", k, r.Name)
	}
	if err := r.validate(); err != nil {
		return ReportTo{}, corruptf("report_to %q: %v", k, err)
	}
	return r, nil
}

// ReportTo returns the standing report request of the peer called name, if any.
func (tx *Tx) ReportTo(name string) (ReportTo, bool, error) {
	if err := checkName(name); err != nil {
		return ReportTo{}, false, err
	}
	v := tx.bucket(bReportTo).Get([]byte(name))
	if v == nil {
		return ReportTo{}, false, nil
	}
	r, err := decodeReportTo([]byte(name), v)
	return r, err == nil, err
}

// PutReportTo stores the standing report request r.Name.
func (tx *Tx) PutReportTo(r ReportTo) error {
	if err := r.validate(); err != nil {
		return err
	}
	r.NextDue, r.AckedAt, r.SentAt = r.NextDue.UTC(), r.AckedAt.UTC(), r.SentAt.UTC()
	if err := putJSON(tx.bucket(bReportTo), []byte(r.Name), r); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_report_to", slog.String("name", r.Name), slog.Uint64("seq", r.Seq))
	}
	return nil
}

// DeleteReportTo removes the standing report request of the peer called name, if any.
func (tx *Tx) DeleteReportTo(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	return tx.bucket(bReportTo).Delete([]byte(name))
}

// ForEachReportTo calls fn with every standing report request, in name order.
func (tx *Tx) ForEachReportTo(fn func(ReportTo) error) error {
	return tx.bucket(bReportTo).ForEach(func(k, v []byte) error {
		r, err := decodeReportTo(k, v)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

// DeleteResult removes the result recorded under cmd, if any. Node drops the record of a status
// report it sent once the report's answer is in: the reports' own row (ReportTo) says where they
// stand, and a report every quarter of an hour would otherwise fill the results history.
func (tx *Tx) DeleteResult(cmd [16]byte) error {
	r, ok, err := tx.Result(cmd)
	if err != nil || !ok {
		return err
	}
	return tx.deleteResult(r)
}
