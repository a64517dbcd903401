package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/fixtures"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// Benchmarks of two nodes on the real Dovecot + Postfix of scripts/mailserver, each next to the
// bare mail figure it is held against, measured in the same run. Skipped unless
// SEALPOST_MAILSERVER_ENV names the servers' env file; `make bench-real` runs them:
//
//	SEALPOST_MAILSERVER_ENV=/var/tmp/sealpost-mail/mailserver.env go test -run '^$' -bench RealPingRoundTrip -benchtime 60x -count 1 -timeout 30m ./node/
//	SEALPOST_MAILSERVER_ENV=/var/tmp/sealpost-mail/mailserver.env go test -run '^$' -bench RealBacklog500 -benchtime 1x -count 2 -timeout 30m ./node/
//
// docs/BENCHMARKS.md ("Real mail servers") defines every reported metric and records the figures.
// The bare mail is handled by plain go-smtp and go-imap clients, not by package mailbox, so that
// the floor owes nothing to sealpost's own code.

const (
	// floorSamples bare mails (one way, and round trips) are timed per run.
	floorSamples = 30
	// benchMailBytes is the size of the mail that carries a sealed `ping` (BenchmarkPingRelay),
	// the size of every bare mail here.
	benchMailBytes = 1067
	backlogSize    = 500
	// pingBudgetSlack is the allowance on top of two one-way deliveries.
	pingBudgetSlack = 20 * time.Millisecond
)

// BenchmarkRealPingRoundTrip is one `ping` round trip alice -> bob -> alice after the handshake,
// both nodes serving as `sealpost agent` does (Serve), through Postfix (submission, STARTTLS,
// AUTH) and Dovecot (IMAP, STARTTLS): with both waiting in IDLE, and with both polling every
// 500 ms or 100 ms (IDLE turned off, as on a server without it). Before the nodes start, the same run
// times bare mail over the same path with a plain IMAP client waiting the same way: one-way
// delivery (the floor) and bare round trips (a plain mail bounced back at once).
//
// ns/op and rtt-mean-ms are the mean round trip, rtt-p50-ms its median; floor-p50-ms and
// floor-mean-ms the one-way delivery; budget-ms the target, 2 x floor-p50 + 20 ms; rtt/floor
// the ratio of the medians; bare-rtt-p50-ms and bare-rtt-mean-ms the bare round trip.
//
// IDLE is the wait before eager polling: the nodes' transports are wrapped so that they never
// hear Expect, and every mail waits for Dovecot's IDLE notice (about 500 ms). Eager is the
// nodes as they are: after mailing a command or an answer a node polls with NOOP at growing
// intervals (mailbox.IMAPSMTP.Expect). It also reports floor-noop-p50-ms, the one-way delivery
// seen by a plain client that polls with NOOP + UID SEARCH every 5 ms (the mail's own trip,
// without any wait for a notice); target-ms, the goal of eager polling, 1.2 x floor-p50 + 30 ms,
// and rtt/target; and noops/s, the NOOPs both nodes sent per second of round trips (their cost
// to the server).
func BenchmarkRealPingRoundTrip(b *testing.B) {
	ms := fixtures.RealMailServer(b) // the servers are this benchmark's until it ends
	b.Run("IDLE", func(b *testing.B) { benchPingRoundTrip(b, ms, 0, false) })
	b.Run("Eager", func(b *testing.B) { benchPingRoundTrip(b, ms, 0, true) })
	// Two poll intervals: at 500 ms a round trip waits for two polls of 0-500 ms each, whose
	// spread (a standard deviation of about 200 ms per round trip) swamps a 20 ms allowance
	// unless hundreds are timed; at 100 ms the same comparison is five times as sharp.
	b.Run("Polling500ms", func(b *testing.B) { benchPingRoundTrip(b, ms, 500*time.Millisecond, true) })
	b.Run("Polling100ms", func(b *testing.B) { benchPingRoundTrip(b, ms, 100*time.Millisecond, true) })
}

// idleOnly hides a transport's Expect: the node waits as it did before eager polling.
type idleOnly struct{ mailbox.Transport }

// eagerTarget is the goal of eager polling: a round trip within 1.2 x the one-way floor + 30 ms.
func eagerTarget(floor time.Duration) time.Duration { return floor*6/5 + 30*time.Millisecond }

