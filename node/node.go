package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// DefaultWitnessDir is where a node keeps its restore witness unless told otherwise:
// /var/lib/sealpost/witness for root, /var/tmp/sealpost-UID/witness for other users.
func DefaultWitnessDir() string { return keystore.DefaultWitnessDir() }

// ErrNotInitialized: the state directory has no identity yet.
var ErrNotInitialized = errors.New("this state directory has no identity yet: run `sealpost init` first")

// Options configure a Node. Zero values take the documented defaults.
type Options struct {
	// Dir is the state directory (required).
	Dir string
	// Logger receives operational logs; nil is silent.
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// Transport moves packages; nil means one built from the stored mailbox settings.
	Transport mailbox.Transport
	// Events receives a readable account of what the node does (the demo prints it); nil: none.
	Events func(Event)
	// Version is reported by sysinfo.
	Version string
	// WitnessDir is where the state store keeps its restore witness, a copy of its commit counter
	// outside the state directory, so that restoring the whole directory (database and sidecar
	// together) is detected (docs/PROTOCOL.md section 16). Empty: no witness. The CLI passes
	// DefaultWitnessDir unless told otherwise.
	WitnessDir string
	// LockTimeout bounds the wait for the state lock; zero means 2s.
	LockTimeout time.Duration
	// RetryAfter is how long a command waits for its answer before it is sent again (doubling
	// each time, at most six hours); zero means 10 minutes.
	RetryAfter time.Duration
	// HandshakeTimeout is how long an unanswered handshake waits before a new one; zero means RetryAfter.
	HandshakeTimeout time.Duration
	// MaxParallel is how many peers' commands run at once (one at a time per peer, in order);
	// zero means DefaultMaxParallel.
	MaxParallel int
	// ChunkSize is how many plain bytes a streamed chunk carries (docs/PROTOCOL.md section 20);
	// zero or above session.MaxChunkData means that limit (1 MiB). Tests make it small.
	ChunkSize int
	// MaxStreamOutput caps each stream (stdout, stderr) of a command this agent streams back;
	// zero means DefaultMaxStreamOutput.
	MaxStreamOutput int64
	// KeepProcessed is how long the agent keeps processed mail in the processed folder before
	// deleting it (looked at once a day, to the day); zero means DefaultKeepProcessed (30 days),
	// negative keeps it forever.
	KeepProcessed time.Duration
	// KeepResults is how long the results of finished commands are kept (results, `sealpost
	// results`); zero means DefaultKeepResults (90 days), negative keeps them forever.
	KeepResults time.Duration
	// MinReportEvery is the shortest interval at which this node, as an agent, mails status
	// reports to one controller, whatever the controller asks (docs/PROTOCOL.md section 19): a
	// hostile or confused controller cannot make it mail more often. Zero means
	// DefaultMinReportEvery (1 minute).
	MinReportEvery time.Duration
}

