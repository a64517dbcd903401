package commands

import "strconv"

// Outcome says how a command ended, as data: a controller branches on it (exit status, "could
// not start", "timed out") instead of reading [Result.Error], which is English for people and is
// written by the agent's build, not the controller's.
//
// The zero value, OutcomeUnknown, is what a result from an agent of an older build decodes to
// (it sends no outcome), and what a token this build does not know decodes to inside a result (a
// newer agent may add outcomes); [Result.EffectiveOutcome] recovers what the older fields tell.
//
// Two facts are not outcomes but flags beside one, because they combine with any outcome:
// truncation (StdoutTruncated, StderrTruncated: a program that exited 0 may have printed more
// than the cap) and Undelivered (the agent could not mail the output back; how the program ended
// is still the Outcome, and the agent's mail code sets Undelivered long after the Outcome was
// decided).
type Outcome uint8

const (
	// OutcomeUnknown: the result says nothing this build understands about how the command
	// ended (an older agent's, or a newer agent's outcome not known here). Token "unknown".
	OutcomeUnknown Outcome = iota
	// OutcomeExited: the command ran and ended by itself; ExitCode is its exit status. ping and
	// sysinfo end so with 0. Token "exited".
	OutcomeExited
	// OutcomeSignaled: the program was ended by a signal that sealpost did not send (a crash,
	// or kill -9 from the program itself or someone on the host); Signal is its number and
	// ExitCode is -1. Token "signaled".
	OutcomeSignaled
	// OutcomeTimedOut: the timeout expired and the agent killed the program and everything it
	// started (TimedOut is set too, for controllers of older builds). Token "timed-out".
	OutcomeTimedOut
	// OutcomeCancelled: the agent stopped the command before it ended, for another reason than
	// the timeout (the agent is shutting down). Token "cancelled".
	OutcomeCancelled
	// OutcomeNotFound: the allowlisted program does not exist on the agent's host; nothing
	// ran. Token "not-found".
	OutcomeNotFound
	// OutcomeNotExecutable: the program exists but cannot be executed (no permission, a
	// directory, not a format the kernel runs); nothing ran. Token "not-executable".
	OutcomeNotExecutable
	// OutcomeStartFailed: the program could not be started for another reason (the working
	// directory is missing, the agent ran out of file descriptors, ...); nothing ran. Token
	// "start-failed".
	OutcomeStartFailed
	// OutcomeDenied: the peer's policy does not allow the request; nothing ran. The protocol
	// answers a denial with an ERROR package; only a Result made by [Registry.Run] itself for a
	// request that skipped [Registry.Check] carries it. Token "denied".
	OutcomeDenied

	numOutcomes // not an outcome: the count of those above
)

// outcomeTokens are the stable text tokens, on the wire (the result's "outcome" member) and for
// people. They never change; a new outcome gets a new token.
var outcomeTokens = [numOutcomes]string{
	OutcomeUnknown:       "unknown",
	OutcomeExited:        "exited",
	OutcomeSignaled:      "signaled",
	OutcomeTimedOut:      "timed-out",
	OutcomeCancelled:     "cancelled",
	OutcomeNotFound:      "not-found",
	OutcomeNotExecutable: "not-executable",
	OutcomeStartFailed:   "start-failed",
	OutcomeDenied:        "denied",
}

// maxOutcomeToken bounds the token an UnknownOutcomeError keeps, so that an error built from a
// peer's bytes stays short.
const maxOutcomeToken = 64

// UnknownOutcomeError is the error [ParseOutcome] and [Outcome.UnmarshalText] return for a
// token they do not know, and [Outcome.MarshalText] for a value outside the constants.
type UnknownOutcomeError struct {
	// Token is the token (cut to 64 bytes), or, from MarshalText, "" and Value set.
	Token string
	// Value is the out-of-range value MarshalText was given.
	Value Outcome
}

func (e *UnknownOutcomeError) Error() string {
	if e.Token == "" && e.Value >= numOutcomes {
		return "commands: unknown outcome value " + strconv.Itoa(int(e.Value))
	}
	return "commands: unknown outcome " + strconv.Quote(e.Token)
}

// ParseOutcome returns the outcome whose token is s ("exited", "timed-out", ...; exactly, case
// and all). Any other string gives OutcomeUnknown and an *UnknownOutcomeError.
func ParseOutcome(s string) (Outcome, error) {
	for o, tok := range outcomeTokens {
		if s == tok {
			return Outcome(o), nil
		}
	}
	return OutcomeUnknown, &UnknownOutcomeError{Token: clip(s, maxOutcomeToken)}
}

// String returns o's token, or "outcome(N)" for a value outside the constants.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeTokens[o]
	}
	return "outcome(" + strconv.Itoa(int(o)) + ")"
}

// MarshalText returns o's token; a value outside the constants gives an *UnknownOutcomeError,
// so that no payload carries a token no build knows.
func (o Outcome) MarshalText() ([]byte, error) {
	if o >= numOutcomes {
		return nil, &UnknownOutcomeError{Value: o}
	}
	return []byte(outcomeTokens[o]), nil
}

// UnmarshalText sets o from a token as ParseOutcome does; an unknown token is an error and
// leaves o unchanged. (Decoding a whole result is lenient instead: see [DecodeResult].)
func (o *Outcome) UnmarshalText(b []byte) error {
	v, err := ParseOutcome(string(b))
	if err != nil {
		return err
	}
	*o = v
	return nil
}

// EffectiveOutcome returns r.Outcome when it is known, and otherwise infers it from the typed
// fields an agent of an older build filled in: TimedOut gives OutcomeTimedOut; an ExitCode of
// 0 or more with no Error gives OutcomeExited; anything else stays OutcomeUnknown. It never
// reads the text of Error: an older result that did not run, or was killed by a signal, looks
// the same in those fields, and is unknown.
func (r Result) EffectiveOutcome() Outcome {
	switch {
	case r.Outcome != OutcomeUnknown:
		return r.Outcome
	case r.TimedOut:
		return OutcomeTimedOut
	case r.ExitCode >= 0 && r.Error == "":
		return OutcomeExited
	}
	return OutcomeUnknown
}

// ShellExitCode returns the status a shell would report for the remote program, for a
// controller that passes it on as its own exit status: for OutcomeExited the ExitCode, for
// OutcomeSignaled 128 plus the signal's number (so a program killed with kill -9 gives 137, as
// in sh and bash). It uses [Result.EffectiveOutcome]. For every other outcome (the program did
// not start, timed out, was cancelled, or the result does not say) it returns 0 and false: there
// is no status of the program's own, and the caller chooses its code (timeout(1) uses 124, a
// shell 127 for a missing program and 126 for one it cannot execute).
func (r Result) ShellExitCode() (int, bool) {
	switch r.EffectiveOutcome() {
	case OutcomeExited:
		if r.ExitCode >= 0 {
			return r.ExitCode, true
		}
	case OutcomeSignaled:
		if r.Signal > 0 && r.Signal <= MaxSignal {
			return 128 + r.Signal, true
		}
	}
	return 0, false
}
