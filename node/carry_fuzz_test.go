package node

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/sealpost/sealpost/keystore"
)

// FuzzParseCarryFile: a package file read from a directory (import) is outside input. It asserts:
// no panic; an error is a *CarryFileError and comes with the zero value; a file that parses
// marshals back to the same bytes (only the canonical form is accepted). Seeded with a real PAIR
// file. Run with:
//
//	go test -run '^$' -fuzz '^FuzzParseCarryFile$' -fuzztime 60s ./node/
func FuzzParseCarryFile(f *testing.F) {
	n, err := Init(Options{Dir: filepath.Join(f.TempDir(), "state")}, MailConfig{Address: "a@site.invalid", NoMail: true})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := n.AddPeer(context.Background(), PeerSpec{Name: "b", Address: "b@site.invalid", Code: "seed"}); err != nil {
		f.Fatal(err)
	}
	var items []keystore.OutboxItem
	n.store.View(func(tx *keystore.Tx) error { items, err = tx.Outbox(); return err })
	n.Close()
	if len(items) != 1 {
		f.Fatalf("outbox: %d items", len(items))
	}
	good := marshalCarryFile(items[0].To, items[0].Package)
	f.Add(good)
	f.Add([]byte(carryMagic + "b@site.invalid\n\n"))
	f.Add(append([]byte(carryMagic+"B@site.invalid\n\n"), items[0].Package...))
	f.Add(good[:len(good)-1])
	f.Fuzz(func(t *testing.T, b []byte) {
		cf, err := parseCarryFile(b)
		if err != nil {
			var ce *CarryFileError
			if !errors.As(err, &ce) {
				t.Fatalf("parseCarryFile: error %v is a %T, not a *CarryFileError", err, err)
			}
			if cf.To != "" || cf.Package != nil || cf.pkg != nil {
				t.Fatalf("parseCarryFile: error %v with a value %+v", err, cf)
			}
			return
		}
		if again := marshalCarryFile(cf.To, cf.Package); !bytes.Equal(again, b) {
			t.Fatalf("parseCarryFile(%q) re-marshals to %q", b, again)
		}
	})
}