// Node is one sealpost node: its state, protocol engine, transport and command registry.
type Node struct {
	// lastSysInfo and sysinfoBusy: the host's facts last collected for a status report, and a
	// collection under way (report.go, boundedSysInfo).
	lastSysInfo atomic.Pointer[commands.SysInfo]
	sysinfoBusy atomic.Bool
	// checks: the rounds of the agent's own checks run for status reports (checks.go).
	checks checkRunner
	// askSwept: when the report wishes of pairings that never completed were last looked at
	// (report.go, dropLapsedReportAsks).
	askSwept atomic.Pointer[time.Time]

	opts  Options
	store *keystore.Store
	id    *session.Identity
	cfg   MailConfig
	eng   *session.Engine
	reg   *commands.Registry
	log   *slog.Logger
	now   func() time.Time

	trMu sync.Mutex // guards tr creation
	tr   mailbox.Transport

	sendMu  sync.Mutex // one outbox flush at a time
	chunks  chunkGate  // this node's chunks in the outbox (stream.go)
	pushing sync.Map   // push command id -> true while its chunks are cut (stream_file.go)
	// resending: peer ‖ command -> true while a resender runs; resendWanted: an ask was
	// recorded since (stream_ask.go).
	resending    sync.Map
	resendWanted atomic.Bool
	// placing: peer ‖ command -> true while a pushed file is copied into place; placeWanted:
	// a push was joined since (stream_file.go).
	placing     sync.Map
	placeWanted atomic.Bool
	// placers and resenders count those goroutines, so that an Import without an agent, or one
	// round of an agent (--once), can wait for the answers they queue (carry.go, serve.go).
	placers, resenders bgCount
	// lastSpoolSweep is when Maintain last looked for spool files no result names (time.Time).
	lastSpoolSweep atomic.Value
	serving        atomic.Bool
	// kick, while Serve runs, wakes its sender, which mails what was committed to the outbox
	// while the serving loop goes on with the next mail (flushSoon).
	kick atomic.Pointer[chan struct{}]
	// unsettled: a command may be left Executing (set at open, and when committing an answer
	// failed), so the next maintenance round looks through the ledger once.
	unsettled atomic.Bool
	waitMu    sync.Mutex
	waiters   map[session.CommandID][]chan struct{}

	// waitRecheck is how often a Wait under Serve looks at the result without being notified
	// (a backstop: every path that ends a command notifies its waiters).
	waitRecheck time.Duration

	failMu  sync.Mutex
	failing keystore.FailingMail // the mail at the inbox's head that keeps failing

	exec      *executor   // runs cleared commands, concurrently across peers
	owedTried atomic.Bool // the notes of mail still to be moved were acted on without waiting once
	emitMu    sync.Mutex  // one Options.Events call at a time

	lastPrune time.Time // when Serve last looked for old processed mail (also kept in the state)

	sched atomic.Pointer[scheduler] // fires schedules, while Serve runs (schedule.go)

	serveBackoff time.Duration                           // Serve's first wait after mailbox trouble (doubling); tests shorten it
	health       health                                  // this process's record of its mail servers
	since        atomic.Pointer[time.Time]               // when Serve started, while it runs
	giveUp       atomic.Pointer[context.CancelCauseFunc] // ends Serve with a *PermanentError, while it runs

	beforeExecute func() bool                 // tests: true simulates a crash between "executing" and the run
	failHandle    func(mailbox.Message) error // tests: state trouble while handling a mail
}

// MailConfig is the mailbox account a node uses; it is stored in the state, the password never is.
type MailConfig struct {
	Address      string `json:"address"`
	IMAP         string `json:"imap"`
	SMTP         string `json:"smtp"`
	Login        string `json:"login"`
	PasswordEnv  string `json:"password_env,omitempty"`
	PasswordFile string `json:"password_file,omitempty"`
	// PasswordCommand is run (by /bin/sh) at every login; its first line of output is the
	// password (pass, secret-tool, vault), as mbsync's PassCmd.
	PasswordCommand string `json:"password_command,omitempty"`
	// OAuth2TokenCommand is run at every login and again when the server refuses the token; its
	// first line is an OAuth2 access token, sent by SASL OAuth2Mechanism (xoauth2, the default,
	// or oauthbearer).
	OAuth2TokenCommand string        `json:"oauth2_token_command,omitempty"`
	OAuth2Mechanism    string        `json:"oauth2_mechanism,omitempty"`
	TLS                string        `json:"tls"`
	CAFile             string        `json:"ca_file,omitempty"`
	PollInterval       time.Duration `json:"poll_interval,omitempty"`
	// AllowPlaintextAuth is set by `--tls none`: the user accepted credentials in the clear (the
	// transport still refuses it for anything but loopback).
	AllowPlaintextAuth bool `json:"allow_plaintext_auth,omitempty"`
	// KeepResults is the result retention last asked for (agent --keep-results): kept here so
	// that every process that records commands on this state (a `run` without an agent too)
	// prunes by it. Zero: DefaultKeepResults; negative: forever.
	KeepResults time.Duration `json:"keep_results,omitempty"`
	// SMTPConnections is how many mails are submitted at once, each over its own connection
	// (mailbox.Config.SMTPConnections); zero: mailbox.DefaultSMTPConnections (2). 1 for a
	// provider that allows one connection at a time.
	SMTPConnections int `json:"smtp_connections,omitempty"`
	// MaxMailSize (`init --max-mail-size`) is the largest mail this node sends a streamed chunk
	// in; the mail server's SIZE, when smaller, wins. Zero: DefaultMaxMailSize (stream_size.go).
	MaxMailSize int64 `json:"max_mail_size,omitempty"`
	// NoMail (`init --no-mail`): this node has no mailbox at all. Nothing is mailed; packages
	// wait in the outbox for `sealpost export`, and arrive by `sealpost import` (carry.go).
	NoMail bool `json:"no_mail,omitempty"`
	// Gateways are the air-gapped nodes this node forwards sealed packages for, between its
	// mailbox and a directory (carry.go, docs/PROTOCOL.md section 21). Changed only by
	// AddGateway and RemoveGateway, which read and write them in the state.
	Gateways []Gateway `json:"gateways,omitempty"`
}

