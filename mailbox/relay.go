package mailbox

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// The embedded relay is a small in-process mail system for demos, labs and tests: an SMTP server
// (go-smtp) that delivers into an in-memory IMAP server (go-imap's imapserver + a copy of its
// imapmemserver, relaymem_*.go) for a fixed set of users. Nothing is stored on disk unless
// RelayConfig.Data names a directory (relaystore.go). By default it listens on loopback only,
// without TLS and with plaintext authentication; it is not a production mail server.
//
// UIDVALIDITY: clients keep cursors as (UIDVALIDITY, UID), so a relay must never serve new
// UIDs under a UIDVALIDITY a client has seen before. In memory, every mailbox of a start gets
// the start's second (Unix time) as UIDVALIDITY: a relay started in a later second has greater
// ones, and clients read its mailboxes from the beginning. (`sealpost relay` starts no earlier
// than the second after it was run, so that two starts never share one.) With Data, mailboxes
// keep their UIDVALIDITY, UIDs and flags across restarts, and cursors stay valid.
//
// SMTP: mail to one of the users is accepted with or without authentication, as a real MX would
// (so tests can inject forged mail); mail from one of the users' addresses needs AUTH PLAIN as
// that user (submission). A user's plus addresses (carol+web1@ for carol@) are delivered to,
// and may be sent from by, that user, as real servers do. Mail to anyone else is refused: the
// relay delivers nowhere but its own mailboxes. IMAP: each user logs in with the address as user name and has an INBOX; IDLE pushes
// new mail at once.

// RelayConfig configures StartRelay. Zero values take the defaults.
type RelayConfig struct {
	// Listen is the IP address to listen on (default 127.0.0.1). A non-loopback address is
	// refused unless TLS is set.
	Listen string
	// SMTPPort, IMAPPort: 0 picks a free port (the listener binds port 0; nothing is guessed).
	SMTPPort, IMAPPort int
	// Users maps each address to its password.
	Users map[string]string
	// Tokens, when set, makes both servers offer SASL XOAUTH2 and OAUTHBEARER besides PLAIN
	// and says whether an OAuth2 access token logs in a user (named as in Users); see
	// relay_auth.go. For tests and labs: a real provider asks its authorization server.
	Tokens func(user, token string) bool
	// Logger; nil = silent.
	Logger *slog.Logger
	// MaxMessageBytes is the largest mail the SMTP server accepts (default 24 MiB), advertised as
	// SIZE.
	MaxMessageBytes int64
	// TLS, when set, is offered as STARTTLS on both servers, or from the first byte with
	// ImplicitTLS; authentication then needs TLS. For labs and tests with a private CA.
	TLS         *tls.Config
	ImplicitTLS bool
	// Data, when set, is a private directory (created 0700 if missing; refused with
	// ErrUnsafeRelayData if group or others can reach it, or it is a symbolic link or another
	// user's) where the relay keeps every user's mailboxes, messages, flags and UIDs in one
	// bbolt file, relay.db, committed before each change is acknowledged. Empty: memory only.
	Data string

	now      func() time.Time // tests: the clock UIDVALIDITYs come from (default time.Now)
	imapCaps imap.CapSet      // tests: act as an older server (no MOVE, no UIDPLUS)
}

// Relay is a running embedded relay.
type Relay struct {
	users   map[string]string
	tokens  func(user, token string) bool
	mem     map[string]*memUser // by lower-cased address
	db      *relayDB            // nil: in memory only
	smtpSrv *smtp.Server
	imapSrv *imapserver.Server
	smtpLn  net.Listener
	imapLn  net.Listener
	log     *slog.Logger
	maxMsg  int64
	wg      sync.WaitGroup

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
	stopCtx   func() bool
}

