package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// statusTimeout bounds `sealpost status`.
var statusTimeout = 10 * time.Second

func runStatus(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "status", "[--json]",
		"Show this node: whether an agent serves it, its mail servers, its peers, the commands\nwaiting for an answer, and the mail waiting in the outbox with the last reason it could\nnot be sent.",
		"sealpost status --json")
	asJSON := fs.Bool("json", false, "print JSON")
	api, done, err := parseAndOpen(ctx, g, fs, args)
	if err != nil {
		return err
	}
	defer done()
	// A diagnostic must not hang on the thing it diagnoses: an agent that does not answer.
	sctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	st, err := api.Status(sctx)
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("no answer within %s: the agent holding %s accepts connections but does not reply (stop it and start it again)", statusTimeout, g.state)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(g.stdout, st)
	}
	now := time.Now()
	w := g.stdout
	fmt.Fprintf(w, "node      %s  %s\n", st.Address, st.Fingerprint)
	if st.Agent {
		fmt.Fprintf(w, "agent     running (pid %d)\n", st.AgentPID)
	} else {
		fmt.Fprintf(w, "agent     not running: nothing reads this node's mail (start `sealpost agent`)\n")
	}
	fmt.Fprintf(w, "mail      IMAP %s, SMTP %s, TLS %s\n", st.IMAP, st.SMTP, st.TLS)
	fmt.Fprintf(w, "peers     %d, %d of them ready for commands\n", st.Peers, st.PeersConfirmed)
	if st.Waiting == 0 {
		fmt.Fprintf(w, "commands  none waiting for an answer\n")
	} else {
		fmt.Fprintf(w, "commands  %d waiting for an answer, the oldest sent %s ago\n", st.Waiting, ago(now, st.OldestWaiting))
	}
	if st.Outbox == 0 {
		fmt.Fprintf(w, "outbox    empty\n")
	} else {
		fmt.Fprintf(w, "outbox    %d %s not sent yet, next try %s\n", st.Outbox, plural(st.Outbox, "mail", "mails"), in(now, st.NextAttempt))
		if st.LastError != "" {
			fmt.Fprintf(w, "          last error: %s\n", st.LastError)
		}
	}
	if !st.LastPrune.IsZero() {
		fmt.Fprintf(w, "cleanup   old processed mail last looked for %s ago\n", ago(now, st.LastPrune))
	}
	fmt.Fprintf(w, "state     %s\n", st.StateDir)
	return nil
}

func ago(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() }

func in(now, t time.Time) string {
	if d := t.Sub(now).Round(time.Second); d > 0 {
		return "in " + d.String()
	}
	return "now"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
