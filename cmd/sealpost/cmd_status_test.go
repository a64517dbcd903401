package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealpost/sealpost/node"
)

// TestStatusDoesNotHang: `status` against an agent that accepts on its control socket but never
// answers gives up after statusTimeout and says so, instead of hanging.
func TestStatusDoesNotHang(t *testing.T) {
	old := statusTimeout
	statusTimeout = 300 * time.Millisecond
	t.Cleanup(func() { statusTimeout = old })
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, node.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // read nothing, answer nothing
		}
	}()
	var out, errOut bytes.Buffer
	g := &globals{state: dir, stdout: &out, stderr: &errOut}
	done := make(chan error, 1)
	go func() { done <- runStatus(context.Background(), g, nil) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "does not reply") {
			t.Fatalf("status against a silent agent = %v, want it to say the agent does not reply", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("status hung on an agent that does not answer")
	}
}
