package keystore

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Identity is this node's own key pair and mailbox address.
//
// It holds a private key, so every way Go code commonly prints a value —
// slog (LogValue), fmt (String, GoString) and encoding/json (MarshalJSON, which
// slog's JSON handler also uses for values nested in slices or maps) — shows
// the address and "[redacted]" instead of the key. keystore itself stores the
// key through the private identityRecord type.
type Identity struct {
	Address    string
	PrivateKey []byte // ed25519, 64 bytes (seed || public key)
	Created    time.Time
}

const redacted = "[redacted]"

// identityRecord is the stored JSON form; unknown fields are ignored on read.
type identityRecord struct {
	Address    string    `json:"address"`
	PrivateKey []byte    `json:"private_key"`
	Created    time.Time `json:"created"`
}

// LogValue redacts the private key.
func (id Identity) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("address", id.Address),
		slog.String("private_key", redacted),
		slog.Time("created", id.Created),
	)
}

// String redacts the private key (fmt's %v, %s, %+v, %x, %q).
func (id Identity) String() string {
	return fmt.Sprintf("Identity{Address:%s PrivateKey:%s Created:%s}", id.Address, redacted, id.Created.Format(time.RFC3339))
}

// GoString redacts the private key (fmt's %#v).
func (id Identity) GoString() string { return id.String() }

// MarshalJSON redacts the private key. Serialising an Identity for storage
// or export must go through code that handles the key deliberately.
func (id Identity) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Address    string    `json:"address"`
		PrivateKey string    `json:"private_key"`
		Created    time.Time `json:"created"`
	}{id.Address, redacted, id.Created})
}

// PublicKey is the public half of PrivateKey (nil if the key is malformed).
func (id Identity) PublicKey() ed25519.PublicKey {
	if len(id.PrivateKey) != ed25519.PrivateKeySize {
		return nil
	}
	return ed25519.PrivateKey(id.PrivateKey).Public().(ed25519.PublicKey)
}

func (id Identity) validate() error {
	if err := checkAddress("identity address", id.Address); err != nil {
		return err
	}
	if len(id.PrivateKey) != ed25519.PrivateKeySize {
		return invalidf("identity private key is %d bytes, want %d", len(id.PrivateKey), ed25519.PrivateKeySize)
	}
	// An ed25519 private key carries its public key; a mismatch means a
	// truncated or spliced key that would sign with the wrong identity.
	want := ed25519.NewKeyFromSeed(id.PrivateKey[:ed25519.SeedSize])
	if !bytes.Equal(want, id.PrivateKey) {
		return invalidf("identity private key does not match its public half")
	}
	return nil
}

// Identity returns this node's identity, if one has been stored.
func (tx *Tx) Identity() (Identity, bool, error) {
	var r identityRecord
	ok, err := getJSON(tx.bucket(bIdentity), identityKey, "identity", &r)
	if !ok || err != nil {
		return Identity{}, false, err
	}
	return Identity(r), true, nil
}

// PutIdentity stores (or replaces: key rotation is the caller's policy)
// this node's identity. A zero Created is set to now.
func (tx *Tx) PutIdentity(id Identity) error {
	if err := id.validate(); err != nil {
		return err
	}
	if id.Created.IsZero() {
		id.Created = tx.now()
	}
	r := identityRecord{Address: id.Address, PrivateKey: id.PrivateKey, Created: id.Created.UTC()}
	if err := putJSON(tx.bucket(bIdentity), identityKey, r); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_identity", slog.String("address", id.Address))
	}
	return nil
}
