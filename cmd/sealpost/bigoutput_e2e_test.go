package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The streamed-output measurement of issue 12 (docs/BENCHMARKS.md, "Streamed output"): with the
// built binary on a `sealpost relay` process, `run bob --wait -- sh -c 'yes sealpost | head -c
// N'` must print exactly N bytes whose SHA-256 is that of the same pipeline run here, while the
// peak RSS (VmHWM) of alice's agent, bob's agent and the `run` process stays under 64 MiB.
// Opt-in, as it moves gigabytes:
//
//	SEALPOST_BIG_OUTPUT=256M,1G go test -run '^TestBigOutputE2E$' -v -timeout 60m ./cmd/sealpost/
//
// Each size runs with fresh agent processes, so each figure is that run's own peak. With
// SEALPOST_BIG_INPUT=random the program prints bytes that do not compress (AES-CTR of zeros by
// openssl, the same on both sides), so that every chunk is a full 1.5 MB mail.

// bigRSSCap is the acceptance bound on each process's peak RSS.
const bigRSSCap = 64 << 20

func TestBigOutputE2E(t *testing.T) {
	spec := os.Getenv("SEALPOST_BIG_OUTPUT")
	if spec == "" {
		t.Skip("moves gigabytes: set SEALPOST_BIG_OUTPUT=256M,1G to run it")
	}
	var sizes []int64
	for _, s := range strings.Split(spec, ",") {
		n, err := parseSize(s)
		if err != nil || n <= 0 {
			t.Fatalf("SEALPOST_BIG_OUTPUT: %q is not a size (%v)", s, err)
		}
		sizes = append(sizes, n)
	}
	relayNode, _ := startRelay(t)
	dir := t.TempDir()
	env := []string{"PW=relay-password"}
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	an, bn := relayNode("alice@example.test"), relayNode("bob@example.test")
	mustOK(t, sp(t, env, append([]string{"--state", alice, "init", "--address", an.addr}, an.init...)...), "init alice")
	mustOK(t, sp(t, env, append([]string{"--state", bob, "init", "--address", bn.addr}, bn.init...)...), "init bob")
	pairCLI(t, env, alice, an.addr, bob, bn.addr, "/bin/sh")
	// Pair and open the session with a small command first.
	bobAgent := startAgent(t, env, bob)
	aliceAgent := startAgent(t, env, alice)
	mustOK(t, sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "/bin/sh", "-c", "echo ready"), "first run")
	stopAgent(t, aliceAgent)
	stopAgent(t, bobAgent)

	for _, size := range sizes {
		// The baseline, measured beside it: the same pipeline and its digest, locally.
		pipeline := "yes sealpost | head -c " + strconv.FormatInt(size, 10)
		if os.Getenv("SEALPOST_BIG_INPUT") == "random" {
			pipeline = "openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:sealpost < /dev/zero 2>/dev/null | head -c " + strconv.FormatInt(size, 10)
		}
		start := time.Now()
		want, err := exec.Command("/bin/sh", "-c", pipeline+" | sha256sum").Output()
		if err != nil {
			t.Fatal(err)
		}
		local := time.Since(start)
		wantSum := strings.Fields(string(want))[0]

		bobAgent := startAgent(t, env, bob)
		aliceAgent := startAgent(t, env, alice)
		ctx, cancel := context.WithTimeout(context.Background(), 55*time.Minute)
		run := exec.CommandContext(ctx, binary, "--state", alice, "run", "bob", "--wait", "--timeout", "50m",
			"--exec-timeout", "10m", "--", "/bin/sh", "-c", pipeline)
		run.Env = append(os.Environ(), env...)
		out, err := run.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		run.Stderr = &stderr
		start = time.Now()
		if err := run.Start(); err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		got, copyErr := io.Copy(h, out)
		err = run.Wait()
		took := time.Since(start)
		cancel()
		if copyErr != nil || err != nil {
			t.Fatalf("run of %d bytes: %v, %v\nstderr: %s", size, copyErr, err, stderr.String())
		}
		// wait4's maxrss: the child's VmHWM, but at least this test process's own peak when it
		// started the child (Go starts it with CLONE_VM, and exec records the shared memory's
		// high-water mark), so an upper bound.
		runHWM := run.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024
		bobHWM, aliceHWM := vmHWM(t, bobAgent.cmd.Process.Pid), vmHWM(t, aliceAgent.cmd.Process.Pid)
		stopAgent(t, aliceAgent)
		stopAgent(t, bobAgent)
		gotSum := hex.EncodeToString(h.Sum(nil))
		t.Logf("%s: %d bytes in %.1f s (%.1f MB/s; locally %.2f s, %.0fx), sha256 %s (want %s); peak RSS: run %.1f MiB, alice's agent %.1f MiB, bob's agent %.1f MiB",
			fmtSize(size), got, took.Seconds(), float64(got)/took.Seconds()/1e6, local.Seconds(), took.Seconds()/local.Seconds(),
			gotSum, wantSum, mibOf(runHWM), mibOf(aliceHWM), mibOf(bobHWM))
		if got != size || gotSum != wantSum {
			t.Errorf("%s: printed %d bytes with sha256 %s; want %d bytes with %s", fmtSize(size), got, gotSum, size, wantSum)
		}
		for _, p := range []struct {
			who string
			hwm int64
		}{{"run", runHWM}, {"alice's agent", aliceHWM}, {"bob's agent", bobHWM}} {
			if p.hwm >= bigRSSCap {
				t.Errorf("%s: %s peaked at %.1f MiB, want under 64 MiB", fmtSize(size), p.who, mibOf(p.hwm))
			}
		}
	}
}

func mibOf(n int64) float64 { return float64(n) / (1 << 20) }

func fmtSize(n int64) string {
	switch {
	case n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d B", n)
}
