package session

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
)

// HKDF labels (docs/PROTOCOL.md, "Key schedule"). Every derivation has its own label so no key is
// ever used for two purposes.
const (
	labelPairSalt   = "sealpost/v1/pair-salt"
	labelPairMAC    = "sealpost/v1/pair-mac"
	labelInitRSA    = "sealpost/v1/init-rsa"
	labelTranscript = "sealpost/v1/transcript"
	labelEpoch0     = "sealpost/v1/epoch0"
	labelConfirm    = "sealpost/v1/confirm"
	labelEpochID    = "sealpost/v1/epoch-id"
	labelMessageKey = "sealpost/v1/message-key"
	labelResponse   = "sealpost/v1/response"
	labelChild      = "sealpost/v1/child"
)

func mustHKDF(secret, salt []byte, info string) Secret {
	k, err := hkdf.Key(sha256.New, secret, salt, info, 32)
	if err != nil {
		// Only reachable with an output length over 255*32 bytes, which we never ask for.
		panic("hkdf: " + err.Error())
	}
	var s Secret
	copy(s[:], k)
	return s
}

// epochID derives the public name of an epoch from its secret.
func epochID(s *Secret) EpochID {
	k, err := hkdf.Expand(sha256.New, s[:], labelEpochID, 16)
	if err != nil {
		panic("hkdf: " + err.Error())
	}
	var id EpochID
	copy(id[:], k)
	return id
}

// messageKey is the AES-256 key for one package sealed under secret s: unique per package because
// the header nonce is 16 random bytes, and bound to the package type.
func messageKey(s *Secret, nonce *[16]byte, t Type) Secret {
	return mustHKDF(s[:], nonce[:], labelMessageKey+string([]byte{byte(t)}))
}

// responseSecret keys the answer (RESPONSE or ERROR) to one command: the epoch secret bound to the
// whole command package. The requester keeps it, not the epoch secret, until the answer arrives.
func responseSecret(epoch *Secret, commandHash []byte) Secret {
	return mustHKDF(epoch[:], commandHash, labelResponse)
}

// childSecret is the next epoch: the X25519 output mixed with the response secret (itself the
// parent epoch bound to the command) and both package hashes.
func childSecret(dh []byte, rs *Secret, commandHash, responseHash []byte) Secret {
	info := make([]byte, 0, len(labelChild)+64)
	info = append(append(append(info, labelChild...), commandHash...), responseHash...)
	return mustHKDF(dh, rs[:], string(info))
}

func hmacSHA256(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}
