package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/sealpost/sealpost/node"
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
		fmt.Fprintf(w, "agent     running since %s (pid %d)\n", when(now, st.AgentSince), st.AgentPID)
		for _, sv := range st.Servers {
			if st.NoMail {
				break // no servers to speak of
			}
			fmt.Fprintf(w, "          %s\n", serverLine(now, sv))
		}
	} else if !st.NoMail {
		fmt.Fprintf(w, "agent     not running: nothing reads this node's mail (start `sealpost agent`)\n")
	}
	if st.NoMail {
		fmt.Fprintf(w, "mail      none (--no-mail): packages go by `sealpost export` and come by `sealpost import`\n")
	} else {
		fmt.Fprintf(w, "mail      IMAP %s, SMTP %s, TLS %s\n", st.IMAP, st.SMTP, st.TLS)
	}
	fmt.Fprintf(w, "peers     %d, %d of them with a confirmed session (see `sealpost peer list`)\n", st.Peers, st.PeersConfirmed)
	if st.Waiting == 0 {
		fmt.Fprintf(w, "commands  none waiting for an answer\n")
	} else {
		fmt.Fprintf(w, "commands  %d waiting for an answer, the oldest sent %s ago\n", st.Waiting, ago(now, st.OldestWaiting))
	}
	if st.Outbox == 0 {
		fmt.Fprintf(w, "outbox    empty\n")
	} else {
		if st.NoMail {
			fmt.Fprintf(w, "outbox    %d %s waiting for `sealpost export`\n", st.Outbox, plural(st.Outbox, "package", "packages"))
		} else {
			fmt.Fprintf(w, "outbox    %d %s not sent yet, next try %s\n", st.Outbox, plural(st.Outbox, "mail", "mails"), in(now, st.NextAttempt))
		}
		if st.LastError != "" {
			fmt.Fprintf(w, "          last error: %s\n", st.LastError)
		}
	}
	if len(st.FailedSchedules) > 0 {
		fmt.Fprintf(w, "schedules %d whose last run failed: %s (see `sealpost results --schedule NAME`)\n", len(st.FailedSchedules), node.Printable(strings.Join(st.FailedSchedules, ", ")))
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

// serverLine says how the agent last found one of its servers: "IMAP 127.0.0.1:993: cannot log
// in since 16:28 (3m ago): …", or the time of its last successful exchange.
func serverLine(now time.Time, sv node.ServerHealth) string {
	name := strings.ToUpper(sv.Role) + " " + sv.Addr
	switch {
	case !sv.FailingSince.IsZero():
		what := map[node.Problem]string{node.ProblemSecret: "no password or token", node.ProblemLogin: "cannot log in",
			node.ProblemConnect: "cannot reach it", node.ProblemTLS: "TLS fails"}[sv.Problem]
		if what == "" {
			what = "failing"
		}
		line := fmt.Sprintf("%s: %s since %s: %s", name, what, when(now, sv.FailingSince), sv.LastError)
		if !sv.LastOK.IsZero() {
			line += fmt.Sprintf(" (last success %s)", when(now, sv.LastOK))
		}
		return line
	case sv.LastOK.IsZero():
		return name + ": not used yet"
	}
	verb := map[string]string{"imap": "last poll", "smtp": "last send"}[sv.Role]
	return fmt.Sprintf("%s: ok, %s %s", name, verb, when(now, sv.LastOK))
}

// when shows a time of today as 15:04:05, another day's with its date, and how long ago.
func when(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	t = t.Local()
	layout := "15:04:05"
	if y, m, d := t.Date(); y != now.Year() || m != now.Month() || d != now.Day() {
		layout = "2006-01-02 15:04:05"
	}
	return fmt.Sprintf("%s (%s ago)", t.Format(layout), ago(now, t))
}