// StartRelay starts the relay; it runs until Close or until ctx ends.
func StartRelay(ctx context.Context, cfg RelayConfig) (*Relay, error) {
	host := cfg.Listen
	if host == "" {
		host = "127.0.0.1"
	}
	if !isLoopbackHost(host) && cfg.TLS == nil {
		return nil, fmt.Errorf("relay: refusing to listen on %s without TLS: its users' passwords would cross the network in the clear; listen on 127.0.0.1 or configure TLS", host)
	}
	if len(cfg.Users) == 0 {
		return nil, errors.New("relay: no users")
	}
	r := &Relay{
		users:  map[string]string{},
		tokens: cfg.Tokens,
		mem:    map[string]*memUser{},
		log:    cfg.Logger,
		maxMsg: cfg.MaxMessageBytes,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.maxMsg <= 0 {
		r.maxMsg = DefaultMaxMessageBytes
	}
	now := cfg.now
	if now == nil {
		now = time.Now
	}
	if cfg.Data != "" {
		db, err := openRelayDB(cfg.Data, now)
		if err != nil {
			return nil, err
		}
		r.db = db
	}
	ok := false
	defer func() {
		if !ok && r.db != nil {
			r.db.close()
		}
	}()
	start := clockUIDValidity(now())
	for addr, pw := range cfg.Users {
		if _, err := addrSpec(addr); err != nil {
			return nil, fmt.Errorf("relay: user %q: %v", addr, err)
		}
		key := strings.ToLower(addr)
		if _, dup := r.mem[key]; dup {
			return nil, fmt.Errorf("relay: user %q given twice", addr)
		}
		u := newMemUser(addr, pw)
		u.key, u.db, u.start = key, r.db, start
		if r.db != nil {
			stored, err := r.db.load(key)
			if err != nil {
				return nil, err
			}
			for name, mbox := range stored {
				mbox.db, mbox.user = r.db, key
				u.mailboxes[name] = mbox
			}
		}
		if u.mailboxes["INBOX"] == nil {
			if err := u.Create("INBOX", nil); err != nil {
				return nil, fmt.Errorf("relay: %w", err)
			}
		}
		r.users[addr] = pw
		r.mem[key] = u
	}

	caps := cfg.imapCaps
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	}
	imapOpts := &imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &relayIMAPSession{r: r}, nil, nil
		},
		Caps:         caps,
		Logger:       printfLogger{r.log, "relay-imap"},
		InsecureAuth: cfg.TLS == nil,
	}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &relaySession{r: r}, nil
	}))
	s.Domain = "localhost"
	s.MaxMessageBytes = r.maxMsg
	s.MaxRecipients = 50
	s.AllowInsecureAuth = cfg.TLS == nil
	s.ReadTimeout = 2 * time.Minute
	s.WriteTimeout = 2 * time.Minute
	s.ErrorLog = printfLogger{r.log, "relay-smtp"}
	if cfg.TLS != nil && !cfg.ImplicitTLS {
		imapOpts.TLSConfig = cfg.TLS
		s.TLSConfig = cfg.TLS
	}
	r.smtpSrv = s
	r.imapSrv = imapserver.New(imapOpts)

	listen := func(port int) (net.Listener, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("relay: %w", err)
		}
		if cfg.TLS != nil && cfg.ImplicitTLS {
			ln = tls.NewListener(ln, cfg.TLS)
		}
		return ln, nil
	}
	var err error
	if r.smtpLn, err = listen(cfg.SMTPPort); err != nil {
		return nil, err
	}
	if r.imapLn, err = listen(cfg.IMAPPort); err != nil {
		r.smtpLn.Close()
		return nil, err
	}
	ok = true
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		if err := r.smtpSrv.Serve(r.smtpLn); err != nil && !r.closing.Load() {
			r.log.Warn("relay SMTP server stopped", "op", "relay", "err", err)
		}
	}()
	go func() {
		defer r.wg.Done()
		if err := r.imapSrv.Serve(r.imapLn); err != nil && !r.closing.Load() {
			r.log.Warn("relay IMAP server stopped", "op", "relay", "err", err)
		}
	}()
	r.stopCtx = context.AfterFunc(ctx, func() { r.Close() })
	r.log.Info(fmt.Sprintf("relay started: SMTP %s, IMAP %s, %d users", r.SMTPAddr(), r.IMAPAddr(), len(r.users)), "op", "relay")
	return r, nil
}

