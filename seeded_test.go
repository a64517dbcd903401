package sealpost_test

import (
	"encoding/binary"
	"math/rand/v2"
)

func seeded(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return rand.NewChaCha8(s)
}