func benchPingRoundTrip(b *testing.B, ms *fixtures.MailServer, poll time.Duration, eager bool) {
	// bobRetryAfter 1 min: bob's mailbox wait is 30 s, as long as a default agent's, so that
	// no early end of a wait re-scans the inbox between IDLE pushes or polls.
	emptyProcessedFolders(b, ms)
	l := newRealLab(b, realOpts{poll: poll, bobRetryAfter: time.Minute, life: time.Hour})

	oneWay := bareOneWay(b, l, poll, floorSamples)
	bareRTT := bareRoundTrips(b, l, poll, floorSamples)
	var noopWay []time.Duration
	if poll == 0 {
		noopWay = bareOneWay(b, l, 5*time.Millisecond, floorSamples)
	}

	// Neither node runs yet: nothing uses the transports while they are wrapped.
	aliceTr, bobTr := l.alice.tr.(*mailbox.IMAPSMTP), l.bob.tr.(*mailbox.IMAPSMTP)
	if !eager {
		l.alice.tr, l.bob.tr = idleOnly{l.alice.tr}, idleOnly{l.bob.tr}
	}
	stopAlice := l.serveAlice()
	l.serveBob()
	ping := RunSpec{Peer: "bob", Request: commands.Request{Name: "ping"}}
	runPing := func() time.Duration {
		ctx, cancel := context.WithTimeout(l.ctx, 30*time.Second)
		defer cancel()
		start := time.Now()
		r, err := l.alice.Run(ctx, ping, true, nil)
		if err != nil || r.Status != StatusDone {
			b.Fatalf("ping: %+v, %v", r, err)
		}
		return time.Since(start)
	}
	for range 3 { // the handshake, then two round trips to settle
		runPing()
	}
	var (
		rtts   []time.Duration
		noops0 = aliceTr.Stats().EagerPolls + bobTr.Stats().EagerPolls
	)
	for i := 0; b.Loop(); i++ {
		if poll > 0 {
			// Two polling agents are two independent timers. Back to back, round trips lock
			// their phases into one pattern, which may favour the round trip or not; restarting
			// both (a Serve loop reads the inbox at once when it starts) at fresh offsets samples
			// the phases evenly, as unsynchronised hosts would have them.
			b.StopTimer()
			stopAlice()
			l.stopBob()
			u1, u2 := phases(i)
			stopAlice = l.serveAlice()
			time.Sleep(time.Duration(u1 * float64(poll)))
			l.serveBob()
			time.Sleep(time.Duration(u2 * float64(poll)))
			b.StartTimer()
		}
		rtts = append(rtts, runPing())
	}

	noops := aliceTr.Stats().EagerPolls + bobTr.Stats().EagerPolls - noops0
	floor, rtt := quantile(oneWay, 0.5), quantile(rtts, 0.5)
	budget := 2*floor + pingBudgetSlack
	target := eagerTarget(floor)
	var sum time.Duration
	for _, d := range rtts {
		sum += d
	}
	b.ReportMetric(msOf(target), "target-ms")
	b.ReportMetric(float64(rtt)/float64(target), "rtt/target")
	b.ReportMetric(float64(noops)/sum.Seconds(), "noops/s")
	if noopWay != nil {
		b.ReportMetric(msOf(quantile(noopWay, 0.5)), "floor-noop-p50-ms")
		b.Logf("one-way, NOOP every 5ms: %s", summary(noopWay))
	}
	b.ReportMetric(msOf(rtt), "rtt-p50-ms")
	b.ReportMetric(msOf(mean(rtts)), "rtt-mean-ms")
	b.ReportMetric(msOf(floor), "floor-p50-ms")
	b.ReportMetric(msOf(mean(oneWay)), "floor-mean-ms")
	b.ReportMetric(msOf(budget), "budget-ms")
	b.ReportMetric(float64(rtt)/float64(floor), "rtt/floor")
	b.ReportMetric(msOf(quantile(bareRTT, 0.5)), "bare-rtt-p50-ms")
	b.ReportMetric(msOf(mean(bareRTT)), "bare-rtt-mean-ms")
	b.Logf("one-way bare delivery: %s", summary(oneWay))
	b.Logf("bare round trip:       %s", summary(bareRTT))
	b.Logf("ping round trip:       %s", summary(rtts))
	verdict := func(got, floor time.Duration) string {
		if got <= 2*floor+pingBudgetSlack {
			return "met"
		}
		return "NOT met"
	}
	b.Logf("target, medians: rtt %s <= 2 x floor + 20ms = %s: %s", rtt.Round(time.Millisecond), budget.Round(time.Millisecond), verdict(rtt, floor))
	b.Logf("target, means:   rtt %s <= 2 x floor + 20ms = %s: %s", mean(rtts).Round(time.Millisecond),
		(2*mean(oneWay) + pingBudgetSlack).Round(time.Millisecond), verdict(mean(rtts), mean(oneWay)))
	met := "met"
	if rtt > target {
		met = "NOT met"
	}
	b.Logf("eager target, medians: rtt %s <= 1.2 x floor + 30ms = %s: %s; %d NOOPs in %s of round trips (%.1f/s)",
		rtt.Round(time.Millisecond), target.Round(time.Millisecond), met, noops, sum.Round(time.Millisecond), float64(noops)/sum.Seconds())
}

