package session

// WindowSize is how many sequence numbers below the highest seen a responder still tells apart.
// Older ones are rejected; a retry of the same command (new sequence number, same command id) is
// answered from the ledger, so a long delay costs a round trip, never a double execution.
//
// It is sized for the reordering real mail servers do, not only for delays: a burst of commands
// is delivered by several LMTP processes at once, and Postfix + Dovecot were measured putting a
// mail 250 and more places behind later ones in a burst of 500, which a window of 256 rejected
// (the commands then ran only after their retry, hours later). 4096 numbers cost 512 bytes of
// bitmap per session. A window stored by a build with a smaller one decodes with the newest
// numbers in place and the older ones unknown, which the ledger covers (section 12).
const WindowSize = 4096

// Window is a sliding replay window over a session's sequence numbers: Highest is the largest
// number accepted, and bit i of Bits says whether Highest-i was accepted.
type Window struct {
	Highest uint64
	Bits    [WindowSize / 64]uint64
}

// verdict of a window check.
type verdict int

const (
	seqFresh verdict = iota
	seqSeen
	seqTooOld
)

func (w *Window) check(seq uint64) verdict {
	switch {
	case seq == 0:
		return seqTooOld
	case seq > w.Highest:
		return seqFresh
	case w.Highest-seq >= WindowSize:
		return seqTooOld
	}
	d := w.Highest - seq
	if w.Bits[d/64]&(1<<(d%64)) != 0 {
		return seqSeen
	}
	return seqFresh
}

// mark records seq as accepted; the caller has checked it is fresh.
func (w *Window) mark(seq uint64) {
	if seq > w.Highest {
		shift := seq - w.Highest
		w.shift(shift)
		w.Highest = seq
	}
	d := w.Highest - seq
	w.Bits[d/64] |= 1 << (d % 64)
}

// shift moves every bit n places towards "older", dropping those that leave the window.
func (w *Window) shift(n uint64) {
	if n >= WindowSize {
		w.Bits = [WindowSize / 64]uint64{}
		return
	}
	words, bits := int(n/64), n%64
	var out [WindowSize / 64]uint64
	for i := len(out) - 1; i >= 0; i-- {
		src := i - words
		if src < 0 {
			continue
		}
		out[i] = w.Bits[src] << bits
		if bits > 0 && src > 0 {
			out[i] |= w.Bits[src-1] >> (64 - bits)
		}
	}
	w.Bits = out
}
