package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"io"
)

// zeroNonce is the AES-GCM nonce. Every message has its own key (messageKey), so the nonce never
// repeats under a key.
var zeroNonce [12]byte

func newGCM(key *Secret) cipher.AEAD {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic("aes: " + err.Error()) // 32-byte key: unreachable
	}
	g, err := cipher.NewGCM(block)
	if err != nil {
		panic("gcm: " + err.Error())
	}
	return g
}

// sealInto finishes a sealed package whose plaintext already sits in buf after the header slot
// (see encodeInner): it fills in the header, encrypts in place with the header as associated data,
// and returns the package bytes.
func sealInto(buf []byte, h *Header, secret *Secret, rand io.Reader) ([]byte, error) {
	if _, err := io.ReadFull(rand, h.Nonce[:]); err != nil {
		return nil, &LocalError{Op: "read randomness", Err: err}
	}
	plainLen := len(buf) - HeaderSize - tagSize
	h.BodyLen = uint32(plainLen + tagSize)
	h.SigLen = 0
	h.appendTo(buf[:0])
	key := messageKey(secret, &h.Nonce, h.Type)
	newGCM(&key).Seal(buf[HeaderSize:HeaderSize], zeroNonce[:], buf[HeaderSize:HeaderSize+plainLen], buf[:HeaderSize])
	return buf, nil
}

// open decrypts p's body in place under secret; the header bytes are the associated data.
func open(p *Package, raw []byte, secret *Secret) ([]byte, error) {
	key := messageKey(secret, &p.Nonce, p.Type)
	plain, err := newGCM(&key).Open(p.Body[:0], zeroNonce[:], p.Body, raw[:HeaderSize])
	if err != nil {
		return nil, ErrAuth
	}
	return plain, nil
}

func hashPackage(raw []byte) [32]byte { return sha256.Sum256(raw) }
