package keystore

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretsNeverLogged drives every logging path — Store operations at
// debug level, a rollback warning, and an Identity logged directly in every
// common way — through a slog JSON handler, then searches the output for the
// private key, its seed and a protocol blob in every encoding a log might
// use.
func TestSecretsNeverLogged(t *testing.T) {
	var logs logBuffer
	log := jsonLogger(&logs)
	opts := Options{Logger: log, Now: clockAt(t0)}
	s := openTestStore(t, opts)
	key := testKey(t, 0x5e)
	id := Identity{Address: "agent@example.org", PrivateKey: key, Created: t0}
	epochSecret := []byte("EPOCH-SECRET-0123456789abcdef")

	mustUpdate(t, s, func(tx *Tx) error {
		for _, err := range []error{
			tx.PutIdentity(id),
			tx.PutSession(tid(1), tid(2), epochSecret),
			tx.PutLedger(tid(2), tid(3), t0, epochSecret),
			tx.PutPending(tid(4), tid(2), epochSecret),
			tx.PutPairing("new@example.org", epochSecret),
			tx.PutPeer(testPeer(t, "alice", 1)),
			tx.PutResult(Result{CommandID: tid(5), Peer: "alice", Status: "done", Stdout: epochSecret}),
			tx.PutQueued(QueuedCommand{ID: tid(6), Peer: tid(2), Frame: epochSecret}),
		} {
			if err != nil {
				return err
			}
		}
		_, err := tx.Enqueue(OutboxItem{To: "a@example.org", Package: epochSecret})
		return err
	})
	mustUpdate(t, s, func(tx *Tx) error {
		got, _, err := tx.Identity()
		log.Info("read back", "identity", got)
		if err := tx.DeleteSession(tid(1)); err != nil {
			return err
		}
		if _, err := tx.PurgeLedger(t0.Add(time.Hour)); err != nil {
			return err
		}
		_, err2 := tx.DeleteAllSessions()
		if err == nil {
			err = err2
		}
		return err
	})

	// A rollback, so the warning path runs too.
	dir := s.Dir()
	closeChecked(t, s)
	old := filepath.Join(t.TempDir(), "old.db")
	copyFile(t, filepath.Join(dir, dbFile), old)
	s = openTestStoreIn(t, dir, opts)
	mustUpdate(t, s, func(tx *Tx) error { return tx.PutSession(tid(9), tid(2), epochSecret) })
	closeChecked(t, s)
	copyFile(t, old, filepath.Join(dir, dbFile))
	s = openTestStoreIn(t, dir, opts)
	if !s.Rollback().Detected {
		t.Fatal("setup: rollback not detected")
	}

	// Every way a caller might log an Identity.
	log.Info("value", "identity", id)
	log.Info("pointer", "identity", &id)
	log.Info("slice", "identities", []Identity{id})
	log.Info("map", "identities", map[string]Identity{"self": id})
	log.Info("nested", "wrapper", struct{ Self Identity }{id})
	log.Info(fmt.Sprintf("fmt %v %+v %#v %s %q %x", id, id, id, id, id, id))
	log.Info("result", "result", Result{CommandID: tid(5), Stdout: epochSecret})
	log.Info("outbox", "item", OutboxItem{ID: 1, Package: epochSecret})

	out := logs.String()
	secrets := map[string][]byte{"private key": key, "seed": key.Seed(), "protocol blob": epochSecret}
	for name, secret := range secrets {
		for enc, form := range map[string]string{
			"raw":           string(secret),
			"hex":           hex.EncodeToString(secret),
			"HEX":           strings.ToUpper(hex.EncodeToString(secret)),
			"base64":        base64.StdEncoding.EncodeToString(secret),
			"base64 raw":    base64.RawStdEncoding.EncodeToString(secret),
			"base64url":     base64.URLEncoding.EncodeToString(secret),
			"base64url raw": base64.RawURLEncoding.EncodeToString(secret),
			"go bytes":      fmt.Sprint(secret),
		} {
			if strings.Contains(out, form) {
				t.Errorf("%s appears in the log as %s", name, enc)
			}
		}
	}
	// The log did record the operations, so the search above was not vacuous.
	for _, want := range []string{`"op":"put_identity"`, `"op":"put_session"`, `"op":"put_ledger"`,
		`"op":"delete_all_sessions"`, `"private_key":"[redacted]"`, "restored from an older copy", `"stdout_bytes":29`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("log:\n%s", out)
	}
}
