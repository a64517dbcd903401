package mailbox_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
)

// TestContractRelayData runs the Transport contract against a relay that keeps its mail on
// disk: every change goes through the store first, and none may change what clients see.
func TestContractRelayData(t *testing.T) {
	r := startRelay(t, mailbox.RelayConfig{Data: filepath.Join(t.TempDir(), "relay")})
	fixtures.RunTransportContract(t, relayEnv(t, r, nil))
}

// restartable starts relays one after another on the same ports, with the clock at the given
// second, as `sealpost relay` restarted would be.
type restartable struct {
	t      *testing.T
	cfg    mailbox.RelayConfig
	r      *mailbox.Relay
	second int64
}

func (rs *restartable) start() *mailbox.Relay {
	rs.t.Helper()
	if rs.r != nil {
		if err := rs.r.Close(); err != nil {
			rs.t.Fatalf("Close: %v", err)
		}
		rs.cfg.SMTPPort, rs.cfg.IMAPPort = port(rs.t, rs.r.SMTPAddr()), port(rs.t, rs.r.IMAPAddr())
	}
	sec := rs.second
	mailbox.SetRelayClock(&rs.cfg, func() time.Time { return time.Unix(sec, 0) })
	rs.r = startRelay(rs.t, rs.cfg)
	return rs.r
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, ps, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(ps)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func uidValidity(t *testing.T, r *mailbox.Relay, user, folder string) uint32 {
	t.Helper()
	tr := newTransport(t, r, user, nil)
	_, cur, err := tr.Receive(context.Background(), mailbox.Cursor{}, 0, 0)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if folder != "INBOX" {
		t.Fatalf("uidValidity reads the INBOX only")
	}
	return cur.UIDValidity
}

// TestRelayRestartNewUIDValidity: a relay started again without data has lost every UID, so
// its mailboxes must carry a new UIDVALIDITY: a client's cursor from the first start must not
// skip the mail of the second (it did: both starts had UIDVALIDITY 1 and UIDs from 1).
func TestRelayRestartNewUIDValidity(t *testing.T) {
	ctx := context.Background()
	rs := &restartable{t: t, second: 1_800_000_000}
	r := rs.start()
	tr := newTransport(t, r, alice, nil)
	for i := range 3 {
		if err := newTransport(t, r, bob, nil).Send(ctx, alice, fixtures.Package(100+i)); err != nil {
			t.Fatal(err)
		}
	}
	got, cur, err := tr.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if err != nil || len(got) != 3 {
		t.Fatalf("Receive on the first start = %d messages, %v; want 3", len(got), err)
	}

	rs.second++
	r = rs.start()
	pkg := fixtures.Package(200)
	if err := newTransport(t, r, bob, nil).Send(ctx, alice, pkg); err != nil {
		t.Fatal(err)
	}
	got, cur2, err := newTransport(t, r, alice, nil).Receive(ctx, cur, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cur2.UIDValidity <= cur.UIDValidity {
		t.Errorf("UIDVALIDITY after a restart = %d, want more than %d", cur2.UIDValidity, cur.UIDValidity)
	}
	if len(got) != 1 || !slices.Equal(got[0].Package, pkg) {
		t.Fatalf("Receive after the restart with the old cursor %+v = %d messages, want the 1 new one", cur, len(got))
	}
}

// TestRelayDataKeepsMail: with Data, a restarted relay serves the same mailboxes with the same
// UIDVALIDITY, UIDs, flags and mail, so cursors stay valid: mail delivered before the restart
// and not yet read is found, nothing is read twice, and new mail gets new UIDs.
func TestRelayDataKeepsMail(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "relay")
	rs := &restartable{t: t, cfg: mailbox.RelayConfig{Data: dir}, second: 1_800_000_000}
	r := rs.start()
	pkgs := map[int][]byte{}
	send := func(r *mailbox.Relay, n int) {
		t.Helper()
		pkgs[n] = fixtures.Package(100 + n)
		if err := newTransport(t, r, bob, nil).Send(ctx, alice, pkgs[n]); err != nil {
			t.Fatal(err)
		}
	}
	send(r, 1)
	send(r, 2)
	tr := newTransport(t, r, alice, nil)
	got, cur, err := tr.Receive(ctx, mailbox.Cursor{}, 0, 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("Receive = %d messages, %v; want 2", len(got), err)
	}
	if err := tr.Ack(ctx, got[0]); err != nil { // to the processed folder
		t.Fatal(err)
	}
	flag := fixtures.IMAPFlagger(r.IMAPAddr(), r.Users(), nil)
	flag(t, alice, "INBOX", got[1].UID, imap.FlagFlagged, "$Custom")
	send(r, 3) // delivered while the agent is away
	inspect := fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
	wantInbox, wantProcessed := inspect(t, alice, "INBOX"), inspect(t, alice, "sealpost/processed")
	if len(wantInbox) != 2 || len(wantProcessed) != 1 {
		t.Fatalf("before the restart: %d in the inbox, %d processed; want 2 and 1", len(wantInbox), len(wantProcessed))
	}

	rs.second -= 100 // a clock set back must not matter either
	r = rs.start()
	inspect = fixtures.IMAPInspector(r.IMAPAddr(), r.Users(), nil)
	for folder, want := range map[string][]fixtures.StoredMail{"INBOX": wantInbox, "sealpost/processed": wantProcessed} {
		got := inspect(t, alice, folder)
		if !slices.EqualFunc(got, want, func(a, b fixtures.StoredMail) bool {
			return a.UID == b.UID && string(a.Raw) == string(b.Raw) && sameFlags(a.Flags, b.Flags)
		}) {
			t.Errorf("%s after the restart = %s, want %s", folder, brief(got), brief(want))
		}
	}
	tr = newTransport(t, r, alice, nil)
	got, cur2, err := tr.Receive(ctx, cur, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if cur2.UIDValidity != cur.UIDValidity {
		t.Errorf("UIDVALIDITY after the restart = %d, want the same %d", cur2.UIDValidity, cur.UIDValidity)
	}
	if len(got) != 1 || !slices.Equal(got[0].Package, pkgs[3]) {
		t.Fatalf("Receive after the restart = %d messages, want the one delivered before it", len(got))
	}
	send(r, 4)
	got, _, err = tr.Receive(ctx, cur2, 0, 0)
	if err != nil || len(got) != 1 || got[0].UID <= cur2.LastUID {
		t.Fatalf("Receive of new mail = %v, %v; want one with a UID past %d", got, err, cur2.LastUID)
	}
	if err := tr.Ack(ctx, got...); err != nil {
		t.Fatal(err)
	}
	if p := inspect(t, alice, "sealpost/processed"); len(p) != 2 || p[1].UID <= p[0].UID {
		t.Errorf("processed after the restart = %v, want 2 with rising UIDs", p)
	}
}

func sameFlags(a, b []imap.Flag) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestRelayDataNewMailboxUIDValidity: a mailbox created after a restart (a user added, a folder
// deleted and created again) gets a UIDVALIDITY greater than any the data handed out before,
// even with the clock set back.
func TestRelayDataNewMailboxUIDValidity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "relay")
	rs := &restartable{t: t, cfg: mailbox.RelayConfig{Data: dir, Users: map[string]string{alice: "a"}}, second: 1_800_000_000}
	first := uidValidity(t, rs.start(), alice, "INBOX")
	rs.second -= 1000
	rs.cfg.Users = map[string]string{alice: "a", bob: "b"}
	r := rs.start()
	if got := uidValidity(t, r, alice, "INBOX"); got != first {
		t.Errorf("alice's INBOX after the restart: UIDVALIDITY %d, want %d", got, first)
	}
	if got := uidValidity(t, r, bob, "INBOX"); got <= first {
		t.Errorf("bob's new INBOX: UIDVALIDITY %d, want more than %d", got, first)
	}
}

// TestRelayDataDirPrivate: the relay keeps every user's mail in Data, so a directory others can
// reach, a symbolic link or a file is refused.
func TestRelayDataDirPrivate(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	private := filepath.Join(base, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(private, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{open, link, file} {
		r, err := mailbox.StartRelay(context.Background(), mailbox.RelayConfig{Users: relayUsers, Data: dir})
		if err == nil {
			r.Close()
		}
		if !errors.Is(err, mailbox.ErrUnsafeRelayData) {
			t.Errorf("StartRelay(Data: %s) = %v, want ErrUnsafeRelayData", filepath.Base(dir), err)
		}
	}
	made := filepath.Join(base, "made")
	startRelay(t, mailbox.RelayConfig{Data: made})
	if fi, err := os.Stat(made); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("created data directory: %v, %v; want mode 0700", fi.Mode(), err)
	}
}

// TestRelayDataInUse: a second relay on the same data is refused while the first runs (bbolt's
// lock), rather than two relays numbering the same mailboxes.
func TestRelayDataInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "relay")
	startRelay(t, mailbox.RelayConfig{Data: dir})
	r, err := mailbox.StartRelay(context.Background(), mailbox.RelayConfig{Users: relayUsers, Data: dir})
	if err == nil {
		r.Close()
		t.Fatal("a second relay started on the same data")
	}
}

// brief is a folder's UIDs, flags and mail sizes, for failure messages.
func brief(l []fixtures.StoredMail) string {
	s := ""
	for _, m := range l {
		s += fmt.Sprintf("[%d %v %dB]", m.UID, m.Flags, len(m.Raw))
	}
	return s
}
