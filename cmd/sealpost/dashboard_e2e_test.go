package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFleetAndDashboardInChromium: alice pairs with bob over a `sealpost relay`; bob's agent
// answers a sysinfo and a command. Then, as a user meets them: `fleet --json` has the keys the
// issue asks for, --where filters (and a bad expression is a usage error that says where), and
// `sealpost dashboard` serves alice's node to a real headless Chromium, which shows bob's row
// with his host, and takes a screenshot kept as a test artefact (artifactDir).
func TestFleetAndDashboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	relayNode, _ := startRelay(t)
	env := []string{"PW=relay-password"}
	dir := t.TempDir()
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	for _, n := range []struct{ state, addr string }{{alice, "alice@example.test"}, {bob, "bob@example.test"}} {
		mustOK(t, sp(t, env, append([]string{"--state", n.state, "init", "--address", n.addr}, relayNode(n.addr).init...)...), "init "+n.addr)
	}
	start(t, env, "--state", bob, "agent")
	waitForSocket(t, bob)
	pairCLI(t, env, alice, "alice@example.test", bob, "bob@example.test", "echo")
	mustOK(t, sp(t, env, "--state", alice, "run", "bob", "--wait", "--timeout", "60s", "--", "echo", "<b>hello from bob</b>"), "run echo")
	mustOK(t, sp(t, env, "--state", alice, "sysinfo", "bob", "--timeout", "60s"), "sysinfo")
	mustOK(t, sp(t, env, "--state", alice, "ping", "bob", "--timeout", "60s"), "ping")

	// fleet --json: the acceptance keys, with bob's sysinfo under the section 19 names.
	r := mustOK(t, sp(t, env, "--state", alice, "fleet", "--json"), "fleet --json")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("fleet --json = %s (%v), want an array with bob", r.stdout, err)
	}
	for _, key := range []string{"name", "last_seen", "stale", "hostname", "os", "kernel", "arch", "uptime", "mem_total", "num_cpu", "version", "go_version", "round_trip", "disk_free_pct"} {
		if _, ok := rows[0][key]; !ok {
			t.Errorf("fleet --json: bob's object has no %q:\n%s", key, r.stdout)
		}
	}
	if _, ok := rows[0]["stale"].(bool); !ok || rows[0]["name"] != "bob" {
		t.Errorf("fleet --json: name %v, stale %v; want bob and a boolean", rows[0]["name"], rows[0]["stale"])
	}
	hostname, _ := rows[0]["hostname"].(string)
	for _, where := range []string{`disk_free_pct < 101`, `os !~ "no-such-os"`, `last_seen < 1h && "bob" == name`} {
		if r := mustOK(t, sp(t, env, "--state", alice, "fleet", "--where", where), "fleet --where"); !regexp.MustCompile(`(?m)^bob\s`).MatchString(r.stdout) {
			t.Errorf("fleet --where %q:\n%s\nwant bob listed", where, r.stdout)
		}
	}
	if r := mustOK(t, sp(t, env, "--state", alice, "fleet", "--where", `last_seen > 2h`), "fleet --where"); strings.Contains(r.stdout, "bob ") {
		t.Errorf("fleet --where 'last_seen > 2h' lists bob, heard from seconds ago:\n%s", r.stdout)
	}
	if r := sp(t, env, "--state", alice, "fleet", "--where", `disk_free_pct < "ten"`); r.code != exitUsage || !strings.Contains(r.stderr, "column 15") || r.stdout != "" {
		t.Errorf("fleet with a bad --where: exit %d, stderr %q; want %d and where it is wrong", r.code, r.stderr, exitUsage)
	}

	chromium := findChromium(t)
	dash := start(t, env, "--state", alice, "dashboard", "--listen", "127.0.0.1:0")
	url, token := dashboardLink(t, dash)

	// Without the token, on loopback too, nothing is shown: any user of this machine can
	// connect to a loopback port. With it as a Bearer header, the page is served.
	for _, auth := range []string{"", "Bearer wrong-token-0123456789"} {
		if code, body := httpGet(t, url+"results", auth); code != http.StatusUnauthorized || strings.Contains(body, "hello from bob") {
			t.Errorf("GET /results with Authorization %q: %d, want 401 and none of bob's output", auth, code)
		}
	}
	if code, body := httpGet(t, url+"results", "Bearer "+token); code != http.StatusOK || !strings.Contains(body, "hello from bob") {
		t.Errorf("GET /results with the token: %d, want 200 and bob's output:\n%s", code, body)
	}

	// Chromium opens the link with ?token= (each run has a profile of its own, so each opens
	// it): the dashboard keeps the token in a cookie and sends it on to the page without it.
	dom := runChromium(t, chromium, "--dump-dom", url+"?token="+token)
	for _, want := range []string{`data-peer="bob"`, `<a href="/peer/bob">bob</a>`, "linux", html.EscapeString(hostname), "1 peer, 0 stale"} {
		if !strings.Contains(dom, want) {
			t.Errorf("Chromium's DOM of the fleet page has no %q:\n%s", want, dom)
		}
	}
	dom = runChromium(t, chromium, "--dump-dom", url+"peer/bob?token="+token)
	if !strings.Contains(dom, "&lt;b&gt;hello from bob&lt;/b&gt;") || strings.Contains(dom, "<b>hello") {
		t.Errorf("Chromium's DOM of bob's page does not show his command's output as text:\n%s", dom)
	}

	shot := filepath.Join(artifactDir(t), "dashboard-fleet.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1400,700", url+"?token="+token)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 1000 || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("Chromium's screenshot %s: %d bytes (%v), want a PNG", shot, len(png), err)
	}
	t.Logf("screenshot of the dashboard: %s", shot)
}

