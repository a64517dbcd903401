package mailbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	bolt "go.etcd.io/bbolt"
)

// The relay's store (RelayConfig.Data): one bbolt file, relay.db, in a private directory. Every
// change the IMAP or SMTP side makes to a mailbox is committed there (bbolt: copy-on-write pages
// and an fsync per commit, so a crash leaves the last committed state) before it is made in
// memory and before the client is told; mail the SMTP server accepted (250) is on disk.
//
// Layout (all integers big-endian):
//
//	meta/version            "1"
//	meta/uidvalidity        uint32: the last UIDVALIDITY handed out, to any mailbox
//	users/<address>/        one bucket per user, the address lower-cased
//	  <uidvalidity>/        one bucket per mailbox, named by its UIDVALIDITY (uint32)
//	    name                the mailbox name
//	    uidnext             uint32: the next UID (UIDs of expunged mail are not used again)
//	    subscribed          "1" or absent
//	    mail/<uid>          int64 internal date (Unix nanoseconds), then the raw mail
//	    flags/<uid>         the flags, lower-cased, sorted, separated by one space
//
// UIDVALIDITY: a mailbox keeps the one it was created with for as long as the file holds it, so
// a restarted relay serves the same mailboxes, UIDs and flags and clients' cursors stay valid.
// A new mailbox (a new user's INBOX, a folder a client creates, one deleted and created again)
// gets max(last + 1, the clock's seconds): greater than any this file handed out before.

const relayDBFile = "relay.db"

// ErrUnsafeRelayData means the relay's data directory or file could be read or changed by
// another user, or is not what it should be (a symbolic link, not a directory); the relay
// refuses to use it. The error names the path.
var ErrUnsafeRelayData = errors.New("relay data directory is not private")

// ErrRelayDataDamaged means the relay's data file holds a record it cannot read: the relay does
// not start rather than serve a mailbox with mail missing under a UIDVALIDITY clients trust.
// (bbolt commits are atomic, so a crash does not cause this; a damaged disk or another program
// does.) Moving the file aside starts the relay empty: its new mailboxes take the clock's
// UIDVALIDITY, and clients read them from the beginning.
var ErrRelayDataDamaged = errors.New("relay data damaged")

var (
	bktMeta  = []byte("meta")
	bktUsers = []byte("users")
	bktMail  = []byte("mail")
	bktFlags = []byte("flags")
	keyVer   = []byte("version")
	keyUV    = []byte("uidvalidity")
	keyName  = []byte("name")
	keyNext  = []byte("uidnext")
	keySub   = []byte("subscribed")
)

// relayDB is an open relay store.
type relayDB struct {
	db  *bolt.DB
	now func() time.Time
}

