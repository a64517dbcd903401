//go:build genv1

// Command gen-v1 writes keystore/testdata/state-v1.db (and its sidecar state-v1.gen): a state
// file in schema 1, the layout before every record had a typed home, holding one or more of each
// record the node kept then, in the JSON shapes node wrote. It must be built against the keystore
// of schema 1 (commit abee894 or earlier), which still has the generic config API:
//
//	git worktree add ../v1 abee894
//	cp -r keystore/testdata/gen-v1 ../v1/keystore/testdata/
//	(cd ../v1 && go run -tags genv1 ./keystore/testdata/gen-v1 -dir /tmp/v1state)
//	cp /tmp/v1state/state.db keystore/testdata/state-v1.db
//	cp /tmp/v1state/state.gen keystore/testdata/state-v1.gen
//
// The values are fixed (keys from fixed seeds, a fixed clock), so every run writes the same
// records; the file's bytes still differ between runs in the random store id. TestMigrateV1File
// (migrate_test.go) checks each record against the same values.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/sealpost/sealpost/keystore"
)

var t0 = time.Date(2031, 3, 4, 5, 6, 7, 8, time.UTC)

func id(n byte) [16]byte {
	var v [16]byte
	v[0] = 0xC0
	v[15] = n
	return v
}

func peer(name string, seed byte) keystore.Peer {
	pub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	var fp [16]byte
	copy(fp[:], sum[:])
	return keystore.Peer{Name: name, Address: name + "@example.org", PublicKey: pub, Fingerprint: fp, AddedAt: t0, LastSeen: t0.Add(time.Hour)}
}

type hexFP [16]byte

func (f hexFP) MarshalText() ([]byte, error) { return fmt.Appendf(nil, "%x", f[:]), nil }

// The shapes node wrote (node/controller.go, inbox.go, process.go, restore.go).
type queued struct {
	Peer     hexFP     `json:"peer"`
	Frame    []byte    `json:"frame"`
	NotAfter time.Time `json:"not_after"`
	Queued   time.Time `json:"queued,omitzero"`
}

type retryState struct {
	Last  time.Time `json:"last"`
	Count int       `json:"count"`
}

type owedAck struct {
	Mailbox     string `json:"mailbox"`
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
}

type processedMark struct {
	UIDValidity uint32 `json:"uidvalidity"`
	UID         uint32 `json:"uid"`
	Rebase      bool   `json:"rebase,omitempty"`
}

type mailFailures struct {
	UIDValidity uint32    `json:"uidvalidity"`
	UID         uint32    `json:"uid"`
	First       time.Time `json:"first"`
	Count       int       `json:"count"`
}

func js(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		log.Fatal(err)
	}
	return b
}

func text(t time.Time) []byte {
	b, err := t.UTC().MarshalText()
	if err != nil {
		log.Fatal(err)
	}
	return b
}

func main() {
	dir := flag.String("dir", "", "state directory to create (must not hold a state yet)")
	flag.Parse()
	if *dir == "" {
		log.Fatal("-dir is required")
	}
	s, err := keystore.Open(*dir, keystore.Options{Now: func() time.Time { return t0 }})
	if err != nil {
		log.Fatal(err)
	}
	alice, bob := peer("alice", 1), peer("bob", 2)
	bob.Allow = []string{"reboot"} // ignored by schema 1 (the policy was under config); must not become a grant
	err = s.Update(func(tx *keystore.Tx) error {
		self := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
		must := func(err error) {
			if err != nil {
				log.Fatal(err)
			}
		}
		must(tx.PutIdentity(keystore.Identity{Address: "me@example.org", PrivateKey: self, Created: t0}))
		must(tx.PutPeer(alice))
		must(tx.PutPeer(bob))
		must(tx.PutPairing("carol@example.org", []byte("opaque pairing blob")))
		must(tx.PutSession(id(0x51), alice.Fingerprint, []byte("opaque session blob")))
		must(tx.PutPending(id(3), bob.Fingerprint, []byte("opaque pending blob")))
		must(tx.PutLedger(alice.Fingerprint, id(0x71), t0.Add(24*time.Hour), []byte("opaque ledger blob")))
		must(tx.PutCursor("INBOX", keystore.Cursor{UIDValidity: 7, LastUID: 43}))
		if _, err := tx.Enqueue(keystore.OutboxItem{To: "bob@example.org", Package: []byte("sealed"), NextAttempt: t0, Created: t0}); err != nil {
			return err
		}

		// Results: two queued commands, one sent (with a retry record), one done.
		results := []keystore.Result{
			{CommandID: id(1), Peer: "bob", Command: []string{"uptime"}, Status: "queued", Sent: t0.Add(2 * time.Second)},
			{CommandID: id(2), Peer: "bob", Command: []string{"df", "-h"}, Status: "queued", Sent: t0.Add(time.Second)},
			{CommandID: id(3), Peer: "bob", Command: []string{"date"}, Status: "sent", Sent: t0},
			{CommandID: id(5), Peer: "alice", Command: []string{"echo", "hi"}, Status: "done", ExitCode: 0,
				Stdout: []byte("hi\n"), Stderr: []byte("warn\n"), Sent: t0.Add(-time.Hour), Finished: t0.Add(-time.Hour + time.Second)},
			{CommandID: id(6), Peer: "alice", Command: []string{"false"}, Status: "failed", ExitCode: 1, Error: "exit status 1",
				Sent: t0.Add(-2 * time.Hour), Finished: t0.Add(-2*time.Hour + time.Second)},
		}
		for _, r := range results {
			must(tx.PutResult(r))
		}

		// The generic config records, each in the shape node wrote.
		put := func(k string, v []byte) { must(tx.PutConfig(k, v)) }
		put("mailbox", []byte(`{"address":"me@example.org","imap":"imap.example.org:993","smtp":"smtp.example.org:465","login":"me","password_env":"SEALPOST_PASSWORD","tls":"implicit","poll_interval":60000000000}`))
		put("restore-floor", text(t0.Add(-24*time.Hour)))
		put("last-prune", text(t0.Add(-3*time.Hour)))
		put("processed-mark", js(processedMark{UIDValidity: 7, UID: 40}))
		put("failing-mail", js(mailFailures{UIDValidity: 7, UID: 44, First: t0.Add(-time.Minute), Count: 2}))
		put("owed-ack/7-42", js(owedAck{Mailbox: "INBOX", UIDValidity: 7, UID: 42}))
		put("owed-ack/7-43", js(owedAck{Mailbox: "INBOX", UIDValidity: 7, UID: 43}))
		put("policy/alice", js([]string{"echo", "uptime"}))
		put("policy/carol", js([]string{"df"})) // a peer still pairing: no pinned key yet
		put(fmt.Sprintf("queue/%x", id(1)), js(queued{Peer: hexFP(bob.Fingerprint), Frame: []byte("frame one"), NotAfter: t0.Add(24 * time.Hour), Queued: t0.Add(2 * time.Second)}))
		put(fmt.Sprintf("queue/%x", id(2)), js(queued{Peer: hexFP(bob.Fingerprint), Frame: []byte("frame two"), NotAfter: t0.Add(24 * time.Hour)})) // written before "queued" existed
		put(fmt.Sprintf("retry/%x", id(3)), js(retryState{Last: t0.Add(time.Minute), Count: 2}))
		put(fmt.Sprintf("retry/%x", id(4)), js(retryState{Last: t0, Count: 1})) // its result is gone
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("wrote", *dir)
}