// phase returns the i-th point of an even sequence in [0,1) (golden ratio), phases the i-th of an
// even sequence in [0,1)² (R2, Roberts): fixed, evenly spread poll phases, so that a few dozen
// round trips average over the phases well and runs compare.
func phase(i int) float64 { return frac(0.5 + float64(i)*0.6180339887498949) }

func phases(i int) (float64, float64) {
	return frac(0.5 + float64(i)*0.7548776662466927), frac(0.5 + float64(i)*0.5698402909980532)
}

func frac(x float64) float64 { return x - float64(int(x)) }

// serveAlice runs alice's agent until the returned stop is called, or the benchmark ends.
func (l *realLab) serveAlice() (stop func()) {
	ctx, cancel := context.WithCancel(l.ctx)
	done := make(chan struct{})
	go func() { defer close(done); l.alice.Serve(ctx, false) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	l.t.Cleanup(stop)
	return stop
}

// bareOneWay times n plain mails alice -> bob: from the start of the submission to the moment
// the body is fetched by bob's plain IMAP client, which waits in IDLE (poll 0) or polls. Each mail
// goes out once the client is back in IDLE, or at an even spread of phases of its poll.
func bareOneWay(tb testing.TB, l *realLab, poll time.Duration, n int) []time.Duration {
	tb.Helper()
	snd := newBareSMTP(tb, l.ms, realAlice)
	rcv := dialBareIMAP(tb, l.ms, realBob, poll)
	defer rcv.close()
	seen := make(chan time.Time, 1)
	stop := rcv.serve(l.ctx, func(at time.Time, _ []byte) { seen <- at })
	defer stop()
	var out []time.Duration
	for i := range n {
		pause := 300 * time.Millisecond // into IDLE again after the last mail
		if poll > 0 {
			pause += time.Duration(phase(i) * float64(poll))
		}
		time.Sleep(pause)
		out = append(out, timeBareMail(tb, snd, seen, "a bare mail"))
	}
	return out
}

// timeBareMail mails a plain mail alice -> bob through snd and returns the time from the start
// of the submission to the moment done reports (the mail, or the answer to it, was fetched).
func timeBareMail(tb testing.TB, snd *bareSMTP, done <-chan time.Time, what string) time.Duration {
	tb.Helper()
	start := time.Now()
	if err := snd.send(realBob, plainMail(realAlice, realBob, benchMailBytes)); err != nil {
		tb.Fatal(err)
	}
	select {
	case at := <-done:
		return at.Sub(start)
	case <-time.After(30 * time.Second):
		tb.Fatalf("%s did not arrive within 30s", what)
		return 0
	}
}

// bareRoundTrips times n plain round trips: alice mails bob; bob's plain client, on fetching it,
// moves it aside and mails a new one back (the steps of an agent, without sealpost); alice's
// client fetches and moves that one. Both clients wait all along, like the agents; with IDLE
// each round trip starts as soon as the last one ended, like the benchmark loop, and when
// polling both clients restart at fresh offsets before each, as the nodes do.
func bareRoundTrips(tb testing.TB, l *realLab, poll time.Duration, n int) []time.Duration {
	tb.Helper()
	aliceOut, bobOut := newBareSMTP(tb, l.ms, realAlice), newBareSMTP(tb, l.ms, realBob)
	aliceIn, bobIn := dialBareIMAP(tb, l.ms, realAlice, poll), dialBareIMAP(tb, l.ms, realBob, poll)
	defer aliceIn.close()
	defer bobIn.close()
	back := make(chan time.Time, 1)
	serveAlice := func() func() { return aliceIn.serve(l.ctx, func(time.Time, []byte) { back <- time.Now() }) }
	serveBob := func() func() {
		return bobIn.serve(l.ctx, func(time.Time, []byte) {
			if err := bobOut.send(realAlice, plainMail(realBob, realAlice, benchMailBytes)); err != nil {
				tb.Error(err)
			}
		})
	}
	stopAlice, stopBob := serveAlice(), serveBob()
	defer func() { stopAlice(); stopBob() }()
	time.Sleep(300 * time.Millisecond)
	var out []time.Duration
	for i := range n {
		if poll > 0 {
			stopAlice()
			stopBob()
			u1, u2 := phases(i)
			stopAlice = serveAlice()
			time.Sleep(time.Duration(u1 * float64(poll)))
			stopBob = serveBob()
			time.Sleep(time.Duration(u2 * float64(poll)))
		}
		out = append(out, timeBareMail(tb, aliceOut, back, "the answer to a bare mail"))
	}
	return out
}

// BenchmarkRealBacklog500: with bob's agent stopped, alice queues 500 `ping` commands (each
// submitted and mailed at once); once all 500 are in bob's INBOX, bob's agent starts. Before
// that, the same run measures the servers' own rate for 500 plain mails of the same size (see
// serverRate), the target's yardstick.
//
// OnePass times bob's agent until it has mailed an answer to each of the 500 (the SMTP server
// accepted it). AllRun starts alice's agent as well and times until alice holds the result of
// every one. All 500 go out under one epoch; past the window of 32 children bob's answers carry
// the null share (docs/PROTOCOL.md section 7), so one pass runs them all: resent and handshakes
// stay 0 (an earlier protocol answered them with rekey errors, round after round).
//
// ns/op is the timed part; cmds/s is 500 / that; server-mails/s is 500 / (accept + serve) of the
// plain mails; cmds/server is their ratio (the target: at least 0.5); ran is how many of the
// 500 ran (RESPONSE answers bob mailed); answers is how many answers bob mailed (RESPONSE or ERROR);
// resent is how many COMMAND mails alice sent again and handshakes how many handshakes she
// started; send-ms/cmd and ack-ms/cmd are bob's time in Transport.Send and Transport.Ack per
// command of the 500 (Send runs on the agent's sender, beside the handling of the next mail);
// bob-noops is how many eager polls bob's transport sent (mailbox.IMAPSMTP.Expect) in that time.
func BenchmarkRealBacklog500(b *testing.B) {
	ms := fixtures.RealMailServer(b) // the servers are this benchmark's until it ends
	srv := serverRate(b, ms, backlogSize)
	ping := commands.Request{Name: commands.CmdPing}
	b.Run("OnePass", func(b *testing.B) { benchBacklog(b, ms, srv, false, ping) })
	b.Run("AllRun", func(b *testing.B) { benchBacklog(b, ms, srv, true, ping) })
	// The same with a program that runs (exec echo): each command needs its Executing record
	// committed before it starts, one commit per command in turn, where pings are answered in
	// the transaction that accepts them (docs/PROTOCOL.md section 12).
	b.Run("OnePassExec", func(b *testing.B) {
		benchBacklog(b, ms, srv, false, commands.Request{Name: commands.CmdExec, Argv: []string{"echo", "hi"}})
	})
}

// serverFigures is what serverRate measured.
type serverFigures struct {
	accept, deliver, serve time.Duration
}

func (f serverFigures) rate() float64 { return backlogSize / (f.accept + f.serve).Seconds() }

func benchBacklog(b *testing.B, ms *fixtures.MailServer, srv serverFigures, all bool, req commands.Request) {
	for range b.N {
		b.StopTimer()
		emptyProcessedFolders(b, ms)
		// alice's RetryAfter is an agent's default (10 min): only rekeys make her send again.
		l := newRealLab(b, realOpts{bobRetryAfter: time.Minute, aliceRetryAfter: 10 * time.Minute, life: time.Hour})
		spec := RunSpec{Peer: "bob", Request: req}
		l.serveBob()
		if r, err := l.alice.Run(l.ctx, spec, true, nil); err != nil || r.Status != StatusDone { // the handshake
			b.Fatalf("warm-up command: %+v, %v", r, err)
		}
		l.stopBob()
		queued := time.Now()
		ids := make([]session.CommandID, 0, backlogSize)
		for range backlogSize {
			id, err := l.alice.Submit(l.ctx, spec)
			if err != nil {
				b.Fatalf("submit: %v", err)
			}
			ids = append(ids, id)
		}
		submitted := time.Since(queued)
		l.poll("the backlog in bob's INBOX", 2*time.Minute, func() bool {
			time.Sleep(100 * time.Millisecond)
			return fixtures.InboxCount(b, ms.IMAPPlain, realBob, ms.Users[realBob]) >= backlogSize
		})
		b.Logf("alice queued %d pings in %s (%.1f/s); all in bob's INBOX after %s", backlogSize,
			submitted.Round(time.Millisecond), backlogSize/submitted.Seconds(), time.Since(queued).Round(time.Millisecond))

		// Neither agent runs: nothing uses the transports while they are wrapped.
		bobTr, aliceTr := &countingTransport{Transport: l.bob.tr}, &countingTransport{Transport: l.alice.tr}
		l.bob.tr, l.alice.tr = bobTr, aliceTr
		stopAlice := func() {}
		bobNoops := bobTr.Transport.(*mailbox.IMAPSMTP).Stats().EagerPolls
		b.StartTimer()
		start := time.Now()
		// Bob's agent and every goroutine it starts carry the label node=bob, so that a CPU
		// profile of this benchmark (-cpuprofile) can be cut to the agent (-tagfocus node=bob).
		pprof.Do(l.ctx, pprof.Labels("node", "bob"), func(context.Context) { l.serveBob() })
		if all {
			stopAlice = l.serveAlice()
			ctx, cancel := context.WithTimeout(l.ctx, 20*time.Minute)
			for _, id := range ids {
				if r, err := l.alice.Wait(ctx, id, nil); err != nil || r.Status != StatusDone {
					cancel()
					b.Fatalf("command %s: %+v, %v (bob answered %d, ran %d)", id, r, err, bobTr.answers(), bobTr.count("RESPONSE"))
				}
			}
			cancel()
		} else {
			deadline := start.Add(10 * time.Minute)
			for bobTr.answers() < backlogSize {
				if time.Now().After(deadline) {
					b.Fatalf("bob answered %d of %d commands within 10 min", bobTr.answers(), backlogSize)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}
		took := time.Since(start)
		b.StopTimer()
		stopAlice()
		l.stopBob()

		rate := backlogSize / took.Seconds()
		ran := bobTr.count("RESPONSE")
		b.ReportMetric(float64(bobTr.Transport.(*mailbox.IMAPSMTP).Stats().EagerPolls-bobNoops), "bob-noops")
		b.ReportMetric(rate, "cmds/s")
		b.ReportMetric(srv.rate(), "server-mails/s")
		b.ReportMetric(rate/srv.rate(), "cmds/server")
		b.ReportMetric(float64(ran), "ran")
		b.ReportMetric(float64(bobTr.answers()), "answers")
		b.ReportMetric(float64(bobTr.sendNs.Load())/1e6/backlogSize, "send-ms/cmd")
		b.ReportMetric(float64(bobTr.ackNs.Load())/1e6/backlogSize, "ack-ms/cmd")
		if all {
			b.ReportMetric(float64(aliceTr.count("COMMAND")), "resent")
			b.ReportMetric(float64(aliceTr.count("INIT_REQ")), "handshakes")
		}
		b.Logf("server, %d plain mails: accept %s (%.1f/s), all in the INBOX %s after the first, serve %s (%.0f/s): %.1f mails/s",
			backlogSize, srv.accept.Round(time.Millisecond), backlogSize/srv.accept.Seconds(), srv.deliver.Round(time.Millisecond),
			srv.serve.Round(time.Millisecond), backlogSize/srv.serve.Seconds(), srv.rate())
		verdict := "met"
		if rate < srv.rate()/2 {
			verdict = "NOT met"
		}
		b.Logf("%s: %d commands in %s: %.1f/s; %d ran; bob mailed %d answers (%d errors), alice sent %d commands again and %d handshakes; target >= %.1f/s (half the server's rate): %s",
			b.Name(), backlogSize, took.Round(time.Millisecond), rate, ran, bobTr.answers(), bobTr.count("ERROR"),
			aliceTr.count("COMMAND"), aliceTr.count("INIT_REQ"), srv.rate()/2, verdict)
	}
}

// serverRate measures the servers alone on n plain mails alice -> bob: accept is the time of n
// sequential submissions (one connection each, STARTTLS, AUTH PLAIN), deliver the time from the
// first submission until all n are in bob's INBOX, serve the time of one IMAP session (connect,
// STARTTLS, login, select) fetching all n whole with one UID FETCH. Bob's INBOX starts empty and
// keeps the mail (the next lab recreates it).
func serverRate(tb testing.TB, ms *fixtures.MailServer, n int) serverFigures {
	tb.Helper()
	ms.DeleteAndRecreateInbox(tb, realBob)
	mails := make([][]byte, n)
	for i := range mails {
		mails[i] = plainMail(realAlice, realBob, benchMailBytes)
	}
	snd := newBareSMTP(tb, ms, realAlice)
	var accept, deliver, serve time.Duration
	start := time.Now()
	for _, m := range mails {
		if err := snd.send(realBob, m); err != nil {
			tb.Fatal(err)
		}
	}
	accept = time.Since(start)
	deadline := time.Now().Add(2 * time.Minute)
	for fixtures.InboxCount(tb, ms.IMAPPlain, realBob, ms.Users[realBob]) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d plain mails not all in bob's INBOX within 2 min", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	deliver = time.Since(start)

	start = time.Now()
	c, err := imapclient.DialStartTLS(ms.IMAPPlain, &imapclient.Options{TLSConfig: benchTLS(tb, ms)})
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(realBob, ms.Users[realBob]).Wait(); err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		tb.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}}, &imap.FetchOptions{
		UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		tb.Fatal(err)
	}
	serve = time.Since(start)
	got := 0
	for _, m := range msgs {
		if len(m.BodySection) == 1 && len(m.BodySection[0].Bytes) >= benchMailBytes {
			got++
		}
	}
	if got != n {
		tb.Fatalf("fetched %d whole mails, want %d", got, n)
	}
	return serverFigures{accept: accept, deliver: deliver, serve: serve}
}

// countingTransport counts the packages mailed through it by type, and the time spent in Send
// and Ack.
type countingTransport struct {
	mailbox.Transport
	mu            sync.Mutex
	sent          map[string]int
	sendNs, ackNs atomic.Int64
}

func (t *countingTransport) Send(ctx context.Context, to string, pkg []byte) error {
	start := time.Now()
	err := t.Transport.Send(ctx, to, pkg)
	t.sendNs.Add(int64(time.Since(start)))
	if err == nil {
		t.mu.Lock()
		if t.sent == nil {
			t.sent = map[string]int{}
		}
		t.sent[packageType(pkg)]++
		t.mu.Unlock()
	}
	return err
}

func (t *countingTransport) Ack(ctx context.Context, ms ...mailbox.Message) error {
	start := time.Now()
	err := t.Transport.Ack(ctx, ms...)
	t.ackNs.Add(int64(time.Since(start)))
	return err
}

// Expect passes the hint on: the wrapped node polls as it would unwrapped.
func (t *countingTransport) Expect(until time.Time) {
	if e, ok := t.Transport.(expecter); ok {
		e.Expect(until)
	}
}

func (t *countingTransport) count(typ string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent[typ]
}

// answers is how many RESPONSE and ERROR packages went out.
func (t *countingTransport) answers() int { return t.count("RESPONSE") + t.count("ERROR") }

// benchTLS trusts the servers' CA, as the nodes do (--ca-file), for the name 127.0.0.1.
func benchTLS(tb testing.TB, ms *fixtures.MailServer) *tls.Config {
	tb.Helper()
	pem, err := os.ReadFile(ms.CAFile)
	if err != nil {
		tb.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		tb.Fatalf("%s: no certificate", ms.CAFile)
	}
	host, _, _ := net.SplitHostPort(ms.IMAPPlain)
	// A session cache, as the nodes' transport has: resumed sessions spare every submission but
	// the first a full handshake and Postfix's ~40 ms stall behind its session tickets.
	return &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(8)}
}