// openRelayDB checks that dir is private (creating it, mode 0700, when missing) and opens or
// creates relay.db in it.
func openRelayDB(dir string, now func() time.Time) (*relayDB, error) {
	if err := checkRelayDir(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, relayDBFile)
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("relay: %s is not a regular file: %w", path, ErrUnsafeRelayData)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("relay: %s is in use (is another relay running with this data directory?): %w", path, err)
		}
		return nil, fmt.Errorf("relay: open %s: %w", path, err)
	}
	s := &relayDB{db: db, now: now}
	err = db.Update(func(tx *bolt.Tx) error {
		m, err := tx.CreateBucketIfNotExists(bktMeta)
		if err != nil {
			return err
		}
		switch v := m.Get(keyVer); {
		case v == nil:
			if err := m.Put(keyVer, []byte("1")); err != nil {
				return err
			}
		case string(v) != "1":
			return fmt.Errorf("relay: %s has format version %q, this build reads 1: %w", path, v, ErrRelayDataDamaged)
		}
		_, err = tx.CreateBucketIfNotExists(bktUsers)
		return err
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func (s *relayDB) close() error { return s.db.Close() }

// checkRelayDir creates dir (0700) if it is missing and refuses it unless it is a directory,
// not a symbolic link, owned by this user and closed to group and others: the relay keeps
// every user's mail there. (A minimal form of keystore.CheckPrivateDir, which this leaf cannot
// import.)
func checkRelayDir(dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("relay: create data directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("relay: data directory: %w", err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("relay: %s is a symbolic link: %w", dir, ErrUnsafeRelayData)
	case !fi.IsDir():
		return fmt.Errorf("relay: %s is not a directory: %w", dir, ErrUnsafeRelayData)
	case !ownedByMe(fi):
		return fmt.Errorf("relay: %s belongs to another user: %w", dir, ErrUnsafeRelayData)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("relay: %s has mode %v, want no access for group and others (chmod 700): %w", dir, fi.Mode().Perm(), ErrUnsafeRelayData)
	}
	return nil
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// mboxBucket returns the bucket of user's mailbox uv, or an error if it is gone.
func mboxBucket(tx *bolt.Tx, user string, uv uint32) (*bolt.Bucket, error) {
	if ub := tx.Bucket(bktUsers).Bucket([]byte(user)); ub != nil {
		if b := ub.Bucket(u32(uv)); b != nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("relay: store: mailbox %d of %s is missing", uv, user)
}

// createMailbox records a new mailbox of user and returns its UIDVALIDITY.
func (s *relayDB) createMailbox(user, name string) (uint32, error) {
	var uv uint32
	err := s.db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bktMeta)
		var last uint32
		if v := m.Get(keyUV); len(v) == 4 {
			last = binary.BigEndian.Uint32(v)
		}
		uv = max(last+1, clockUIDValidity(s.now()))
		if uv == 0 { // wrapped: the year 2106
			return errors.New("relay: store: UIDVALIDITY exhausted")
		}
		if err := m.Put(keyUV, u32(uv)); err != nil {
			return err
		}
		ub, err := tx.Bucket(bktUsers).CreateBucketIfNotExists([]byte(user))
		if err != nil {
			return err
		}
		b, err := ub.CreateBucket(u32(uv))
		if err != nil {
			return err
		}
		for _, kv := range [][2][]byte{{keyName, []byte(name)}, {keyNext, u32(1)}} {
			if err := b.Put(kv[0], kv[1]); err != nil {
				return err
			}
		}
		if _, err := b.CreateBucket(bktMail); err != nil {
			return err
		}
		_, err = b.CreateBucket(bktFlags)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("relay: store: create %s of %s: %w", name, user, err)
	}
	return uv, nil
}

func (s *relayDB) deleteMailbox(user string, uv uint32) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		if _, err := mboxBucket(tx, user, uv); err != nil {
			return err
		}
		return tx.Bucket(bktUsers).Bucket([]byte(user)).DeleteBucket(u32(uv))
	})
}

func (s *relayDB) setMailbox(user string, uv uint32, key, val []byte) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b, err := mboxBucket(tx, user, uv)
		if err != nil {
			return err
		}
		if val == nil {
			return b.Delete(key)
		}
		return b.Put(key, val)
	})
}

func (s *relayDB) renameMailbox(user string, uv uint32, name string) error {
	return s.setMailbox(user, uv, keyName, []byte(name))
}

func (s *relayDB) subscribe(user string, uv uint32, on bool) error {
	var v []byte
	if on {
		v = []byte("1")
	}
	return s.setMailbox(user, uv, keySub, v)
}

// relayOp is one change to a message: an append (msg set: its UID, date, flags and body, and
// the mailbox's next UID after it), new flags (flags), or an expunge.
type relayOp struct {
	uv      uint32
	uid     imap.UID
	msg     *memMessage
	flags   []imap.Flag
	expunge bool
}

// write commits ops, all of user's mailboxes, in one transaction.
func (s *relayDB) write(user string, ops []relayOp) error {
	if len(ops) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, op := range ops {
			b, err := mboxBucket(tx, user, op.uv)
			if err != nil {
				return err
			}
			k := u32(uint32(op.uid))
			switch {
			case op.msg != nil:
				rec := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(op.msg.buf)), uint64(op.msg.t.UnixNano()))
				if err := b.Bucket(bktMail).Put(k, append(rec, op.msg.buf...)); err != nil {
					return err
				}
				if err := b.Bucket(bktFlags).Put(k, encodeRelayFlags(op.msg.flagList())); err != nil {
					return err
				}
				if next := uint32(op.uid) + 1; binary.BigEndian.Uint32(b.Get(keyNext)) < next {
					if err := b.Put(keyNext, u32(next)); err != nil {
						return err
					}
				}
			case op.expunge:
				if err := b.Bucket(bktMail).Delete(k); err != nil {
					return err
				}
				if err := b.Bucket(bktFlags).Delete(k); err != nil {
					return err
				}
			default:
				if err := b.Bucket(bktFlags).Put(k, encodeRelayFlags(op.flags)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("relay: store: %w", err)
	}
	return nil
}

