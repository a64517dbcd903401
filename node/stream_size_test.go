package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/compress"
	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// TestChunkDataForFits: a chunk of chunkDataFor(limit) incompressible bytes, sealed and composed
// as a mail, is at most limit bytes, and one more byte would not be promised to fit.
func TestChunkDataForFits(t *testing.T) {
	l := newLab(t)
	var bob keystore.Peer
	l.alice.store.View(func(tx *keystore.Tx) error { bob, _, _ = tx.Peer("bob"); return nil })
	from, to := l.bob.cfg.Address, l.alice.cfg.Address
	var secret session.Secret
	for _, limit := range []int64{4_000, 40_000, 100_000, 700_000, 1_500_000, DefaultMaxMailSize} {
		n := chunkDataFor(limit, from, to, session.MaxChunkData)
		data := make([]byte, n)
		rand.Read(data)
		frame, err := compress.Encode(data)
		if err != nil {
			t.Fatal(err)
		}
		pkg, err := l.alice.eng.SealChunk(bob.Fingerprint, session.CommandID{1}, &secret, session.Chunk{Payload: frame, Part: session.PartStdout})
		if err != nil {
			t.Fatal(err)
		}
		mail, err := mailbox.ComposeMail(from, to, pkg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(mail)) > limit {
			t.Errorf("chunkDataFor(%d) = %d: its mail is %d bytes", limit, n, len(mail))
		}
		if n < session.MaxChunkData && chunkMailSize(from, to, n+1) <= limit {
			t.Errorf("chunkDataFor(%d) = %d, but %d bytes fit too", limit, n, n+1)
		}
		t.Logf("mail limit %d: chunks of %d bytes, mails of %d", limit, n, len(mail))
	}
	// paddedLen is section 9's bucket, as the engine pads (a drift either way is caught here).
	for _, p := range []int{1, 239, 240, 1000, 65536 - 17, 65536 - 16, 70_000, 81_903, 81_904, session.MaxChunkPayload} {
		pkg, err := l.alice.eng.SealChunk(bob.Fingerprint, session.CommandID{1}, &secret, session.Chunk{Payload: make([]byte, p), Part: session.PartStdout})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(pkg)-session.HeaderSize-16, paddedLen(17+p); got != want {
			t.Errorf("a chunk of a %d-byte payload is padded to %d; paddedLen(%d) = %d", p, got, 17+p, want)
		}
	}
	if n := chunkDataFor(100, from, to, session.MaxChunkData); n != minChunkData {
		t.Errorf("chunkDataFor(100) = %d; want the floor %d", n, minChunkData)
	}
}

// sizedChunks counts the chunks bob mails and the largest, keeping the transport's SizeLimiter.
type sizedChunks struct {
	*mailbox.IMAPSMTP
	mu       sync.Mutex
	chunks   int
	largest  int
	from, to string
}

func (s *sizedChunks) Send(ctx context.Context, to string, pkg []byte) error {
	if isChunk(pkg) {
		s.mu.Lock()
		s.chunks++
		s.largest = max(s.largest, int(mailbox.MailSize(s.from, to, len(pkg))))
		s.mu.Unlock()
	}
	return s.IMAPSMTP.Send(ctx, to, pkg)
}

// TestStreamChunksFitServerSIZE: a mail server that advertises a small SIZE gets chunks small
// enough for it (learned from its EHLO reply), and all of them get through: the output arrives
// whole. With chunks of the reference 1 MiB it refuses them (552) and the stream breaks.
func TestStreamChunksFitServerSIZE(t *testing.T) {
	const limit = 40_000
	l := newLabRelay(t, mailbox.RelayConfig{MaxMessageBytes: limit})
	l.bob.Close()
	sized := &sizedChunks{from: "bob@example.test"}
	l.bob = l.open("bob", func(tr mailbox.Transport) mailbox.Transport { sized.IMAPSMTP = tr.(*mailbox.IMAPSMTP); return sized }, false)
	const size = 300_000
	prog, printed := streamScript(t, l, size)
	l.serveBob()
	defer l.stopBob()
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: commands.Request{Name: "exec", Argv: []string{prog}}}, true, nil)
	if err != nil {
		t.Fatalf("run: %v (%+v)", err, r)
	}
	if r.Status != StatusDone || !r.Streamed {
		t.Fatalf("result %s streamed %v: %s; want done, streamed", r.Status, r.Streamed, r.Error)
	}
	want, _ := os.ReadFile(printed)
	got, _ := os.ReadFile(r.StdoutPath)
	if !bytes.Equal(got, want) {
		t.Fatalf("streamed stdout: %d bytes; want the %d printed", len(got), len(want))
	}
	sized.mu.Lock()
	defer sized.mu.Unlock()
	fit := chunkDataFor(limit, "bob@example.test", "alice@example.test", session.MaxChunkData)
	if sized.largest > limit || sized.chunks < (size+fit-1)/fit {
		t.Fatalf("bob mailed %d chunks, the largest in a mail of %d bytes; want at least %d, each within the server's SIZE %d", sized.chunks, sized.largest, (size+fit-1)/fit, limit)
	}
	t.Logf("%d chunks of at most %d bytes, mails of at most %d bytes", sized.chunks, fit, sized.largest)
}

// TestFilesFitServerSIZE: pull and push cut their chunks to fit the mail server's SIZE too.
func TestFilesFitServerSIZE(t *testing.T) {
	const limit = 40_000
	l := newLabRelay(t, mailbox.RelayConfig{MaxMessageBytes: limit})
	share, inbox := filepath.Join(t.TempDir(), "share"), filepath.Join(t.TempDir(), "inbox")
	os.Mkdir(share, 0o700)
	os.Mkdir(inbox, 0o700)
	if _, err := l.bob.AddPeer(l.ctx, PeerSpec{Name: "alice", AllowRead: []string{share}, AllowWrite: []string{inbox}}); err != nil {
		t.Fatal(err)
	}
	want := randomFile(t, filepath.Join(share, "data"), 200_000)
	l.serveBob()
	defer l.stopBob()
	ctx, cancel := context.WithTimeout(l.ctx, time.Minute)
	defer cancel()
	r, err := l.alice.Run(ctx, RunSpec{Peer: "bob", Request: pullRequest(filepath.Join(share, "data"))}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(r.StdoutPath); r.Status != StatusDone || !bytes.Equal(got, want) {
		t.Fatalf("pull under SIZE %d: %s, %d of %d bytes: %s", limit, r.Status, len(got), len(want), r.Error)
	}
	id, err := l.alice.Push(ctx, PushSpec{Peer: "bob", Local: filepath.Join(share, "data"), Remote: filepath.Join(inbox, "data")})
	if err != nil {
		t.Fatal(err)
	}
	if r, err = l.alice.Wait(ctx, id, nil); err != nil || r.Status != StatusDone || r.ExitCode != 0 {
		t.Fatalf("push under SIZE %d: %v %s exit %d: %s", limit, err, r.Status, r.ExitCode, r.Error)
	}
	if got, _ := os.ReadFile(filepath.Join(inbox, "data")); !bytes.Equal(got, want) {
		t.Fatalf("pushed file: %d of %d bytes", len(got), len(want))
	}
}
