package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sealpost/sealpost/mailbox"
)

// TestInitSharedAccountLogin: init of a node with a plus address of a shared account and that
// account's --login checks both servers (the relay delivers to, and takes mail from, plus
// addresses of its users) and says whose mailbox the node reads.
func TestInitSharedAccountLogin(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := mailbox.StartRelay(ctx, mailbox.RelayConfig{Users: map[string]string{"shared@example.test": "pw-s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Setenv("SEALPOST_TEST_PW", "pw-s")
	var out, errOut bytes.Buffer
	g := &globals{state: filepath.Join(t.TempDir(), "state"), stdout: &out, stderr: &errOut}
	err = runInit(ctx, g, []string{"--address", "shared+web1@example.test", "--login", "shared@example.test",
		"--imap", r.IMAPAddr(), "--smtp", r.SMTPAddr(), "--tls", "none", "--password-env", "SEALPOST_TEST_PW"})
	if err != nil {
		t.Fatalf("init --address shared+web1@ --login shared@ = %v (stderr %q)", err, errOut.String())
	}
	if !strings.Contains(out.String(), "login:       shared@example.test") {
		t.Errorf("init printed %q; want the login named", out.String())
	}
}
