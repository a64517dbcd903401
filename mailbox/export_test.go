package mailbox

import (
	"time"

	"github.com/emersion/go-imap/v2"
)

// Test hooks for the external test package (mailbox_test), which can import fixtures.

// SetRelayCaps makes the relay advertise only these IMAP capabilities, to act as an older
// server (IMAP4rev1 is always kept).
func SetRelayCaps(cfg *RelayConfig, caps ...imap.Cap) {
	cfg.imapCaps = imap.CapSet{imap.CapIMAP4rev1: {}}
	for _, c := range caps {
		cfg.imapCaps[c] = struct{}{}
	}
}

// SetBackoff changes the reconnection backoff of a transport.
func SetBackoff(t *IMAPSMTP, base, max time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.s.backoffBase, t.s.backoffCap = base, max
}

// SetLookPerScan changes how many new UIDs one scan looks at, until the test ends.
func SetLookPerScan(t interface{ Cleanup(func()) }, n int) {
	old := lookPerScan
	lookPerScan = n
	t.Cleanup(func() { lookPerScan = old })
}

// SetSMTPIdle changes how long a submission connection stays open after its last mail, until
// the test ends.
func SetSMTPIdle(t interface{ Cleanup(func()) }, d time.Duration) {
	old := smtpIdle
	smtpIdle = d
	t.Cleanup(func() { smtpIdle = old })
}

// The caps of THREATS.md row 35, for the tests that check them.
const (
	MaxIMAPLine   = maxIMAPLine
	MaxIMAPSearch = maxIMAPSearch
	MaxSMTPLine   = maxSMTPLine
	MaxSMTPReply  = maxSMTPReply
)

// SetRelayClock makes the relay take its UIDVALIDITYs from now instead of the wall clock.
func SetRelayClock(cfg *RelayConfig, now func() time.Time) { cfg.now = now }