// load returns user's stored mailboxes, by name.
func (s *relayDB) load(user string) (map[string]*memMailbox, error) {
	out := map[string]*memMailbox{}
	err := s.db.View(func(tx *bolt.Tx) error {
		ub := tx.Bucket(bktUsers).Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		return ub.ForEachBucket(func(k []byte) error {
			b := ub.Bucket(k)
			next, mail, flags := b.Get(keyNext), b.Bucket(bktMail), b.Bucket(bktFlags)
			name := string(b.Get(keyName))
			if len(k) != 4 || len(next) != 4 || mail == nil || flags == nil || name == "" || out[name] != nil {
				return fmt.Errorf("mailbox %x of %s: %w", k, user, ErrRelayDataDamaged)
			}
			mbox := newMemMailbox(name, binary.BigEndian.Uint32(k))
			mbox.uidNext = imap.UID(binary.BigEndian.Uint32(next))
			mbox.subscribed = b.Get(keySub) != nil
			err := mail.ForEach(func(uid, rec []byte) error {
				m, err := decodeRelayMail(uid, rec, flags.Get(uid))
				if err != nil || m.uid >= mbox.uidNext || (len(mbox.l) > 0 && m.uid <= mbox.l[len(mbox.l)-1].uid) {
					return fmt.Errorf("mail %x in %s of %s: %w", uid, name, user, ErrRelayDataDamaged)
				}
				mbox.l = append(mbox.l, m)
				return nil
			})
			if err != nil {
				return err
			}
			mbox.tracker = imapserver.NewMailboxTracker(uint32(len(mbox.l))) // it counts the messages
			out[name] = mbox
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("relay: load %s: %w", relayDBFile, err)
	}
	return out, nil
}

// encodeRelayFlags is the stored form of a message's flags: lower-cased, sorted, one space
// between them.
func encodeRelayFlags(flags []imap.Flag) []byte {
	l := make([]string, 0, len(flags))
	for _, f := range flags {
		l = append(l, string(memFlag(f)))
	}
	slices.Sort(l)
	l = slices.Compact(l)
	return []byte(strings.Join(l, " "))
}

// decodeRelayFlags parses encodeRelayFlags's form, canonical only: what it accepts encodes back
// to the same bytes.
func decodeRelayFlags(b []byte) (map[imap.Flag]struct{}, error) {
	flags := map[imap.Flag]struct{}{}
	if len(b) == 0 {
		return flags, nil
	}
	prev := ""
	for _, f := range strings.Split(string(b), " ") {
		if f == "" || f <= prev || strings.ToLower(f) != f || strings.ContainsFunc(f, func(r rune) bool {
			return r <= ' ' || r >= 0x7f || strings.ContainsRune(`(){%*"]`, r)
		}) {
			return nil, ErrRelayDataDamaged
		}
		flags[imap.Flag(f)] = struct{}{}
		prev = f
	}
	return flags, nil
}

// decodeRelayMail parses a stored message: its UID key, its mail record (date and raw mail) and
// its flags record.
func decodeRelayMail(uid, rec, flags []byte) (*memMessage, error) {
	if len(uid) != 4 || binary.BigEndian.Uint32(uid) == 0 || len(rec) < 8 || flags == nil {
		return nil, ErrRelayDataDamaged
	}
	fl, err := decodeRelayFlags(flags)
	if err != nil {
		return nil, err
	}
	return &memMessage{
		uid:   imap.UID(binary.BigEndian.Uint32(uid)),
		t:     time.Unix(0, int64(binary.BigEndian.Uint64(rec))),
		buf:   bytes.Clone(rec[8:]), // bbolt's bytes live only as long as the transaction
		flags: fl,
	}, nil
}

// clockUIDValidity is the UIDVALIDITY the clock gives at t: its Unix seconds, at least 1.
func clockUIDValidity(t time.Time) uint32 {
	return uint32(max(t.Unix(), 1))
}
