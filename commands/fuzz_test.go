package commands

// Fuzz targets for the two payload decoders, seeded from testdata/vectors (and any crashers
// kept under testdata/fuzz/). They assert: no panic; an error is a *DecodeError and comes with
// the zero value; a success encodes, and the encoding decodes to an equal value (JSON allows
// several spellings of one value, so the bytes may differ). Run with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzDecodeRequest$' -fuzztime 60s ./commands/

import (
	"errors"
	"testing"
)

// maxSeed bounds the vectors used as seeds. The fuzzer minimizes every new-coverage input with
// a pass quadratic in its length (up to -fuzzminimizetime, 60 s by default); mutants of the
// kilobyte-sized limit vectors stalled whole runs that way. TestVectors still runs them all.
const maxSeed = 512

func addVectorSeeds(f *testing.F, typ string) {
	n := 0
	for _, v := range loadVectors(f) {
		if v.typ == typ && len(v.payload) <= maxSeed {
			f.Add(v.payload)
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no %s vectors under testdata/vectors", typ)
	}
}

func fuzzDecode(t *testing.T, typ string, b []byte) {
	value, err, stable := decodeVector(typ, b)
	var de *DecodeError
	switch {
	case err != nil && !errors.As(err, &de):
		t.Fatalf("decode %s %q = %v, want a *DecodeError", typ, b, err)
	case !stable && err != nil:
		t.Fatalf("decode %s %q = %+v, %v: an error with a non-zero value, or a re-encoding that fails", typ, b, value, err)
	case !stable:
		t.Fatalf("decode %s %q = %+v: does not survive encode and decode", typ, b, value)
	}
}

func FuzzDecodeRequest(f *testing.F) {
	addVectorSeeds(f, "request")
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, "request", b) })
}

func FuzzDecodeResult(f *testing.F) {
	addVectorSeeds(f, "result")
	f.Fuzz(func(t *testing.T, b []byte) { fuzzDecode(t, "result", b) })
}
