package session

import (
	cryptorand "crypto/rand"
	"fmt"
	"io"
	"strings"
)

// Pairing codes are Crockford base32: no I, L, O or U, so they survive being read aloud or
// copied by hand; groups of four characters.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// CodeBits is the strength of a generated pairing code.
const CodeBits = 120

// GenerateCode returns a fresh pairing code of CodeBits bits, like "7KQ2-M9XD-...". A nil rand
// means crypto/rand.
func GenerateCode(rand io.Reader) (string, error) {
	if rand == nil {
		rand = cryptorand.Reader
	}
	raw := make([]byte, CodeBits/5)
	if _, err := io.ReadFull(rand, raw); err != nil {
		return "", fmt.Errorf("generate pairing code: %w", err)
	}
	var b strings.Builder
	for i, c := range raw {
		if i > 0 && i%4 == 0 {
			b.WriteByte('-')
		}
		b.WriteByte(crockford[c&31])
	}
	return b.String(), nil
}

// NormalizeCode makes the forms a person may type of one code equal: case, separators and the
// letters Crockford base32 folds (O->0, I and L->1) do not matter. A human-chosen password is
// normalized the same way.
func NormalizeCode(code string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(code) {
		switch r {
		case '-', ' ', '\t', '_':
			continue
		case 'O':
			r = '0'
		case 'I', 'L':
			r = '1'
		}
		b.WriteRune(r)
	}
	return b.String()
}