const inboxCursor = "INBOX"

func (o *Options) defaults() {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = 2 * time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = 10 * time.Minute
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = o.RetryAfter
	}
}

// Init creates the identity (if the directory has none) and stores the mailbox settings.
func Init(opts Options, cfg MailConfig) (*Node, error) {
	opts.defaults()
	if cfg.Address == "" {
		return nil, fmt.Errorf("init: --address is required")
	}
	if cfg.NoMail && (cfg.IMAP != "" || cfg.SMTP != "") {
		return nil, fmt.Errorf("init: a node without a mailbox (--no-mail) takes no IMAP or SMTP server")
	}
	st, err := keystore.Open(opts.Dir, keystore.Options{LockTimeout: opts.LockTimeout, Logger: opts.Logger, Now: opts.Now, WitnessDir: opts.WitnessDir})
	if err != nil {
		return nil, err
	}
	err = st.Update(func(tx *keystore.Tx) error {
		if ident, ok, err := tx.Identity(); err != nil {
			return err
		} else if ok && !strings.EqualFold(ident.Address, cfg.Address) {
			return fmt.Errorf("this state already belongs to %s; its peers know it by that address. Use another --state for %s", ident.Address, cfg.Address)
		} else if !ok {
			id, err := session.NewIdentity(nil)
			if err != nil {
				return err
			}
			if err := tx.PutIdentity(keystore.Identity{Address: cfg.Address, PrivateKey: id.PrivateKey(), Created: opts.Now()}); err != nil {
				return err
			}
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			return err
		}
		return tx.PutMailboxSettings(b)
	})
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("init: %w", err)
	}
	st.Close()
	return Open(opts)
}

// Open opens an initialised state directory. It holds the state lock until Close.
func Open(opts Options) (*Node, error) {
	opts.defaults()
	if _, err := os.Stat(filepath.Join(opts.Dir, "state.db")); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", opts.Dir, ErrNotInitialized)
	}
	st, err := keystore.Open(opts.Dir, keystore.Options{LockTimeout: opts.LockTimeout, Logger: opts.Logger, Now: opts.Now, WitnessDir: opts.WitnessDir})
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, store: st, log: opts.Logger, now: opts.Now, tr: opts.Transport, waiters: map[session.CommandID][]chan struct{}{}, waitRecheck: time.Second, serveBackoff: 500 * time.Millisecond}
	n.resendWanted.Store(true) // asks for chunks recorded before a stop are taken up
	n.placeWanted.Store(true)  // and pushes joined before it go into place
	n.exec = newExecutor(n, opts.MaxParallel)
	if err := n.load(); err != nil {
		st.Close()
		return nil, err
	}
	n.unsettled.Store(true)
	if err := n.storeKeepResults(); err != nil {
		st.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) load() error {
	var floor time.Time
	if rb := n.store.Rollback(); rb.Detected {
		n.log.Warn("restore detected: the state was put back from an older copy; all sessions dropped, peers must handshake again, and commands issued before now that the state does not know are answered outcome-unknown",
			"op", "restore", "reason", rb.Reason.String(), "path", rb.Path, "db_generation", rb.DBGeneration, "seen_generation", rb.SeenGeneration)
		err := n.store.Update(func(tx *keystore.Tx) error {
			if err := n.restored(tx); err != nil {
				return err
			}
			return tx.ClearRollback()
		})
		if err != nil {
			return fmt.Errorf("recover restored state: %w", err)
		}
	}
	return n.store.View(func(tx *keystore.Tx) error {
		ident, ok, err := tx.Identity()
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotInitialized
		}
		if n.id, err = session.IdentityFromKey(ident.PrivateKey); err != nil {
			return err
		}
		if b, ok, err := tx.MailboxSettings(); err != nil {
			return err
		} else if ok {
			if err := json.Unmarshal(b, &n.cfg); err != nil {
				return fmt.Errorf("stored mailbox settings: %w", err)
			}
		}
		// A floor that cannot be read must not read as "no floor": that would let commands from
		// before a restore run again.
		if floor, _, err = tx.RestoreFloor(); err != nil {
			return err
		}
		n.cfg.Address = ident.Address
		n.eng, err = session.NewEngine(session.Config{Identity: n.id, Address: ident.Address, Now: n.now, Floor: floor})
		if err != nil {
			return err
		}
		n.reg = commands.NewRegistry(commands.Options{Version: n.opts.Version, Now: n.now, Logger: n.log})
		return nil
	})
}

