//go:build race

package session_test

// The race detector slows big-number arithmetic tenfold and this package has no goroutines to
// check, so the simulation runs a shorter exchange under -race. The full run is
// `go test -run Simulation -v ./session/`.
const raceEnabled = true