// bareSMTP submits plain mail the way the nodes' transport does: over the submission port with
// STARTTLS, EHLO and AUTH PLAIN, then MAIL, RCPT, DATA per mail, keeping the connection for the
// next mail when it comes within bareSMTPIdle (the transport's smtpIdle), else QUIT and a new one.
type bareSMTP struct {
	addr, user, password string
	tls                  *tls.Config
	c                    *smtp.Client
	last                 time.Time // when the kept connection sent its last mail
}

const bareSMTPIdle = 10 * time.Second

func newBareSMTP(tb testing.TB, ms *fixtures.MailServer, user string) *bareSMTP {
	s := &bareSMTP{addr: ms.SMTPStartTLS, user: user, password: ms.Users[user], tls: benchTLS(tb, ms)}
	tb.Cleanup(s.close)
	return s
}

func (s *bareSMTP) close() {
	if s.c != nil {
		_ = s.c.Quit()
		s.c.Close()
		s.c = nil
	}
}

func (s *bareSMTP) dial() error {
	nc, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		return err
	}
	c, err := smtp.NewClientStartTLS(nc, s.tls)
	if err != nil {
		nc.Close()
		return fmt.Errorf("STARTTLS: %w", err)
	}
	c.CommandTimeout, c.SubmissionTimeout = 30*time.Second, 30*time.Second
	if err := c.Hello("sealpost.test"); err != nil {
		c.Close()
		return fmt.Errorf("EHLO: %w", err)
	}
	if err := c.Auth(sasl.NewPlainClient("", s.user, s.password)); err != nil {
		c.Close()
		return fmt.Errorf("AUTH: %w", err)
	}
	s.c = c
	return nil
}

