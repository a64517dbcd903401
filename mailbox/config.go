package mailbox

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// TLSMode says how both the IMAP and the SMTP connection are protected.
type TLSMode string

const (
	TLSImplicit TLSMode = "implicit" // TLS from the first byte (IMAP 993, SMTP 465); the default
	TLSStartTLS TLSMode = "starttls" // plaintext greeting, then STARTTLS before anything else
	TLSNone     TLSMode = "none"     // no TLS: loopback test servers only when credentials are set
)

// Config is what New needs. Zero values take the defaults documented on each field.
type Config struct {
	// Address is our mail address: From of sent mail, and the address whose mail Receive
	// returns. With a plus detail (shared+web1@example.org) the mailbox may be shared with other
	// nodes (docs/PROTOCOL.md section 17): mail sent to another address of the same mailbox
	// (Username's too, when that is an address) is left alone, and the default processed and
	// rejected folders get the detail as one more level (sealpost/processed/web1).
	Address            string
	IMAPAddr, SMTPAddr string // host:port
	// Username and Password log in to both servers; Username defaults to Address when only a
	// Password (or a Secret) is given. With none of the three, no login is attempted. Several
	// nodes share one account by logging in with its name and each using an address of its own.
	Username, Password string
	// Secret, when set, is asked at every login for the password (or, with an OAuth2 Auth, the
	// access token) instead of Password, which must then be empty: CommandSecret for
	// --password-command and --oauth2-token-command, FileSecret for --password-file.
	Secret SecretSource
	// Auth is the login mechanism for both servers; "" means AuthPassword. With AuthXOAUTH2 or
	// AuthOAuthBearer, Password or Secret gives the access token.
	Auth AuthMechanism
	TLS  TLSMode // applies to both; "" means implicit
	// CAFile is an extra CA (PEM) for self-signed servers, added to RootCAs (or to the system
	// roots when RootCAs is nil).
	CAFile  string
	RootCAs *x509.CertPool
	// ServerName is the TLS name to verify; default the host part of each address.
	ServerName string
	// AllowPlaintextAuth is explicit consent to send credentials unencrypted; it is only honoured
	// when the server address is loopback.
	AllowPlaintextAuth bool
	// Folders. Defaults "INBOX", "sealpost/processed", "sealpost/rejected"; in the two defaults
	// the "/" becomes the server's hierarchy delimiter.
	Inbox, ProcessedFolder, RejectedFolder string
	// PollInterval is the wait between polls when IDLE is missing (default 30s); it also bounds
	// how long one IDLE runs before it is re-issued (never more than 25 min).
	PollInterval time.Duration
	// CommandTimeout bounds every IMAP and SMTP exchange: when the server sends nothing for this
	// long the connection is closed (default 30s).
	CommandTimeout time.Duration
	DialTimeout    time.Duration // default 15s
	// MaxMessageBytes caps a received mail before it is downloaded or parsed (default 24 MiB).
	MaxMessageBytes int64
	// SMTPConnections is how many mails Send submits at once, each over a connection of its own
	// (default 2). The server syncs each mail to disk before it answers, so a second connection
	// nearly doubles the rate of a backlog (docs/BENCHMARKS.md); 1 for a provider that allows
	// only one.
	SMTPConnections int
	Logger          *slog.Logger // nil = silent; keys: op, mailbox, uid, err
	DisableIDLE     bool         // force polling (tests)
}

const (
	DefaultPollInterval    = 30 * time.Second
	DefaultCommandTimeout  = 30 * time.Second
	DefaultDialTimeout     = 15 * time.Second
	DefaultMaxMessageBytes = 24 << 20
	DefaultSMTPConnections = 2
	maxIdleRun             = 25 * time.Minute // servers drop IDLE after about 30 min (RFC 2177)
	defaultProcessed       = "sealpost/processed"
	defaultRejected        = "sealpost/rejected"
)

// settings is a validated Config with the defaults applied.
type settings struct {
	Config
	imapTLS, smtpTLS *tls.Config // nil for TLSNone
	imapHost         string
	smtpHost         string
	defaultProcessed bool // the folder names are the defaults and follow the server's delimiter
	defaultRejected  bool
	// mailboxes are the account's addresses without a detail (Address's and Username's): mail
	// sent to another address of these is another node's (plus.go).
	mailboxes   []string
	log         *slog.Logger
	idleReissue time.Duration
	backoffBase time.Duration
	backoffCap  time.Duration
}

func configError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, args...))
}

