package session_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/session"
)

var (
	simSeed     = flag.Uint64("sim.seed", 0, "seed for TestSimulation (0: a new one, printed)")
	simCommands = flag.Int("sim.commands", 10000, "commands TestSimulation exchanges")
)

// message is a package on the simulated mail channel.
type message struct {
	at  int64 // delivery time, simulated ms
	seq int   // tie-breaker, for a deterministic order
	to  *node
	pkg []byte
}

// simChannel drops, duplicates, delays and so reorders packages, from a seeded source.
type simChannel struct {
	rng      *rand.Rand
	now      int64
	queue    []message
	n        int
	drop     float64
	dup      float64
	maxDelay int64
	blackout func(to *node) bool // extra loss, per direction
	stats    map[string]int
}

func (c *simChannel) post(to *node, pkg []byte) {
	c.stats["posted"]++
	if c.rng.Float64() < c.drop || (c.blackout != nil && c.blackout(to)) {
		c.stats["dropped"]++
		return
	}
	copies := 1
	if c.rng.Float64() < c.dup {
		copies = 2
		c.stats["duplicated"]++
	}
	for range copies {
		c.n++
		c.queue = append(c.queue, message{at: c.now + 1 + c.rng.Int64N(c.maxDelay), seq: c.n, to: to, pkg: pkg})
	}
}

// due removes and returns the messages due by now, in delivery order.
func (c *simChannel) due() []message {
	slices.SortFunc(c.queue, func(a, b message) int {
		if a.at != b.at {
			return int(a.at - b.at)
		}
		return a.seq - b.seq
	})
	i := 0
	for i < len(c.queue) && c.queue[i].at <= c.now {
		i++
	}
	out := slices.Clone(c.queue[:i])
	c.queue = c.queue[i:]
	return out
}

