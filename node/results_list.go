package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/sealpost/sealpost/keystore"
)

// Listing results in bounded memory (issue 12, "memory over time"). Results returns every result
// with its output at once: a history of commands that each printed a megabyte made `sealpost
// results` hold all of them. ResultSummaries hands the results over one at a time and without
// their output (ResultsOf reads one result's output when it is wanted), so that a listing costs
// one record at a time on both sides of the control socket, whatever the history holds.

// summaryPage is how many results ResultSummaries reads in one read transaction: a listing that
// runs as long as its reader is slow never holds a transaction open (bbolt's writer waits for
// open readers when it grows the file).
const summaryPage = 64

// ResultSummaries calls fn with every command this node sent, oldest first (Results' order),
// each without its output (Stdout and Stderr nil), until fn returns an error, which it returns.
// fn runs outside any transaction.
func (n *Node) ResultSummaries(ctx context.Context, fn func(Result) error) error {
	var cursor []byte
	for {
		page := make([]Result, 0, summaryPage)
		var next []byte
		err := n.store.View(func(tx *keystore.Tx) error {
			return tx.ResultSummaries(cursor, func(r keystore.Result, c []byte) (bool, error) {
				page, next = append(page, resultOf(r)), c
				return len(page) < summaryPage, nil
			})
		})
		if err != nil {
			return err
		}
		for _, r := range page {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < summaryPage {
			return nil
		}
		cursor = next
	}
}

// serveSummaries answers the result-summaries control operation: one controlResponse line per
// result (Result set, More true), each written within the control write timeout, then the
// caller's final line.
func (n *Node) serveSummaries(ctx context.Context, c net.Conn) error {
	enc := json.NewEncoder(c)
	return n.ResultSummaries(ctx, func(r Result) error {
		c.SetWriteDeadline(time.Now().Add(controlReadTimeout))
		return enc.Encode(controlResponse{Result: &r, More: true})
	})
}

// errSummaryStream: the agent's answer to result-summaries broke off in a way no agent sends.
var errSummaryStream = errors.New("the agent's list of results broke off")

// ResultSummaries asks the agent for Node.ResultSummaries; the results come one line at a time.
func (cl *Client) ResultSummaries(ctx context.Context, fn func(Result) error) error {
	var fnErr error
	_, err := cl.callStream(ctx, controlRequest{Op: "result-summaries"}, func(resp controlResponse) error {
		if resp.Result == nil {
			return fmt.Errorf("%w: a line without a result", errSummaryStream)
		}
		if fnErr = fn(*resp.Result); fnErr != nil {
			return fnErr
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}
