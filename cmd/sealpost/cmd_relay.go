package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/sealpost/sealpost/mailbox"
)

func runRelay(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "relay", "--user ADDR:PASSWORD ... [--listen 127.0.0.1] [--smtp-port 2525] [--imap-port 2143] [--data DIR]",
		"Start a small mail server in this process: SMTP delivery into IMAP mailboxes for the given\nusers, no TLS, for demos, labs and tests on one machine. Stops on Ctrl-C or SIGTERM.\n"+
			"Without --data the mail lives in memory and is gone when the relay stops; agents notice\n"+
			"(each start's mailboxes have a new UIDVALIDITY) and read the new mailboxes from the start.\n"+
			"With --data DIR (a private directory, created 0700 if missing) every mailbox with its mail,\n"+
			"flags and UIDs is kept across restarts.",
		"sealpost relay --listen 127.0.0.1 --smtp-port 2525 --imap-port 2143 --user alice@example.test:pw --user bob@example.test:pw")
	var users multiFlag
	listen := fs.String("listen", "127.0.0.1", "`ADDRESS` to listen on")
	smtpPort := fs.Int("smtp-port", 2525, "SMTP `PORT` (0: any free port)")
	imapPort := fs.Int("imap-port", 2143, "IMAP `PORT` (0: any free port)")
	fs.Var(&users, "user", "mailbox `ADDR:PASSWORD` (repeatable)")
	data := fs.String("data", "", "keep the mail in `DIR` across restarts (default: in memory only)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if len(users) == 0 {
		return usagef("give at least one --user ADDR:PASSWORD")
	}
	cfg := mailbox.RelayConfig{Listen: *listen, SMTPPort: *smtpPort, IMAPPort: *imapPort, Users: map[string]string{}, Logger: g.logger(), Data: *data}
	for _, u := range users {
		addr, pw, err := parseRelayUser(u)
		if err != nil {
			return err
		}
		cfg.Users[strings.ToLower(addr)] = pw
	}
	if cfg.Data == "" {
		// In memory every mailbox of a start takes the start's second as its UIDVALIDITY. A
		// start in the same second as the one before it would serve new UIDs under the
		// UIDVALIDITY agents' cursors hold (and they would skip that mail): so start in the
		// next second, which no earlier start can have had.
		if err := untilNextSecond(ctx); err != nil {
			return nil // stopped before it started
		}
	}
	r, err := mailbox.StartRelay(ctx, cfg)
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Fprintf(g.stdout, "relay: SMTP %s, IMAP %s, %d users (Ctrl-C to stop)\n", r.SMTPAddr(), r.IMAPAddr(), len(cfg.Users))
	<-ctx.Done()
	return nil
}

// untilNextSecond waits until the wall clock has left the second it is in, or until ctx ends.
func untilNextSecond(ctx context.Context) error {
	sec := time.Now().Unix()
	for {
		now := time.Now()
		if now.Unix() > sec {
			return nil
		}
		t := time.NewTimer(time.Unix(sec+1, 0).Sub(now))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}

// parseRelayUser splits a --user value at its first ':' into the mailbox address and the
// password (which may itself contain ':'). The address must hold an '@'.
func parseRelayUser(s string) (addr, pw string, err error) {
	addr, pw, ok := strings.Cut(s, ":")
	if !ok || addr == "" || !strings.Contains(addr, "@") {
		return "", "", usagef("--user %q: want ADDR:PASSWORD, like alice@example.test:secret", s)
	}
	return addr, pw, nil
}