// TestSimulation runs thousands of commands between two peers over a channel that drops,
// duplicates, reorders and delays packages, with periods in which every response is lost (so the
// responder runs out of child epochs and asks for re-handshakes). At the end every command ran
// exactly once, every requester has its response, the peers still talk, and no epoch secret
// older than the responder's confirmed one is left in its state.
func TestSimulation(t *testing.T) {
	seed := *simSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	n := *simCommands
	if raceEnabled && n > 2000 {
		n = 2000
	}
	t.Logf("seed %d (rerun with -sim.seed=%d), %d commands", seed, seed, n)
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: %s", seed, fmt.Sprintf(format, args...))
	}

	a, b := pair(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	ch := &simChannel{rng: rng, drop: 0.15, dup: 0.10, maxDelay: 400, stats: map[string]int{}}
	blackoutUntil := int64(-1)
	ch.blackout = func(to *node) bool { return to == a && ch.now < blackoutUntil }
	setClock := func() { a.clock.now = t0.Add(time.Duration(ch.now) * time.Millisecond) }
	b.clock = a.clock
	b = b.withConfig(t, session.Config{Rand: seededReader(seed + 7)})

	const (
		maxInFlight = 48
		rto         = 1500 // ms before a pending command is sent again
	)
	executed := map[session.CommandID]int{}
	delivered := map[session.CommandID]bool{}
	lastSent := map[session.CommandID]int64{}
	rejects := map[string]int{}
	var pastSecrets [][]byte // every epoch secret bob held as confirmed
	hsStarted, handshakes, rekeys := int64(-1), 0, 0
	issued := 0

	startHandshake := func() {
		req, _, err := a.eng.StartSession(a.st, b.fp())
		if err != nil {
			fail("StartSession: %v", err)
		}
		hsStarted = ch.now
		handshakes++
		ch.post(b, req)
	}
	transmit := func(id session.CommandID, first bool, payload []byte) {
		var pkg []byte
		var err error
		if first {
			pkg, err = a.eng.Send(a.st, b.fp(), id, payload, a.clock.now.Add(24*time.Hour))
		} else {
			pkg, err = a.eng.Retry(a.st, id)
		}
		if errors.Is(err, session.ErrNoSession) {
			if first {
				fail("Send without session")
			}
			return
		}
		if err != nil {
			fail("send %s: %v", id, err)
		}
		lastSent[id] = ch.now
		ch.post(b, pkg)
	}
	reason := func(err error) string {
		for name, r := range map[string]error{"replay": session.ErrReplay, "unknown-epoch": session.ErrUnknownEpoch, "unknown-session": session.ErrUnknownSession, "expired": session.ErrExpired} {
			if errors.Is(err, r) {
				return name
			}
		}
		fail("unexpected rejection: %v", err)
		return ""
	}

	lastProgress := int64(0)
	forcedBlackout := false
	for step := 0; ; step++ {
		ch.now += 10
		setClock()
		if issued < n && rng.IntN(3000) == 0 {
			blackoutUntil = ch.now + 3000 // responses lost for three seconds
		}
		// One long blackout at a fixed point, so that every run, however short, exhausts the
		// responder's child window and exercises the re-handshake (random ones may not).
		if !forcedBlackout && issued >= n/4 {
			forcedBlackout = true
			blackoutUntil = ch.now + 20000
		}
		// The controller issues new commands while it has room.
		pend := a.st.PendingIDs()
		for issued < n && len(pend) < maxInFlight && rng.IntN(2) == 0 {
			issued++
			id := cmdID(issued)
			transmit(id, true, fmt.Appendf(nil, "c%d", issued))
			pend = append(pend, id)
		}
		for _, m := range ch.due() {
			out, err := m.to.eng.Receive(m.to.st, m.pkg)
			if err != nil {
				rejects[m.to.name+": "+reason(err)]++
				continue
			}
			switch out.Kind {
			case session.Execute:
				executed[out.Command]++
				want := fmt.Sprintf("c%d", cmdIndex(out.Command))
				if string(out.Payload) != want {
					fail("command %s payload %q, want %q", out.Command, out.Payload, want)
				}
				reply, err := b.eng.Complete(b.st, out.Ticket, append([]byte("ok:"), out.Payload...))
				if err != nil {
					fail("Complete: %v", err)
				}
				ch.post(a, reply)
			case session.Replied, session.HandshakeAccepted:
				if out.Err != nil && out.Err.Code != session.CodeRekey {
					fail("responder answered %v", out.Err)
				}
				if out.Reply != nil { // nil: a duplicate answered within the resend interval
					ch.post(a, out.Reply)
				}
			case session.Delivered:
				if delivered[out.Command] {
					fail("response for %s delivered twice", out.Command)
				}
				if want := fmt.Sprintf("ok:c%d", cmdIndex(out.Command)); string(out.Payload) != want {
					fail("response %q, want %q", out.Payload, want)
				}
				delivered[out.Command] = true
				lastProgress = ch.now
				if out.Rekey {
					rekeys++
					if hsStarted < 0 {
						startHandshake()
					}
				}
			case session.RekeyRequested:
				rekeys++
				if hsStarted < 0 {
					startHandshake()
				}
			case session.SessionConfirmed:
				hsStarted = -1
				for _, id := range a.st.PendingIDs() {
					transmit(id, false, nil)
				}
			case session.Failed:
				fail("command %s failed: %v", out.Command, out.Err)
			}
		}
		// Retries of overdue commands, and of a handshake that got no answer.
		if hsStarted >= 0 && ch.now-hsStarted > 2*rto {
			startHandshake()
		}
		for _, id := range a.st.PendingIDs() {
			if ch.now-lastSent[id] > rto {
				transmit(id, false, nil)
			}
		}
		if s := confirmedResponder(t, b, a.fp()); s != nil {
			if len(s.Children) > session.MaxChildren {
				fail("responder holds %d children", len(s.Children))
			}
			if len(pastSecrets) == 0 || !bytes.Equal(pastSecrets[len(pastSecrets)-1], s.Current.Secret[:]) {
				pastSecrets = append(pastSecrets, bytes.Clone(s.Current.Secret[:]))
			}
		}
		if issued == n && len(a.st.PendingIDs()) == 0 && len(ch.queue) == 0 {
			break
		}
		if ch.now-lastProgress > 600_000 {
			if s := confirmedResponder(t, b, a.fp()); s != nil {
				t.Logf("bob: session %s current %s gen %d children %d window %d", s.ID, s.Current.ID, s.Current.Gen, len(s.Children), s.Window.Highest)
			}
			ids, _ := a.st.SessionsOf(b.fp())
			for _, id := range ids {
				s, _, _ := a.st.Session(id)
				t.Logf("alice: session %s role %v status %v current %s gen %d", s.ID, s.Role, s.Status, s.Current.ID, s.Current.Gen)
			}
			ids, _ = b.st.SessionsOf(a.fp())
			for _, id := range ids {
				s, _, _ := b.st.Session(id)
				t.Logf("bob: session %s role %v status %v current %s gen %d", s.ID, s.Role, s.Status, s.Current.ID, s.Current.Gen)
			}
			t.Logf("rejects %v hsStarted %d", rejects, hsStarted)
			fail("no response for ten simulated minutes: the peers cannot talk (pending %d, issued %d)", len(a.st.PendingIDs()), issued)
		}
	}

	dups := 0
	for i := 1; i <= n; i++ {
		id := cmdID(i)
		if executed[id] != 1 {
			dups++
			t.Errorf("seed %d: command %d executed %d times", seed, i, executed[id])
		}
		if !delivered[id] {
			t.Errorf("seed %d: command %d has no response and is not pending", seed, i)
		}
	}
	// Only the current epoch and its children may remain; every earlier confirmed secret is gone.
	snap := b.st.Snapshot()
	for _, s := range pastSecrets[:len(pastSecrets)-1] {
		if strings.Contains(snap, base64.StdEncoding.EncodeToString(s)) {
			fail("a superseded epoch secret survived in the responder's state")
		}
	}
	// Still talking: ten more commands on a perfect channel, one round trip each.
	for i := n + 1; i <= n+10; i++ {
		roundTrip(t, a, b, i)
	}
	t.Logf("simulated %.0fs: %d commands, %d executions, 0 lost; %d duplicate executions, 0 desynchronised sessions", float64(ch.now)/1000, n, len(executed), dups)
	t.Logf("channel: %v; handshakes %d, rekey requests %d, epochs confirmed %d", ch.stats, handshakes, rekeys, len(pastSecrets))
	t.Logf("rejected (expected under duplication and loss): %v", rejects)
	if handshakes == 0 {
		t.Errorf("seed %d: the run never exercised a re-handshake", seed)
	}
}

// cmdIndex inverts cmdID for the simulation's payload checks.
var cmdIndexCache = map[session.CommandID]int{}

func cmdIndex(id session.CommandID) int {
	if i, ok := cmdIndexCache[id]; ok {
		return i
	}
	for i := len(cmdIndexCache) + 1; ; i++ {
		cmdIndexCache[cmdID(i)] = i
		if cmdID(i) == id {
			return i
		}
	}
}

func confirmedResponder(t *testing.T, b *node, peer session.Fingerprint) *session.State {
	ids, _ := b.st.SessionsOf(peer)
	for _, id := range ids {
		s, _, _ := b.st.Session(id)
		if s.Role == session.Responder && s.Status == session.Confirmed {
			return s
		}
	}
	return nil
}
