package session

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
)

// Identity is a node's long-term Ed25519 key. Peers know a node by its Fingerprint, never by
// a mail header.
type Identity struct {
	priv ed25519.PrivateKey
}

// NewIdentity makes a fresh identity from rand (nil means crypto/rand).
func NewIdentity(rand io.Reader) (*Identity, error) {
	_, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("generate identity: %w", err)
	}
	return &Identity{priv: priv}, nil
}

// IdentityFromKey wraps a stored 64-byte Ed25519 private key.
func IdentityFromKey(priv []byte) (*Identity, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("identity key: %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	k := make(ed25519.PrivateKey, len(priv))
	copy(k, priv)
	return &Identity{priv: k}, nil
}

// PrivateKey returns the key for storage. Callers must not log it.
func (id *Identity) PrivateKey() ed25519.PrivateKey { return id.priv }

// Public returns the public key.
func (id *Identity) Public() ed25519.PublicKey { return id.priv.Public().(ed25519.PublicKey) }

// Fingerprint returns FingerprintOf(id.Public()).
func (id *Identity) Fingerprint() Fingerprint { return FingerprintOf(id.Public()) }

// LogValue shows the fingerprint only.
func (id *Identity) LogValue() slog.Value {
	return slog.StringValue("identity " + id.Fingerprint().String())
}

func (id *Identity) sign(msg []byte) []byte { return ed25519.Sign(id.priv, msg) }

// FingerprintOf is the first 16 bytes of SHA-256 over the 32-byte public key.
func FingerprintOf(pub ed25519.PublicKey) Fingerprint {
	sum := sha256.Sum256(pub)
	var f Fingerprint
	copy(f[:], sum[:16])
	return f
}
