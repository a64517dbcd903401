package keystore

import (
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on string keys. They are generous; they exist so a corrupt or hostile
// value cannot become a multi-kilobyte bbolt key, and so Check can tell a
// well-formed key from garbage.
const (
	maxAddressLen = 320 // local part 64 + "@" + domain 255
	maxNameLen    = 128
	maxMailboxLen = 1024 // IMAP mailbox names may be long hierarchical paths
)

// id16 is a 16-byte identifier (session id, peer fingerprint, command id).
// Its LogValue renders hex so ids are readable in logs; ids are not secret.
type id16 [16]byte

func (id id16) LogValue() slog.Value { return slog.StringValue(hex.EncodeToString(id[:])) }

func checkID(kind string, id [16]byte) error {
	if id == ([16]byte{}) {
		// An all-zero id is an uninitialised variable, never a random id.
		return invalidf("%s id is zero", kind)
	}
	return nil
}

// pairKey joins two ids into the 32-byte key used by ledger entries and the
// peer indexes: the peer comes first so a prefix scan finds one peer's rows.
func pairKey(a, b [16]byte) []byte {
	k := make([]byte, 32)
	copy(k, a[:])
	copy(k[16:], b[:])
	return k
}

func splitPair(k []byte) (a, b [16]byte) {
	copy(a[:], k[:16])
	copy(b[:], k[16:32])
	return a, b
}

// timeKeyLen is the size of an order-preserving time encoding: Unix seconds
// with the sign bit flipped (so negative times sort first) then nanoseconds.
// It covers every time.Time, unlike UnixNano which overflows outside
// 1678..2262 — a zero or far-future notAfter must still sort correctly.
const timeKeyLen = 12

func putTimeKey(dst []byte, t time.Time) {
	binary.BigEndian.PutUint64(dst, uint64(t.Unix())^(1<<63))
	binary.BigEndian.PutUint32(dst[8:], uint32(t.Nanosecond()))
}

func timeKey(t time.Time) []byte {
	k := make([]byte, timeKeyLen)
	putTimeKey(k, t)
	return k
}

func parseTimeKey(k []byte) time.Time {
	sec := int64(binary.BigEndian.Uint64(k) ^ (1 << 63))
	return time.Unix(sec, int64(binary.BigEndian.Uint32(k[8:]))).UTC()
}

func u64Key(v uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v)
}

// checkText validates a string used as a bbolt key: non-empty, bounded,
// valid UTF-8, no control characters, and (unless spaces are allowed) no
// whitespace. Keys are compared byte for byte; canonicalising (case folding,
// trimming) is the caller's job, because keystore cannot know the rules.
func checkText(kind, s string, max int, spaces bool) error {
	switch {
	case s == "":
		return invalidf("%s is empty", kind)
	case len(s) > max:
		return invalidf("%s is %d bytes, limit %d", kind, len(s), max)
	case !utf8.ValidString(s):
		return invalidf("%s is not valid UTF-8", kind)
	}
	for _, r := range s {
		if unicode.IsControl(r) || (!spaces && unicode.IsSpace(r)) {
			return invalidf("%s %q contains a control or space character", kind, s)
		}
	}
	if spaces && strings.TrimSpace(s) != s {
		return invalidf("%s %q has leading or trailing space", kind, s)
	}
	return nil
}

func checkAddress(kind, a string) error {
	if err := checkText(kind, a, maxAddressLen, false); err != nil {
		return err
	}
	at := strings.LastIndexByte(a, '@')
	if at <= 0 || at == len(a)-1 {
		return invalidf("%s %q is not an email address", kind, a)
	}
	return nil
}

func checkName(n string) error    { return checkText("peer name", n, maxNameLen, false) }
func checkMailbox(m string) error { return checkText("mailbox", m, maxMailboxLen, true) }
func checkBlob(kind string, b []byte) error {
	if len(b) == 0 {
		// Protocol records are never empty; an empty blob is a caller bug
		// and would be indistinguishable from a missing value.
		return invalidf("%s blob is empty", kind)
	}
	return nil
}

// clone copies a value out of (or into) bbolt. bbolt values are only valid
// for the life of the transaction and inputs must stay valid until commit,
// so keystore never lets a caller's slice and a page alias.
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
