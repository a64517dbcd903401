package keystore

import (
	"errors"
	"testing"
)

// TestPeerStateMaxOutput: a peer's output cap is kept in its peer_state row and read back; a
// negative one is refused; a row written before the field existed reads as the default (0).
func TestPeerStateMaxOutput(t *testing.T) {
	s := openTestStore(t)
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutPeerState(PeerState{Name: "bob", MaxOutput: -1}); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutPeerState(MaxOutput -1) = %v; want ErrInvalid", err)
		}
		if err := tx.PutPeerState(PeerState{Name: "bob", MaxOutput: 10 << 30}); err != nil {
			return err
		}
		return tx.bucket(bPeerState).Put([]byte("carol"), []byte(`{"name":"carol","report_every":60000000000}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.View(func(tx *Tx) error {
		if p, ok, err := tx.PeerState("bob"); err != nil || !ok || p.MaxOutput != 10<<30 {
			t.Errorf("PeerState(bob) = %+v, %v, %v; want MaxOutput 10 GiB", p, ok, err)
		}
		if p, ok, err := tx.PeerState("carol"); err != nil || !ok || p.MaxOutput != 0 {
			t.Errorf("PeerState(carol) = %+v, %v, %v; want MaxOutput 0", p, ok, err)
		}
		return nil
	})
}
