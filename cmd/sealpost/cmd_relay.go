package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/sealpost/sealpost/mailbox"
)

func runRelay(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "relay", "--user ADDR:PASSWORD ... [--listen 127.0.0.1] [--smtp-port 2525] [--imap-port 2143]",
		"Start a small mail server in this process: SMTP delivery into IMAP mailboxes for the given\nusers, no TLS, for demos, labs and tests on one machine. Stops on Ctrl-C.",
		"sealpost relay --listen 127.0.0.1 --smtp-port 2525 --imap-port 2143 --user alice@example.test:pw --user bob@example.test:pw")
	var users multiFlag
	listen := fs.String("listen", "127.0.0.1", "`ADDRESS` to listen on")
	smtpPort := fs.Int("smtp-port", 2525, "SMTP `PORT` (0: any free port)")
	imapPort := fs.Int("imap-port", 2143, "IMAP `PORT` (0: any free port)")
	fs.Var(&users, "user", "mailbox `ADDR:PASSWORD` (repeatable)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if len(users) == 0 {
		return usagef("give at least one --user ADDR:PASSWORD")
	}
	cfg := mailbox.RelayConfig{Listen: *listen, SMTPPort: *smtpPort, IMAPPort: *imapPort, Users: map[string]string{}, Logger: g.logger()}
	for _, u := range users {
		addr, pw, err := parseRelayUser(u)
		if err != nil {
			return err
		}
		cfg.Users[strings.ToLower(addr)] = pw
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

// parseRelayUser splits a --user value at its first ':' into the mailbox address and the
// password (which may itself contain ':'). The address must hold an '@'.
func parseRelayUser(s string) (addr, pw string, err error) {
	addr, pw, ok := strings.Cut(s, ":")
	if !ok || addr == "" || !strings.Contains(addr, "@") {
		return "", "", usagef("--user %q: want ADDR:PASSWORD, like alice@example.test:secret", s)
	}
	return addr, pw, nil
}
