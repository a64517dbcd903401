package node

import (
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/sealpost/sealpost/mailbox"
)

// Health: what an operator needs when nothing seems to happen is whether the agent can reach and
// log in to its servers, since when it cannot, and why. The serving loop and the sender record
// each server's last success and failure here (in memory: it describes this process), Status
// reports it, and Serve gives up on errors no retry can mend, so that a supervisor (systemd)
// shows the agent failed instead of a log repeating the same refusal for ever.

// ServerHealth is one mail server as this process last found it.
type ServerHealth struct {
	Role string `json:"role"` // "imap" or "smtp"
	Addr string `json:"addr"`
	// LastOK is the last time an exchange with the server succeeded (a poll, a send).
	LastOK time.Time `json:"last_ok,omitzero"`
	// FailingSince is the first failure of the current run of failures; zero when the last
	// exchange succeeded.
	FailingSince time.Time `json:"failing_since,omitzero"`
	Problem      Problem   `json:"problem,omitempty"`
	LastError    string    `json:"last_error,omitempty"`
}

// Problem says what kind of trouble a server gives, for people and for scripts (status --json).
type Problem string

const (
	ProblemNone    Problem = ""
	ProblemSecret  Problem = "secret"  // the password or token could not be had here
	ProblemLogin   Problem = "login"   // the server refused the credentials
	ProblemConnect Problem = "connect" // the server could not be reached
	ProblemTLS     Problem = "tls"     // the TLS handshake or certificate failed
	ProblemOther   Problem = "other"
)

// ErrSecretUnavailable: the mailbox password or token cannot be had in this environment (its
// variable is not set, its file cannot be read, its command failed). No retry mends that, so the
// agent stops on it.
var ErrSecretUnavailable = errors.New("the mailbox secret is not available")

// PermanentError ends the agent: its servers refuse it in a way that retrying will not mend.
type PermanentError struct {
	Server ServerHealth
	Err    error
}

func (e *PermanentError) Error() string {
	return "giving up on " + e.Server.Role + " server " + e.Server.Addr + ": " + e.Err.Error()
}

func (e *PermanentError) Unwrap() error { return e.Err }

// loginRefusalsToGiveUp is how many refusals of the credentials in a row end the agent. One
// refusal may be the server's passing trouble (an auth process restarting); several in a row,
// seconds apart with backoff, are a wrong password.
const loginRefusalsToGiveUp = 5

// serverTrouble reports an error of the server or the credentials rather than of one mail.
func serverTrouble(err error) bool {
	switch classify(err) {
	case ProblemSecret, ProblemLogin, ProblemConnect, ProblemTLS:
		return true
	}
	return false
}

// giveUpSpan is the least time between the first and the last of the refusals that end the
// agent: five refusals within a second (one flush round, a burst of retries) may be one blip of
// the server's authentication, five over a minute are a wrong password.
const giveUpSpan = time.Minute

// classify names the kind of a mailbox error.
func classify(err error) Problem {
	var (
		netErr   net.Error
		opErr    *net.OpError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
	)
	switch {
	case err == nil:
		return ProblemNone
	case errors.Is(err, ErrSecretUnavailable):
		return ProblemSecret
	case isAuthRefused(err):
		return ProblemLogin
	case errors.Is(err, mailbox.ErrCertificateUntrusted), errors.Is(err, mailbox.ErrCertificateName),
		errors.As(err, &unknown), errors.As(err, &hostname):
		return ProblemTLS
	case errors.As(err, &opErr), errors.As(err, &netErr), errors.Is(err, mailbox.ErrTimeout):
		return ProblemConnect
	}
	return ProblemOther
}

// health is this process's record of its servers.
type health struct {
	mu            sync.Mutex
	imap, smtp    ServerHealth
	loginRefusals int           // in a row, on either server
	firstRefusal  time.Time     // of the current run of refusals
	span          time.Duration // giveUpSpan; tests shorten it
}

func (h *health) server(role string) *ServerHealth {
	s := &h.imap
	if role == "smtp" {
		s = &h.smtp
	}
	s.Role = role
	return s
}

// ok records a successful exchange with the server.
func (h *health) ok(role string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.server(role)
	s.LastOK, s.FailingSince, s.Problem, s.LastError = now, time.Time{}, ProblemNone, ""
	h.loginRefusals = 0
}

// failed records a failed exchange and returns a *PermanentError when no retry will mend it.
func (h *health) failed(role string, err error, now time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.server(role)
	if s.FailingSince.IsZero() {
		s.FailingSince = now
	}
	s.Problem, s.LastError = classify(err), Printable(err.Error())
	switch s.Problem {
	case ProblemSecret:
		return &PermanentError{Server: *s, Err: err}
	case ProblemLogin:
		if h.loginRefusals == 0 {
			h.firstRefusal = now
		}
		h.loginRefusals++
		span := giveUpSpan
		if h.span != 0 {
			span = h.span
		}
		if h.loginRefusals >= loginRefusalsToGiveUp && now.Sub(h.firstRefusal) >= span {
			return &PermanentError{Server: *s, Err: err}
		}
	}
	return nil
}

func (h *health) snapshot() []ServerHealth {
	h.mu.Lock()
	defer h.mu.Unlock()
	return []ServerHealth{*h.server("imap"), *h.server("smtp")}
}

// isAuthRefused reports a server's refusal of the credentials (mailbox.ErrAuthFailed: mailbox
// tells IMAP's AUTHENTICATIONFAILED and SMTP's 535 apart from other trouble), or a password or
// token command that failed (mailbox.ErrNoSecret): either may pass (a server's auth process
// restarting, a vault briefly away), so they count towards giving up rather than end the agent.
func isAuthRefused(err error) bool {
	return errors.Is(err, mailbox.ErrAuthFailed) || errors.Is(err, mailbox.ErrNoSecret)
}
