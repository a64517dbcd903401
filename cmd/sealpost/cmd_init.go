package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/sealpost/sealpost/node"
)

// minMailSize is the least --max-mail-size: a handshake's mail takes a few kilobytes.
const minMailSize = 16 << 10

func runInit(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "init", "--address ADDR --imap HOST:PORT --smtp HOST:PORT [options]",
		"Create this node's identity (once) and store its mailbox settings, after logging in to\nboth servers with them (nothing is stored if that fails). Passwords are never taken from\nthe command line: name an environment variable or a file that holds it.",
		"sealpost init --address alice@example.test --imap 127.0.0.1:2143 --smtp 127.0.0.1:2525 --login alice@example.test --password-env PW --tls none")
	var c node.MailConfig
	fs.StringVar(&c.Address, "address", "", "this node's mail `address` (required)")
	fs.StringVar(&c.IMAP, "imap", "", "IMAP server `HOST:PORT`")
	fs.StringVar(&c.SMTP, "smtp", "", "SMTP submission server `HOST:PORT`")
	fs.StringVar(&c.Login, "login", "", "mailbox `login` for both servers (default: the address); for several nodes on one\naccount give each its own --address shared+NAME@example.org and the account's\n--login shared@example.org: each node reads only the mail sent to its address")
	fs.StringVar(&c.PasswordEnv, "password-env", "", "environment `VARIABLE` that holds the mailbox password")
	fs.StringVar(&c.PasswordFile, "password-file", "", "`FILE` that holds the mailbox password (read at every login)")
	fs.StringVar(&c.PasswordCommand, "password-command", "", "`COMMAND` whose first line of output is the password, run by /bin/sh at every\nlogin (e.g. 'pass show mail/alice', 'secret-tool lookup mail alice')")
	fs.StringVar(&c.OAuth2TokenCommand, "oauth2-token-command", "", "`COMMAND` whose first line of output is an OAuth2 access token, run at every\nlogin and when the server refuses the token (Gmail, Microsoft 365, Fastmail)")
	fs.StringVar(&c.OAuth2Mechanism, "oauth2-mechanism", "xoauth2", "SASL `mechanism` for the token: xoauth2 (Google, Microsoft) or oauthbearer (RFC 7628)")
	fs.StringVar(&c.TLS, "tls", "implicit", "implicit, starttls or none (none sends the password in clear and is allowed for loopback only)")
	fs.StringVar(&c.CAFile, "ca-file", "", "PEM `FILE` with a CA to trust (for self-signed servers)")
	fs.DurationVar(&c.PollInterval, "poll", 0, "polling interval when the server has no IDLE (default 30s)")
	fs.IntVar(&c.SMTPConnections, "smtp-connections", 0, "how many mails are sent at once, each over its own SMTP connection (default 2;\n1 for a provider that allows one connection at a time)")
	fs.Var(sizeFlag{&c.MaxMailSize}, "max-mail-size", "the largest mail, in `BYTES` (K, M, G: powers of 1024), to send a piece of a large\noutput in (default 10000000, under the 10 MiB most providers take); the SMTP server's\nSIZE wins when it is smaller. Give the smallest of your and your peers' providers' limits")
	fs.BoolVar(&c.NoMail, "no-mail", false, "a node with no mailbox at all, for the air-gapped side: its packages are carried\nas files (`sealpost export`, `sealpost import`); --address is its name in pairing")
	noCheck := fs.Bool("no-check", false, "store the settings without logging in to the servers first (to set up a host\nbefore its mail server is reachable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	if c.Address == "" {
		return usagef("--address is required")
	}
	if c.NoMail {
		return initNoMail(g, c)
	}
	if c.MaxMailSize != 0 && c.MaxMailSize < minMailSize {
		return usagef("--max-mail-size %d: give at least %s (a smaller mail cannot carry a handshake)", c.MaxMailSize, formatSize(minMailSize))
	}
	if c.SMTPConnections < 0 {
		return usagef("--smtp-connections %d: give 1 or more", c.SMTPConnections)
	}
	switch c.TLS {
	case "implicit", "starttls":
	case "none":
		c.AllowPlaintextAuth = true
	default:
		return usagef("--tls must be implicit, starttls or none, not %q", c.TLS)
	}
	given := 0
	for _, v := range []string{c.PasswordEnv, c.PasswordFile, c.PasswordCommand, c.OAuth2TokenCommand} {
		if v != "" {
			given++
		}
	}
	switch c.OAuth2Mechanism {
	case "xoauth2", "oauthbearer":
	default:
		return usagef("--oauth2-mechanism must be xoauth2 or oauthbearer, not %q", c.OAuth2Mechanism)
	}
	if c.OAuth2TokenCommand == "" {
		c.OAuth2Mechanism = ""
	}
	switch {
	case given > 1:
		return usagef("give one of --password-env, --password-file, --password-command and --oauth2-token-command")
	case given == 0:
		return usagef("no mailbox password given: name the environment variable that holds it with\n--password-env VARIABLE (read by every sealpost command and the agent, each time), a\nfile with --password-file FILE (kept as an absolute path), a command that prints it with\n--password-command CMD, or an OAuth2 token command with --oauth2-token-command CMD;\nit is never taken from the command line")
	case c.PasswordFile != "":
		// Stored as given, a relative path would be read from whatever directory a later
		// command (cron, systemd) runs in.
		abs, err := filepath.Abs(c.PasswordFile)
		if err != nil {
			return fmt.Errorf("--password-file: %w", err)
		}
		c.PasswordFile = abs
	}
	if c.Login == "" {
		c.Login = c.Address
	}
	if !*noCheck && (c.IMAP == "" || c.SMTP == "") {
		return usagef("--imap and --smtp are required (or --no-check, to create the identity now and give the servers later)")
	}
	if !*noCheck {
		// Nothing is stored when the settings do not work: a typo found now is not found
		// later by an agent that cannot read its mail.
		fmt.Fprintf(g.stderr, "Logging in to %s (IMAP) and %s (SMTP)...\n", c.IMAP, c.SMTP)
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := node.CheckMail(cctx, c, g.logger())
		cancel()
		if err != nil {
			return fmt.Errorf("the mailbox settings do not work, so nothing was stored: %w\nFix the settings and run init again (or add --no-check to store them as they are)", err)
		}
	}
	opts := g.nodeOptions()
	opts.LockTimeout = 2 * time.Second
	n, err := node.Init(opts, c)
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintf(g.stdout, "sealpost node %s\n  state:       %s\n  fingerprint: %s\n", c.Address, g.state, n.Fingerprint())
	if !strings.EqualFold(c.Login, c.Address) {
		// A shared account: say whose mailbox this node reads, and that it reads only its own mail.
		fmt.Fprintf(g.stdout, "  login:       %s (this node reads only the mail sent to %s)\n", c.Login, c.Address)
	}
	fmt.Fprintf(g.stdout, "Next: add a peer with `sealpost peer add NAME --address ADDRESS` and start `sealpost agent`.\n")
	return nil
}