func (c Config) settings() (*settings, error) {
	s := &settings{Config: c}
	if _, err := addrSpec(c.Address); err != nil {
		return nil, configError("address %q: %v", c.Address, err)
	}
	var err error
	if s.imapHost, err = hostOf(c.IMAPAddr); err != nil {
		return nil, configError("IMAP address %q: %v (want host:port, e.g. imap.example.org:993)", c.IMAPAddr, err)
	}
	if s.smtpHost, err = hostOf(c.SMTPAddr); err != nil {
		return nil, configError("SMTP address %q: %v (want host:port, e.g. smtp.example.org:465)", c.SMTPAddr, err)
	}
	switch s.TLS {
	case "":
		s.TLS = TLSImplicit
	case TLSImplicit, TLSStartTLS, TLSNone:
	default:
		return nil, configError("TLS mode %q: want implicit, starttls or none", c.TLS)
	}
	switch s.Auth {
	case "":
		s.Auth = AuthPassword
	case AuthPassword, AuthXOAUTH2, AuthOAuthBearer:
	default:
		return nil, configError("authentication %q: want password, xoauth2 or oauthbearer", c.Auth)
	}
	if c.Secret != nil && c.Password != "" {
		return nil, configError("both a password and a password source are set; give one")
	}
	if s.Auth.oauth() && c.Secret == nil && c.Password == "" {
		return nil, configError("%s authentication needs an access token (a token command)", s.Auth)
	}
	if s.TLS == TLSNone && c.hasCredentials() {
		for _, h := range []string{s.imapHost, s.smtpHost} {
			if !isLoopbackHost(h) {
				return nil, fmt.Errorf("%w: %w: --tls none would send the password for %s in the clear to %s; use --tls implicit (ports 993/465) or --tls starttls (143/587), and --ca-file for a private CA",
					ErrConfig, ErrPlaintextCredentials, c.Username, h)
			}
		}
		if !c.AllowPlaintextAuth {
			return nil, fmt.Errorf("%w: %w: --tls none with credentials needs explicit consent to plaintext authentication (loopback test servers only)",
				ErrConfig, ErrPlaintextCredentials)
		}
	}
	if s.TLS != TLSNone {
		roots := c.RootCAs
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return nil, configError("CA file: %v", err)
			}
			if roots == nil {
				if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
					roots = x509.NewCertPool()
				}
			} else {
				roots = roots.Clone()
			}
			if !roots.AppendCertsFromPEM(pem) {
				return nil, configError("CA file %s holds no PEM certificate", c.CAFile)
			}
		}
		// A session cache per server: an agent connects to the submission server once per
		// batch of mail, and a resumed TLS 1.3 session saves the full handshake and, on
		// Postfix, the ~40 ms its first answer otherwise waits behind its session tickets
		// (docs/BENCHMARKS.md, "Real mail servers"). Not one cache for both: crypto/tls keys
		// sessions by server name, which IMAP and SMTP often share (mail.example.com), and the
		// IMAP server's tickets would displace the SMTP server's. Certificates were checked
		// when the session was made, and resumption re-checks their expiry.
		mk := func(host string) *tls.Config {
			name := c.ServerName
			if name == "" {
				name = host
			}
			return &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		}
		s.imapTLS, s.smtpTLS = mk(s.imapHost), mk(s.smtpHost)
	}
	if s.Inbox == "" {
		s.Inbox = "INBOX"
	}
	// A node with a plus address keeps its own processed and rejected folders: the mailbox may
	// be shared, and Prune and Processed must see this node's mail only (plus.go).
	suffix := ""
	if _, detail, ok := splitPlus(c.Address); ok {
		suffix = "/" + folderDetail(detail)
	}
	if s.ProcessedFolder == "" {
		s.ProcessedFolder, s.defaultProcessed = defaultProcessed+suffix, true
	}
	if s.RejectedFolder == "" {
		s.RejectedFolder, s.defaultRejected = defaultRejected+suffix, true
	}
	s.mailboxes = mailboxesOf(c.Address, c.Username)
	// Prune deletes from the processed folder, so it must be neither the inbox nor the rejected
	// folder. IMAP compares INBOX without regard to case; other names may be case-sensitive.
	sameFolder := func(a, b string) bool {
		return a == b || strings.EqualFold(a, "INBOX") && strings.EqualFold(b, "INBOX")
	}
	if sameFolder(s.ProcessedFolder, s.Inbox) || sameFolder(s.RejectedFolder, s.Inbox) {
		return nil, configError("the processed and rejected folders must differ from the inbox %q", s.Inbox)
	}
	if s.ProcessedFolder == s.RejectedFolder {
		return nil, configError("the processed and rejected folders must differ (both are %q)", s.ProcessedFolder)
	}
	if s.PollInterval <= 0 {
		s.PollInterval = DefaultPollInterval
	}
	if s.CommandTimeout <= 0 {
		s.CommandTimeout = DefaultCommandTimeout
	}
	if s.SMTPConnections <= 0 {
		s.SMTPConnections = DefaultSMTPConnections
	}
	if s.DialTimeout <= 0 {
		s.DialTimeout = DefaultDialTimeout
	}
	if s.MaxMessageBytes <= 0 {
		s.MaxMessageBytes = DefaultMaxMessageBytes
	}
	s.log = c.Logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.idleReissue = min(s.PollInterval, maxIdleRun)
	s.backoffBase, s.backoffCap = 200*time.Millisecond, 30*time.Second
	return s, nil
}

func hostOf(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if host == "" || port == "" {
		return "", errors.New("missing host or port")
	}
	return host, nil
}

// isLoopbackHost reports whether a configured host name is a loopback address. "localhost" counts
// (RFC 6761 reserves it); the connected address is checked again before any credential is sent.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// isLoopbackConn reports whether a connection's peer is a loopback address.
func isLoopbackConn(c net.Conn) bool {
	a, ok := c.RemoteAddr().(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// tlsError turns a certificate verification failure into an error that says what to do.
func tlsError(err error, server string) error {
	var unknown x509.UnknownAuthorityError
	var name x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknown):
		issuer := ""
		if unknown.Cert != nil {
			issuer = fmt.Sprintf(" (issued by %q)", unknown.Cert.Issuer.String())
		}
		return fmt.Errorf("%w: the certificate %s presented%s could not be verified: no trusted CA signed it (%v); if the server uses a self-signed or private CA, give that CA's PEM certificate with --ca-file: run `sealpost init` again with --ca-file FILE (if you gave one already, it holds a different CA)",
			ErrCertificateUntrusted, server, issuer, err)
	case errors.As(err, &name):
		return fmt.Errorf("%w: %s presented a certificate for other names (%v); connect by a name the certificate carries, or set the expected TLS server name",
			ErrCertificateName, server, err)
	case errors.As(err, &invalid):
		return fmt.Errorf("%w: %s presented an invalid certificate (%v)", ErrCertificateUntrusted, server, err)
	}
	return err
}
