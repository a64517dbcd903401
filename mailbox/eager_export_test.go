package mailbox

import "time"

// Test hooks of the eager wait (eager.go) for the external test package.

// EagerInterval is the wait before the next eager poll, elapsed after Expect.
var EagerInterval = eagerInterval

// EagerWait is the wait before t's next eager poll now, and false when no mail is expected.
func EagerWait(t *IMAPSMTP) (time.Duration, bool) { return t.eager(time.Now()) }

// SetWaitHook makes every Receive call f each time it begins to wait (idle: an IDLE runs;
// eager: the wait ends in an eager poll), until the test ends. f runs on the Receive's goroutine.
func SetWaitHook(t interface{ Cleanup(func()) }, f func(idle, eager bool)) {
	onWait.Store(&f)
	t.Cleanup(func() { onWait.Store(nil) })
}
