package keystore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAgentChecksRoundTrip(t *testing.T) {
	s := openTestStore(t)
	err := s.Update(func(tx *Tx) error {
		if err := tx.PutAgentCheck(AgentCheck{Name: "disk", Argv: []string{"/bin/df", "-h"}, Timeout: time.Minute}); err != nil {
			return err
		}
		return tx.PutAgentCheck(AgentCheck{Name: "apt", Argv: []string{"/usr/bin/true"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(func(tx *Tx) error {
		c, ok, err := tx.AgentCheck("disk")
		if err != nil || !ok || c.Argv[1] != "-h" || c.Timeout != time.Minute {
			return fmt.Errorf("AgentCheck(disk) = %+v, %v, %v", c, ok, err)
		}
		var names []string
		if err := tx.ForEachAgentCheck(func(c AgentCheck) error { names = append(names, c.Name); return nil }); err != nil {
			return err
		}
		if strings.Join(names, ",") != "apt,disk" {
			return fmt.Errorf("ForEachAgentCheck names %v, want apt,disk", names)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *Tx) error {
		if had, err := tx.DeleteAgentCheck("disk"); err != nil || !had {
			return fmt.Errorf("DeleteAgentCheck(disk) = %v, %v; want true", had, err)
		}
		if had, err := tx.DeleteAgentCheck("disk"); err != nil || had {
			return fmt.Errorf("DeleteAgentCheck(disk) again = %v, %v; want false", had, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAgentCheckRefused(t *testing.T) {
	s := openTestStore(t)
	long := make([]string, MaxCheckArgs+1)
	for i := range long {
		long[i] = "x"
	}
	for _, c := range []AgentCheck{
		{Name: "", Argv: []string{"/bin/true"}},
		{Name: "a b", Argv: []string{"/bin/true"}},
		{Name: "ok"},
		{Name: "ok", Argv: []string{""}},
		{Name: "ok", Argv: long},
		{Name: "ok", Argv: []string{"/bin/true", strings.Repeat("x", MaxCheckArg+1)}},
		{Name: "ok", Argv: []string{"/bin/true", "a\x00b"}},
		{Name: "ok", Argv: []string{"/bin/true"}, Timeout: -1},
		{Name: "ok", Argv: []string{"/bin/true"}, Timeout: MaxCheckTimeout + 1},
	} {
		err := s.Update(func(tx *Tx) error { return tx.PutAgentCheck(c) })
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("PutAgentCheck(%+v) = %v, want ErrInvalid", c, err)
		}
	}
}

func TestAgentChecksBounded(t *testing.T) {
	s := openTestStore(t)
	err := s.Update(func(tx *Tx) error {
		for i := range MaxChecks {
			if err := tx.PutAgentCheck(AgentCheck{Name: fmt.Sprintf("c%d", i), Argv: []string{"/bin/true"}}); err != nil {
				return err
			}
		}
		// Replacing one is fine at the limit; a new one is not.
		if err := tx.PutAgentCheck(AgentCheck{Name: "c0", Argv: []string{"/bin/false"}}); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(func(tx *Tx) error { return tx.PutAgentCheck(AgentCheck{Name: "one-more", Argv: []string{"/bin/true"}}) })
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("PutAgentCheck beyond %d checks = %v, want ErrInvalid", MaxChecks, err)
	}
}