// SMTPAddr is the SMTP server's host:port.
func (r *Relay) SMTPAddr() string { return r.smtpLn.Addr().String() }

// IMAPAddr is the IMAP server's host:port.
func (r *Relay) IMAPAddr() string { return r.imapLn.Addr().String() }

// Users returns the users (address -> password), a copy.
func (r *Relay) Users() map[string]string {
	m := make(map[string]string, len(r.users))
	for k, v := range r.users {
		m[k] = v
	}
	return m
}

// Addresses returns the users' addresses, sorted.
func (r *Relay) Addresses() []string {
	l := make([]string, 0, len(r.users))
	for a := range r.users {
		l = append(l, a)
	}
	sort.Strings(l)
	return l
}

// Close stops both servers and drops every connection.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		if r.stopCtx != nil {
			r.stopCtx()
		}
		err1 := r.smtpSrv.Close()
		err2 := r.imapSrv.Close()
		// A server whose Serve had not started yet when Close ran does not know its listener.
		r.smtpLn.Close()
		r.imapLn.Close()
		r.wg.Wait()
		var err3 error
		if r.db != nil {
			err3 = r.db.close()
		}
		if errors.Is(err1, smtp.ErrServerClosed) || errors.Is(err1, net.ErrClosed) {
			err1 = nil
		}
		if errors.Is(err2, net.ErrClosed) {
			err2 = nil
		}
		r.closeErr = errors.Join(err1, err2, err3)
	})
	return r.closeErr
}

func (r *Relay) user(addr string) (*memUser, string) {
	for a := range r.users {
		if strings.EqualFold(a, addr) {
			return r.mem[strings.ToLower(a)], a
		}
	}
	return nil, ""
}

// mailboxOf is the user whose mailbox an address delivers to: the user of that address, else,
// for a plus address (carol+web1@example.test), the user of the address without its detail,
// as Postfix with recipient_delimiter = + and the big providers deliver it (plus.go).
func (r *Relay) mailboxOf(addr string) (*memUser, string) {
	if u, name := r.user(addr); u != nil {
		return u, name
	}
	if base, _, ok := splitPlus(addr); ok {
		return r.user(base)
	}
	return nil, ""
}

// relaySession is one SMTP transaction stream.
type relaySession struct {
	r      *Relay
	authed string
	from   string
	rcpts  []*memUser
	names  []string
}

var _ smtp.AuthSession = (*relaySession)(nil)

func (s *relaySession) AuthMechanisms() []string { return s.r.mechanisms() }

func (s *relaySession) Auth(mech string) (sasl.Server, error) {
	return s.r.saslServer(mech, smtp.ErrAuthFailed, smtp.ErrAuthUnknownMechanism, func(name string) { s.authed = name })
}

func (s *relaySession) Mail(from string, _ *smtp.MailOptions) error {
	// A user owns its address and its plus addresses (carol+web1@ for carol@).
	if _, owner := s.r.mailboxOf(from); s.authed != "" && !strings.EqualFold(owner, s.authed) {
		return &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender address not owned by the authenticated user"}
	}
	if _, local := s.r.mailboxOf(from); local != "" && s.authed == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required to send as a local user"}
	}
	s.from = from
	return nil
}

func (s *relaySession) Rcpt(to string, _ *smtp.RcptOptions) error {
	u, name := s.r.mailboxOf(to)
	if u == nil {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here; this relay delivers only to its own users"}
	}
	s.rcpts = append(s.rcpts, u)
	s.names = append(s.names, name)
	return nil
}

func (s *relaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	now := time.Now()
	for i, u := range s.rcpts {
		if _, err := u.Append("INBOX", literal{bytes.NewReader(b), int64(len(b))}, &imap.AppendOptions{Time: now}); err != nil {
			s.r.log.Warn("relay delivery failed", "op", "relay", "mailbox", s.names[i], "err", err)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Delivery failed, try again later"}
		}
		s.r.log.Debug(fmt.Sprintf("relay delivered %d bytes", len(b)), "op", "relay", "mailbox", s.names[i])
	}
	return nil
}