// dashboardLink reads what `sealpost dashboard` prints at start up to the link that holds its
// token (shown only then), and returns the link without it and the token. A dashboard that
// prints no such link within a minute fails the test rather than hanging it.
func dashboardLink(t *testing.T, dash *proc) (url, token string) {
	t.Helper()
	type line struct {
		s   string
		err error
	}
	lines := make(chan line, 16)
	go func() { // ends when the dashboard's stdout closes (t.Cleanup stops it)
		for {
			s, err := dash.stdout.ReadString('\n')
			lines <- line{s, err}
			if err != nil {
				return
			}
		}
	}()
	link := regexp.MustCompile(`(http://127\.0\.0\.1:\d+/)\?token=([A-Za-z0-9_-]{16,})`)
	var printed strings.Builder
	timeout := time.After(time.Minute)
	for {
		select {
		case l := <-lines:
			printed.WriteString(l.s)
			if m := link.FindStringSubmatch(l.s); m != nil {
				return m[1], m[2]
			}
			if l.err != nil {
				t.Fatalf("dashboard printed %q (%v), with no link holding its token\n%s", printed.String(), l.err, dash.stderr)
			}
		case <-timeout:
			t.Fatalf("dashboard printed %q and, in a minute, no link holding its token", printed.String())
		}
	}
}

// httpGet is one GET of url, with an Authorization header when auth is not empty.
func httpGet(t *testing.T, url, auth string) (code int, body string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// findChromium is Debian's chromium (scripts/test installs it when it runs as root). Without
// it the test skips, except in CI (CI=true), where it fails.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium is not installed: the dashboard's browser test needs it (apt-get install chromium; scripts/test installs it when run as root)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// runChromium runs headless Chromium once on its own temporary profile and returns its stdout.
// It runs in a process group of its own, which is ended (by that group's id, the PID of the
// process started here) when it exits or after a minute, so that none of its helper processes
// outlives the test.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := []string{"--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	if os.Geteuid() == 0 {
		base = append(base, "--no-sandbox") // Chromium refuses to run as root with its sandbox
	}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left in its group, if any
	}
	if err != nil {
		t.Fatalf("chromium %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return out.String()
}

// artifactDir is where a test keeps what a person should look at afterwards: the directory
// $SEALPOST_TEST_ARTIFACTS names (scripts/test sets it and prints it at the end), else
// test-artifacts/ at the top of the repository (git-ignored).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SEALPOST_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-artifacts")
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o755)
	}
	if err != nil {
		t.Fatal(fmt.Errorf("test artefacts directory: %w", err))
	}
	return abs
}