// Close ends the commands still running (that is their result), then releases the state and the
// transport.
func (n *Node) Close() error {
	n.exec.stop()
	n.trMu.Lock()
	if n.tr != nil && n.opts.Transport == nil {
		n.tr.Close()
	}
	n.trMu.Unlock()
	return n.store.Close()
}

// Fingerprint is this node's identity fingerprint.
func (n *Node) Fingerprint() session.Fingerprint { return n.id.Fingerprint() }

// Address is this node's mail address.
func (n *Node) Address() string { return n.cfg.Address }

// Store exposes the state (tests use it).
func (n *Node) Store() *keystore.Store { return n.store }

// transport returns the transport, building it from the stored settings on first use.
func (n *Node) transport() (mailbox.Transport, error) {
	n.trMu.Lock()
	defer n.trMu.Unlock()
	if n.tr != nil {
		return n.tr, nil
	}
	c := n.cfg
	if c.NoMail {
		n.tr = noMail{} // nothing to read or send: packages are carried (carry.go)
		return n.tr, nil
	}
	if c.IMAP == "" || c.SMTP == "" {
		return nil, fmt.Errorf("no mailbox configured: run `sealpost init --address ... --imap HOST:PORT --smtp HOST:PORT ...`")
	}
	tr, err := c.transport(n.log)
	if err != nil {
		return nil, err
	}
	n.tr = tr
	return tr, nil
}

// transport builds the mailbox transport these settings describe.
func (c MailConfig) transport(log *slog.Logger) (*mailbox.IMAPSMTP, error) {
	secret, auth, err := c.secret()
	if err != nil {
		return nil, err
	}
	return mailbox.New(mailbox.Config{
		Address: c.Address, IMAPAddr: c.IMAP, SMTPAddr: c.SMTP, Username: c.Login, Secret: secret, Auth: auth,
		TLS: mailbox.TLSMode(c.TLS), CAFile: c.CAFile, AllowPlaintextAuth: c.AllowPlaintextAuth,
		PollInterval: c.PollInterval, SMTPConnections: c.SMTPConnections, Logger: log,
	})
}

// CheckMail logs in to the IMAP and SMTP servers of c, as an agent would, and returns the first
// failure. It sends and moves no mail; `sealpost init` runs it before storing the settings.
func CheckMail(ctx context.Context, c MailConfig, log *slog.Logger) error {
	tr, err := c.transport(log)
	if err != nil {
		return err
	}
	defer tr.Close()
	return tr.Verify(ctx)
}

// secret is where the password or token comes from at each login, and how it is sent. A
// variable is read once per process (the environment does not change under it); a file and a
// command are read at every login, so that a changed password or a refreshed token is used.
func (c MailConfig) secret() (mailbox.SecretSource, mailbox.AuthMechanism, error) {
	switch {
	case c.OAuth2TokenCommand != "":
		mech := mailbox.AuthMechanism(c.OAuth2Mechanism)
		if mech == "" {
			mech = mailbox.AuthXOAUTH2
		}
		return mailbox.CommandSecret(c.OAuth2TokenCommand, 0), mech, nil
	case c.PasswordCommand != "":
		return mailbox.CommandSecret(c.PasswordCommand, 0), mailbox.AuthPassword, nil
	case c.PasswordFile != "":
		// FileSecret reads at every login; a file that cannot be read is checked once here so
		// that the agent says so at once (and stops: no retry brings the file back).
		if _, err := os.Stat(c.PasswordFile); err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrSecretUnavailable, err)
		}
		return mailbox.FileSecret(c.PasswordFile), mailbox.AuthPassword, nil
	case c.PasswordEnv == "":
		return nil, mailbox.AuthPassword, nil
	}
	pw, ok := os.LookupEnv(c.PasswordEnv)
	if !ok {
		return nil, "", fmt.Errorf("%w: it is read from $%s, which is not set in this environment", ErrSecretUnavailable, c.PasswordEnv)
	}
	return mailbox.StaticSecret(pw), mailbox.AuthPassword, nil
}

// update runs fn in one state transaction with the protocol store bound to it.
func (n *Node) update(fn func(tx *keystore.Tx, st TxStore) error) error {
	return n.store.Update(func(tx *keystore.Tx) error { return fn(tx, TxStore{tx}) })
}

func (n *Node) view(fn func(tx *keystore.Tx, st TxStore) error) error {
	return n.store.View(func(tx *keystore.Tx) error { return fn(tx, TxStore{tx}) })
}
