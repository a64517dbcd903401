//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package main

import (
	"errors"
	"os"
)

// echoOff: not done on this system; the prompt then says that typing is shown.
func echoOff(*os.File) (restore func(), err error) {
	return nil, errors.New("cannot turn off the terminal's echo on this system")
}
