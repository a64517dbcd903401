package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/sealpost/sealpost/session"
)

// A package carried as a file (docs/PROTOCOL.md section 21): one sealed package as it would be
// mailed, behind a two-line text head that names the address it goes to, so that a gateway knows
// where to mail a package whose header does not name its recipient (PAIR):
//
//	sealpost-carry v1\n
//	to ADDRESS\n
//	\n
//	PACKAGE
//
// The head is canonical: exactly these bytes, ADDRESS in the canonical form of section 5
// (session.ValidAddress), PACKAGE a canonical package (session.Parse). The file's name says
// nothing of its content: 32 random hex digits and carryExt.

const (
	carryMagic = "sealpost-carry v1\nto "
	carryExt   = ".slpk"
	// maxCarryFile bounds a file import reads: a package is at most its header, the largest
	// sealed body and a signature, far below this.
	maxCarryFile = 32 << 20
)

// carryFile is one parsed package file.
type carryFile struct {
	To      string // the address the package goes to
	Package []byte
	pkg     *session.Package
}

// CarryFileError is the one error type of parseCarryFile: what is wrong with a file's bytes.
type CarryFileError struct{ Msg string }

func (e *CarryFileError) Error() string { return "not a sealpost package file: " + e.Msg }

// marshalCarryFile returns the bytes of a package file.
func marshalCarryFile(to string, pkg []byte) []byte {
	b := make([]byte, 0, len(carryMagic)+len(to)+2+len(pkg))
	b = append(b, carryMagic...)
	b = append(b, to...)
	b = append(b, '\n', '\n')
	return append(b, pkg...)
}

// parseCarryFile decodes a package file, accepting only the canonical form, so that
// marshalCarryFile(parseCarryFile(b)) == b.
func parseCarryFile(b []byte) (carryFile, error) {
	if len(b) > maxCarryFile {
		return carryFile{}, &CarryFileError{fmt.Sprintf("%d bytes, more than the %d a package file may have", len(b), maxCarryFile)}
	}
	rest, ok := bytes.CutPrefix(b, []byte(carryMagic))
	if !ok {
		return carryFile{}, &CarryFileError{"it does not start with " + strings.TrimSuffix(carryMagic, " ")}
	}
	to, pkg, ok := bytes.Cut(rest, []byte("\n\n"))
	if !ok {
		return carryFile{}, &CarryFileError{"its head does not end"}
	}
	if err := session.ValidAddress(string(to)); err != nil {
		return carryFile{}, &CarryFileError{fmt.Sprintf("its address: %v", err)}
	}
	p, err := session.Parse(pkg)
	if err != nil {
		return carryFile{}, &CarryFileError{err.Error()}
	}
	return carryFile{To: string(to), Package: pkg, pkg: p}, nil
}

// carryName is a fresh file name: 128 random bits in hex, then carryExt.
func carryName() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]) + carryExt, nil
}