func (s *bareSMTP) send(to string, mail []byte) error {
	if s.c != nil && time.Since(s.last) > bareSMTPIdle {
		s.close()
	}
	if s.c == nil {
		if err := s.dial(); err != nil {
			return err
		}
	}
	err := s.transact(to, mail)
	if err != nil {
		s.c.Close()
		s.c = nil
		return err
	}
	s.last = time.Now()
	return nil
}

func (s *bareSMTP) transact(to string, mail []byte) error {
	c := s.c
	if err := c.Mail(s.user, &smtp.MailOptions{Size: int64(len(mail))}); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		return fmt.Errorf("RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(mail); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	return nil
}

// plainMail is a text/plain mail of exactly size bytes with a fresh Message-ID.
func plainMail(from, to string, size int) []byte {
	head := "From: " + from + "\r\nTo: " + to + "\r\nSubject: bare mail\r\nMessage-ID: <" +
		fmt.Sprintf("%016x", rand.Uint64()) + "@sealpost.test>\r\nDate: " + time.Now().Format(time.RFC1123Z) +
		"\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
	var body strings.Builder
	for body.Len() < size-len(head) {
		body.WriteString("The quick brown fox jumps over the lazy dog, and the mail goes on.\r\n")
	}
	b := []byte(head + body.String())[:size-2]
	return append(b, '\r', '\n')
}

// bareIMAP is a plain IMAP client (STARTTLS, LOGIN) on one user's INBOX that waits for new mail
// like the nodes' transport does: in IDLE until the server reports EXISTS, or polling (NOOP, UID
// SEARCH) every poll. It fetches new mail whole and moves it to sealpost.processed (UID MOVE), as
// an agent's Ack does.
type bareIMAP struct {
	c      *imapclient.Client
	poll   time.Duration
	exists chan struct{} // cap 1: the server reported EXISTS
	last   imap.UID
	dest   string
}

func dialBareIMAP(tb testing.TB, ms *fixtures.MailServer, user string, poll time.Duration) *bareIMAP {
	tb.Helper()
	m := &bareIMAP{poll: poll, exists: make(chan struct{}, 1)}
	c, err := imapclient.DialStartTLS(ms.IMAPPlain, &imapclient.Options{
		TLSConfig: benchTLS(tb, ms),
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					select {
					case m.exists <- struct{}{}:
					default:
					}
				}
			},
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	m.c = c
	if err := c.Login(user, ms.Users[user]).Wait(); err != nil {
		tb.Fatal(err)
	}
	list, err := c.List("", "", nil).Collect()
	if err != nil || len(list) != 1 {
		tb.Fatalf("LIST \"\" \"\": %v %v", list, err)
	}
	m.dest = "sealpost" + string(list[0].Delim) + "processed"
	_ = c.Create(m.dest, nil).Wait() // exists already after the lab's pairing
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		tb.Fatal(err)
	}
	m.last = sel.UIDNext - 1
	return m
}

