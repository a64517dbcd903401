package keystore

import "encoding/json"

// ResultsNewestFirst calls fn with the results, the most recently sent first (by Sent, then by
// command id, both descending: Results' order reversed), until fn returns false or an error,
// which it returns. With peer not empty only that peer's results reach fn. It walks
// results_by_sent backwards and stops when fn does, so a page of the most recent results costs
// that page, not the whole history; another peer's result is skipped after reading only its
// peer, not decoding its output.
func (tx *Tx) ResultsNewestFirst(peer string, fn func(Result) (more bool, err error)) error {
	c := tx.bucket(bResultsBySent).Cursor()
	for k, _ := c.Last(); k != nil; k, _ = c.Prev() {
		if len(k) != resultIndexLen {
			return corruptf("results_by_sent key %x is %d bytes", k, len(k))
		}
		if peer != "" {
			v := tx.bucket(bResults).Get(k[timeKeyLen:])
			if v == nil {
				return corruptf("results_by_sent names missing result %x", k[timeKeyLen:])
			}
			var only struct {
				Peer string `json:"peer"`
			}
			if err := json.Unmarshal(v, &only); err != nil {
				return corruptf("result %x: %v", k[timeKeyLen:], err)
			}
			if only.Peer != peer {
				continue
			}
		}
		r, err := tx.indexedResult(k, true)
		if err != nil {
			return err
		}
		if more, err := fn(r); err != nil || !more {
			return err
		}
	}
	return nil
}
