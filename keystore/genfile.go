package keystore

import (
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Generation files: the sidecar DIR/state.gen and the witness WITNESSDIR/<store id>.gen both
// hold one generation record (see rollback.go for what they are for):
//
//	20 decimal digits (the generation, zero-padded), one space, 8 lowercase hex digits (the
//	CRC-32C of the 20 digits), a newline: 30 bytes.
//
// The width is fixed so that each write, in place at offset 0, covers the whole record and the
// file never changes size after it was created; the checksum makes a record that is not wholly
// one write (torn, zeroed, hand-edited) recognisable, where a bare number could read as another
// number. Older versions wrote the digits alone, zero-padded to 20 or unpadded, with a newline:
// that legacy form is still read (and rewritten in the new form by Open).
const genRecordLen = 30

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// errGarbledGen is wrapped by parseGenRecord's errors: the file exists but holds no record.
var errGarbledGen = errors.New("garbled generation record")

// genRecord is the record for gen.
func genRecord(gen uint64) []byte {
	digits := fmt.Appendf(nil, "%020d", gen)
	return fmt.Appendf(digits, " %08x\n", crc32.Checksum(digits, crc32c))
}

// parseGenRecord parses a generation file's content. legacy is set for the old, checksum-less
// form. Only the canonical new form is accepted (genRecord(g) == b), so there is one way to
// write each value.
func parseGenRecord(b []byte) (gen uint64, legacy bool, err error) {
	if len(b) == genRecordLen && b[20] == ' ' && b[29] == '\n' {
		g, err := strconv.ParseUint(string(b[:20]), 10, 64)
		if err != nil || string(genRecord(g)) != string(b) {
			return 0, false, fmt.Errorf("%w: bad digits or checksum", errGarbledGen)
		}
		return g, false, nil
	}
	s := strings.TrimSpace(string(b))
	if s == "" || len(s) > 20 || strings.Trim(s, "0123456789") != "" {
		return 0, false, fmt.Errorf("%w: %d bytes, neither a record nor a number", errGarbledGen, len(b))
	}
	g, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: %w", errGarbledGen, err)
	}
	return g, true, nil
}

// genReading is what Open found in a generation file.
type genReading struct {
	path   string
	gen    uint64
	legacy bool
	err    error // nil, or wrapping fs.ErrNotExist (missing) or errGarbledGen (garbled)
}

func (r genReading) ok() bool      { return r.err == nil }
func (r genReading) missing() bool { return errors.Is(r.err, fs.ErrNotExist) }

// readGenFile reads a generation file without following a link. A link, a file of another user
// or one with other hard links is an *UnsafeDirError, returned as such (Open refuses it); a
// missing or garbled file is a reading, evidence for rollback detection.
func readGenFile(path string) (genReading, error) {
	r := genReading{path: path}
	b, err := readPrivate(path, 64)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.err = err
		return r, nil
	case err != nil:
		return r, err
	}
	r.gen, r.legacy, r.err = parseGenRecord(b)
	return r, nil
}

// genWriter is a generation file kept open for writing in place.
type genWriter struct {
	path string
	f    *os.File
}

// create writes gen to the file durably, replacing what was there (see writeFileAtomic), and
// opens it for writing in place.
func (g *genWriter) create(gen uint64) error {
	if err := writeFileAtomic(filepath.Dir(g.path), filepath.Base(g.path), genRecord(gen), true); err != nil {
		return err
	}
	return g.open()
}

// open opens the existing file for writing in place, without following a link.
func (g *genWriter) open() error {
	f, err := openPrivate(g.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	g.f = f
	return nil
}

// write puts gen's record over the old one: one pwrite of 30 bytes at offset 0 of a file that
// already is 30 bytes long, so the file's size and blocks do not change. No fsync: see
// recordGeneration.
func (g *genWriter) write(gen uint64) error {
	if g.f == nil {
		if err := g.open(); err != nil {
			return err
		}
	}
	if _, err := g.f.WriteAt(genRecord(gen), 0); err != nil {
		g.close()
		return err
	}
	return nil
}

func (g *genWriter) close() {
	if g.f != nil {
		g.f.Close()
		g.f = nil
	}
}