func (s *relaySession) Reset() {
	s.from, s.rcpts, s.names = "", nil, nil
}

func (s *relaySession) Logout() error { return nil }

// literal is an imap.LiteralReader over bytes.
type literal struct {
	*bytes.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

// printfLogger sends the servers' log lines to slog at debug level (they are mostly clients
// going away).
type printfLogger struct {
	l  *slog.Logger
	op string
}

func (p printfLogger) Printf(format string, args ...any) {
	p.l.Debug(strings.TrimSpace(fmt.Sprintf(format, args...)), "op", p.op)
}

func (p printfLogger) Println(args ...any) {
	p.l.Debug(strings.TrimSpace(fmt.Sprintln(args...)), "op", p.op)
}

// relayIMAPSession is imapmemserver's session with two fixes. imapmemserver's IDLE writes only
// the updates queued after IDLE began, so a mail delivered between a client's last command and
// its IDLE was announced only with the next mail, which may never come (measured: a ping round
// trip now and then took the client's whole 30 s wait). Real servers (Dovecot) send what is
// pending when IDLE starts; so does this one. And imapmemserver lets a folder opened with
// EXAMINE be changed; RFC 3501 (6.3.2) permits no change there, and Dovecot refuses STORE,
// EXPUNGE and MOVE and sets no \Seen: so does this one, so that a client that writes to a
// folder it examined fails here as it would on a real server.
type relayIMAPSession struct {
	*memSession // nil until login

	r        *Relay
	readOnly bool // the selected folder was opened with EXAMINE
}

// errReadOnly refuses a change to a folder opened with EXAMINE.
var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Mailbox is read-only"}

func (s *relayIMAPSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	data, err := s.memSession.Select(name, options)
	s.readOnly = err == nil && options != nil && options.ReadOnly
	return data, err
}

func (s *relayIMAPSession) Unselect() error {
	s.readOnly = false
	return s.memSession.Unselect()
}

func (s *relayIMAPSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	if s.readOnly {
		return errReadOnly
	}
	return s.memSession.Store(w, numSet, flags, options)
}

func (s *relayIMAPSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	if s.readOnly {
		return errReadOnly
	}
	return s.memSession.Expunge(w, uids)
}

func (s *relayIMAPSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if s.readOnly {
		return errReadOnly
	}
	return s.memSession.Move(w, numSet, dest)
}

// Fetch in a folder opened with EXAMINE reads every body section as BODY.PEEK would.
func (s *relayIMAPSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	if s.readOnly && options != nil {
		o := *options
		o.BodySection = make([]*imap.FetchItemBodySection, len(options.BodySection))
		for i, bs := range options.BodySection {
			peek := *bs
			peek.Peek = true
			o.BodySection[i] = &peek
		}
		o.BinarySection = make([]*imap.FetchItemBinarySection, len(options.BinarySection))
		for i, bs := range options.BinarySection {
			peek := *bs
			peek.Peek = true
			o.BinarySection[i] = &peek
		}
		options = &o
	}
	return s.memSession.Fetch(w, numSet, options)
}

var _ imapserver.SessionIMAP4rev2 = (*relayIMAPSession)(nil)

func (s *relayIMAPSession) Login(username, password string) error {
	u, _ := s.r.user(username)
	if u == nil {
		return imapserver.ErrAuthFailed
	}
	if err := u.Login(username, password); err != nil {
		return err
	}
	s.memSession = newMemSession(u)
	return nil
}

func (s *relayIMAPSession) Close() error {
	if s.memSession == nil {
		return nil
	}
	return s.memSession.Close()
}

func (s *relayIMAPSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	if err := s.memSession.Poll(w, true); err != nil {
		return err
	}
	return s.memSession.Idle(w, stop)
}