func (m *bareIMAP) close() {
	_ = m.c.Logout().Wait()
	m.c.Close()
}

// serve fetches and moves each new mail and calls handle with the time it was fetched and the
// mail, until stop is called (which waits for the loop to end).
func (m *bareIMAP) serve(ctx context.Context, handle func(at time.Time, mail []byte)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.loop(ctx, handle) }()
	return func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			panic(fmt.Sprintf("bare IMAP client: %v", err))
		}
	}
}

func (m *bareIMAP) loop(ctx context.Context, handle func(time.Time, []byte)) error {
	for {
		select {
		case <-m.exists:
		default:
		}
		if err := m.c.Noop().Wait(); err != nil {
			return err
		}
		data, err := m.c.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{{imap.UIDRange{Start: m.last + 1, Stop: 0}}}}, nil).Wait()
		if err != nil {
			return err
		}
		var uids []imap.UID
		for _, u := range data.AllUIDs() {
			if u > m.last { // "n:*" always matches the highest UID
				uids = append(uids, u)
			}
		}
		if len(uids) > 0 {
			msgs, err := m.c.Fetch(imap.UIDSetNum(uids...), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
			if err != nil {
				return err
			}
			at := time.Now()
			for _, msg := range msgs {
				m.last = max(m.last, msg.UID)
				if _, err := m.c.Move(imap.UIDSetNum(msg.UID), m.dest).Wait(); err != nil {
					return err
				}
				var body []byte
				if len(msg.BodySection) > 0 {
					body = msg.BodySection[0].Bytes
				}
				handle(at, body)
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if m.poll > 0 {
			t := time.NewTimer(m.poll)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
			continue
		}
		idle, err := m.c.Idle()
		if err != nil {
			return err
		}
		select {
		case <-m.exists:
		case <-ctx.Done():
		}
		if err := idle.Close(); err != nil {
			return err
		}
		if err := idle.Wait(); err != nil {
			return err
		}
	}
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(len(ds), 1))
}