// initNoMail is `init --no-mail`: an identity and no mailbox settings to check.
func initNoMail(g *globals, c node.MailConfig) error {
	if c.IMAP != "" || c.SMTP != "" || c.Login != "" || c.PasswordEnv != "" || c.PasswordFile != "" || c.PasswordCommand != "" || c.OAuth2TokenCommand != "" {
		return usagef("--no-mail takes no mailbox settings (--imap, --smtp, --login, a password)")
	}
	c = node.MailConfig{Address: c.Address, NoMail: true}
	opts := g.nodeOptions()
	opts.LockTimeout = 2 * time.Second
	n, err := node.Init(opts, c)
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintf(g.stdout, "sealpost node %s, without a mailbox\n  state:       %s\n  fingerprint: %s\nNext: pair with `sealpost peer add NAME --address ADDRESS --code CODE`, then carry a directory:\n`sealpost export --peer NAME DIR` writes what waits for NAME, `sealpost import DIR` reads what came.\n", c.Address, g.state, n.Fingerprint())
	return nil
}

func runID(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "id", "[--json]", "Print this node's fingerprint, to compare out of band or to pair with --fingerprint.", "sealpost id")
	asJSON := fs.Bool("json", false, "print JSON")
	api, done, err := parseAndOpen(ctx, g, fs, args)
	if err != nil {
		return err
	}
	defer done()
	id, err := api.Identity(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(g.stdout, id)
	}
	fmt.Fprintln(g.stdout, id.Fingerprint)
	return nil
}
