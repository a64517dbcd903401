package keystore

import (
	"errors"
	"slices"
	"testing"
)

// TestPeerTags: tags are kept sorted and unique per name, an empty set deletes the row, bad tags
// are refused with ErrInvalid, and Check reads every row.
func TestPeerTags(t *testing.T) {
	s := openTestStore(t, Options{Now: clockAt(t0)})
	if err := s.Update(func(tx *Tx) error {
		if err := tx.PutPeerTags("web1", []string{"web", "eu", "web"}); err != nil {
			return err
		}
		return tx.PutPeerTags("db1", []string{"db"})
	}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "Web", "-x", "a b", "a/b", string(make([]byte, 65))} {
		err := s.Update(func(tx *Tx) error { return tx.PutPeerTags("web1", []string{bad}) })
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("tag %q: %v, want ErrInvalid", bad, err)
		}
	}
	var got map[string][]string
	if err := s.View(func(tx *Tx) error {
		got = map[string][]string{}
		return tx.ForEachPeerTags(func(name string, tags []string) error { got[name] = tags; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got["web1"], []string{"eu", "web"}) || !slices.Equal(got["db1"], []string{"db"}) || len(got) != 2 {
		t.Fatalf("tags = %v", got)
	}
	if err := s.Update(func(tx *Tx) error { return tx.PutPeerTags("db1", nil) }); err != nil {
		t.Fatal(err)
	}
	if err := s.View(func(tx *Tx) error {
		tags, err := tx.PeerTags("db1")
		if err == nil && tags != nil {
			t.Errorf("db1's tags after clearing them: %v", tags)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}