// emptyProcessedFolders deletes alice's and bob's sealpost folders (processed and rejected), now
// and when the benchmark ends. They only grow (every test and benchmark moves its mail there),
// and on Dovecot's maildir a MOVE into a folder costs more the more mail it holds: 2-10 ms into an
// empty one, 20-30 ms into one of 10,000 mails. The figures are for a fresh mailbox.
func emptyProcessedFolders(tb testing.TB, ms *fixtures.MailServer) {
	tb.Helper()
	empty := func() {
		for _, user := range []string{realAlice, realBob} {
			c, err := imapclient.DialInsecure(ms.IMAPPlain, nil)
			if err != nil {
				tb.Fatal(err)
			}
			if err := c.Login(user, ms.Users[user]).Wait(); err != nil {
				tb.Fatal(err)
			}
			boxes, err := c.List("", "sealpost*", nil).Collect()
			if err != nil {
				tb.Fatal(err)
			}
			for _, box := range boxes {
				if !slices.Contains(box.Attrs, imap.MailboxAttrNoSelect) {
					if err := c.Delete(box.Mailbox).Wait(); err != nil {
						tb.Fatalf("%s: delete %s: %v", user, box.Mailbox, err)
					}
				}
			}
			c.Logout().Wait()
			c.Close()
		}
	}
	empty()
	tb.Cleanup(empty)
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile returns the q-quantile of ds (nearest rank; the median of an even count is the lower).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(q*float64(len(s)-1))]
}

func summary(ds []time.Duration) string {
	r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("n %d, min %s, p25 %s, median %s, mean %s, p75 %s, max %s", len(ds), r(quantile(ds, 0)),
		r(quantile(ds, 0.25)), r(quantile(ds, 0.5)), r(mean(ds)), r(quantile(ds, 0.75)), r(quantile(ds, 1)))
}
