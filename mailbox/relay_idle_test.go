package mailbox

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestRelayIdleAnnouncesPendingMail: a mail delivered while a client sits between commands must
// be announced as soon as the client enters IDLE (imapmemserver alone announced it only with
// the next mail; a ping round trip then waited out the client's whole timeout).
func TestRelayIdleAnnouncesPendingMail(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := StartRelay(ctx, RelayConfig{Users: map[string]string{"a@example.test": "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	exists := make(chan uint32, 8)
	c, err := imapclient.DialInsecure(r.IMAPAddr(), &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("a@example.test", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	// Another connection delivers while this one is idle between commands.
	other, err := imapclient.DialInsecure(r.IMAPAddr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Login("a@example.test", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	msg := []byte("Subject: x\r\n\r\nhello\r\n")
	app := other.Append("INBOX", int64(len(msg)), &imap.AppendOptions{})
	app.Write(msg)
	app.Close()
	if _, err := app.Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	select {
	case n := <-exists:
		if n != 1 {
			t.Fatalf("EXISTS %d, want 1", n)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the mail delivered before IDLE was not announced when IDLE began")
	}
}
