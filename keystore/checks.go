package keystore

import (
	"encoding/json"
	"log/slog"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"
)

// Agent checks: programs this node runs by itself when it builds a status report (node decides
// when and how; keystore keeps the definitions). docs/PROTOCOL.md section 19 carries their
// results in a report's checks member.
//
//	checks  check name -> JSON AgentCheck
//
// A check's program is resolved to an absolute path when it is added (node), so what runs does
// not depend on PATH later.

// Check limits.
const (
	// MaxChecks bounds how many checks one node keeps, so that a report's checks member stays
	// within the wire's limit (the same number).
	MaxChecks = 64
	// MaxCheckArgs bounds a check's argv; MaxCheckArg each element, in bytes.
	MaxCheckArgs = 64
	MaxCheckArg  = 4096
	// MaxCheckTimeout bounds a check's timeout (0: node's default).
	MaxCheckTimeout = 5 * time.Minute
)

// AgentCheck is one check: a program and its arguments, run without a shell, and how long it
// may take.
type AgentCheck struct {
	Name string   `json:"name"`
	Argv []string `json:"argv"`
	// Timeout is how long one run may take; 0 means node's default.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// checkCheckName: check names follow the peer names' rules (no space or control character).
func checkCheckName(n string) error { return checkText("check name", n, maxNameLen, false) }

func (c AgentCheck) validate() error {
	if err := checkCheckName(c.Name); err != nil {
		return err
	}
	switch {
	case len(c.Argv) == 0 || len(c.Argv) > MaxCheckArgs:
		return invalidf("check %q: %d arguments, want 1 to %d", c.Name, len(c.Argv), MaxCheckArgs)
	case c.Argv[0] == "":
		return invalidf("check %q: the program is empty", c.Name)
	case c.Timeout < 0 || c.Timeout > MaxCheckTimeout:
		return invalidf("check %q: timeout %v outside 0..%v", c.Name, c.Timeout, MaxCheckTimeout)
	}
	for i, a := range c.Argv {
		if len(a) > MaxCheckArg || !utf8.ValidString(a) {
			return invalidf("check %q: argument %d is not valid UTF-8 of at most %d bytes", c.Name, i, MaxCheckArg)
		}
		for _, r := range a {
			if r == 0 {
				return invalidf("check %q: argument %d holds a NUL", c.Name, i)
			}
		}
	}
	return nil
}

func decodeAgentCheck(k, v []byte) (AgentCheck, error) {
	var c AgentCheck
	if err := json.Unmarshal(v, &c); err != nil {
		return AgentCheck{}, corruptf("check %q: %v", k, err)
	}
	if c.Name != string(k) {
		return AgentCheck{}, corruptf("check under %q is named %q", k, c.Name)
	}
	if err := c.validate(); err != nil {
		return AgentCheck{}, corruptf("check %q: %v", k, err)
	}
	return c, nil
}

// AgentCheck returns the check called name.
func (tx *Tx) AgentCheck(name string) (AgentCheck, bool, error) {
	if err := checkCheckName(name); err != nil {
		return AgentCheck{}, false, err
	}
	v := tx.bucket(bChecks).Get([]byte(name))
	if v == nil {
		return AgentCheck{}, false, nil
	}
	c, err := decodeAgentCheck([]byte(name), v)
	return c, err == nil, err
}

// PutAgentCheck stores c, replacing the check of that name. A new check beyond MaxChecks is
// refused (ErrInvalid).
func (tx *Tx) PutAgentCheck(c AgentCheck) error {
	if err := c.validate(); err != nil {
		return err
	}
	b := tx.bucket(bChecks)
	if b.Get([]byte(c.Name)) == nil && countKeys(b) >= MaxChecks {
		return invalidf("check %q: there are %d checks already, the most a node keeps", c.Name, MaxChecks)
	}
	if err := putJSON(b, []byte(c.Name), c); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_check", slog.String("name", c.Name))
	}
	return nil
}

// DeleteAgentCheck removes the check called name and reports whether there was one.
func (tx *Tx) DeleteAgentCheck(name string) (bool, error) {
	if err := checkCheckName(name); err != nil {
		return false, err
	}
	b := tx.bucket(bChecks)
	if b.Get([]byte(name)) == nil {
		return false, nil
	}
	return true, b.Delete([]byte(name))
}

// ForEachAgentCheck calls fn with every check, in name order.
func (tx *Tx) ForEachAgentCheck(fn func(AgentCheck) error) error {
	return tx.bucket(bChecks).ForEach(func(k, v []byte) error {
		c, err := decodeAgentCheck(k, v)
		if err != nil {
			return err
		}
		return fn(c)
	})
}

// countKeys counts b's keys with a cursor (Bucket.Stats does not see a write transaction's own
// changes).
func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}
