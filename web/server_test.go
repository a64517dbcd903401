package web

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealpost/sealpost/commands"
	"github.com/sealpost/sealpost/node"
)

var testNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// fakeSource is a node with two peers: bob, whose host answered a sysinfo with a hostile host
// name and ran a command whose output is HTML, and carol, silent and STALE.
type fakeSource struct {
	fleet     []node.FleetEntry
	results   []node.Result // newest first
	schedules []node.ScheduleInfo
	err       error

	mu       sync.Mutex
	recent   []recentCall // the RecentResults calls
	returned int          // results returned, by any method
}

// recentCall is one call of RecentResults.
type recentCall struct {
	peer  string
	limit int
}

func (f *fakeSource) Fleet(context.Context, string) ([]node.FleetEntry, error) { return f.fleet, f.err }
func (f *fakeSource) Peers(context.Context) ([]node.PeerInfo, error) {
	return []node.PeerInfo{{Name: "bob", Fingerprint: "ab12-cd34", Allow: []string{"uptime"},
		Outbound: &node.SessionInfo{ID: "5e55", Status: "Confirmed", Epoch: 3}}}, f.err
}

// Results is not in Source (a page must not read the whole history); it stays here so that a
// page reaching for it anyway is counted.
func (f *fakeSource) Results(context.Context) ([]node.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.returned += len(f.results)
	return f.results, f.err
}

func (f *fakeSource) RecentResults(_ context.Context, peer string, limit int) ([]node.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recent = append(f.recent, recentCall{peer, limit})
	var out []node.Result
	for _, r := range f.results {
		if len(out) < limit && (peer == "" || r.Peer == peer) {
			out = append(out, r)
		}
	}
	f.returned += len(out)
	return out, f.err
}
func (f *fakeSource) Schedules(context.Context) ([]node.ScheduleInfo, error) {
	return f.schedules, f.err
}
func (f *fakeSource) Status(context.Context) (node.Status, error) {
	return node.Status{Address: "alice@example.test", Fingerprint: "ffff-0000", Outbox: 2, LastError: "smtp <b>down</b>"}, f.err
}

const hostile = `<script>alert(1)</script><img src=x onerror=alert(2)>`

func newFake() *fakeSource {
	disk := 7.0
	return &fakeSource{
		fleet: []node.FleetEntry{
			{Name: "bob", Tags: []string{"web"}, Status: "Confirmed", Epoch: 3, LastSeen: testNow.Add(-3 * time.Minute),
				DiskFreePct: &disk, SysInfoAt: testNow.Add(-3 * time.Minute), ChecksFailing: 1,
				Checks: map[string]commands.CheckResult{"nginx": {OK: true, Output: "active", At: testNow.Add(-time.Minute)},
					"disk": {Exit: 2, Output: "<b>full</b>", At: testNow.Add(-time.Minute)}},
				SysInfo: &commands.SysInfo{Hostname: hostile, OS: "linux", Kernel: "6.1.0", Uptime: 50 * time.Hour,
					Disks: []commands.Disk{{Mount: "/", Total: 100, Free: 7}}}},
			{Name: "carol", Status: "Confirmed", Stale: true, ReportEvery: time.Minute, LastSeen: testNow.Add(-time.Hour)},
		},
		schedules: []node.ScheduleInfo{{ScheduleSpec: node.ScheduleSpec{Name: "nightly", Target: "@web", Every: 24 * time.Hour,
			Request: commands.Request{Name: "exec", Argv: []string{"<b>x"}}}, Next: testNow.Add(time.Hour),
			LastRun: &node.ScheduleRun{Fired: testNow.Add(-time.Hour), Done: true, Failed: true}}},
		results: []node.Result{{Peer: "bob", Command: []string{"cat", "page.html"}, Status: node.StatusDone,
			Stdout: []byte(hostile), Sent: testNow.Add(-time.Minute), Finished: testNow}},
	}
}

// testToken is the token of the test servers.
const testToken = "0123456789abcdef-secret"

// newTestServer is the dashboard over src as `sealpost dashboard` serves it on loopback: the
// token required, and the Host header checked.
func newTestServer(src Source, token string) http.Handler {
	return New(Options{
		Open:         func(context.Context) (Source, func(), error) { return src, func() {}, nil },
		Token:        token,
		LoopbackHost: true,
		Now:          func() time.Time { return testNow },
	})
}

// withToken is h with the Bearer token set on every request, for tests of the pages.
func withToken(h http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("Authorization", "Bearer "+token)
		h.ServeHTTP(w, r)
	})
}

// newPageServer is newTestServer with the token on every request.
func newPageServer(src Source) http.Handler {
	return withToken(newTestServer(src, testToken), testToken)
}

func get(t *testing.T, h http.Handler, method, target string, mod func(*http.Request)) (*http.Response, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	res := w.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestPagesRender: every page renders from the node's API with the figures it should show, the
// security headers and no script; what peers sent is escaped, never markup.
func TestPagesRender(t *testing.T) {
	h := newPageServer(newFake())
	for _, c := range []struct {
		path string
		has  []string
	}{
		{"/", []string{`<meta http-equiv="refresh" content="10">`, `href="/peer/bob"`, "linux 6.1.0", "2d2h", "/ 7% free",
			`<tr class="stale" data-peer="carol">`, `badge stale">STALE<`, "2 peers, 1 stale"}},
		{"/peer/bob", []string{"Peer bob", "ab12-cd34", "5e55", "we command it", "cat page.html", "uptime",
			"1 of 2 failing", `<tr class="stale"><td>disk</td><td>FAILING (exit 2)</td><td><code>&lt;b&gt;full&lt;/b&gt;</code>`, "<td>nginx</td><td>ok</td>"}},
		{"/peer/carol", []string{"Peer carol", `badge stale">STALE<`, "no sysinfo yet"}},
		{"/results", []string{"cat page.html", "The 1 most recent commands"}},
		{"/status", []string{"alice@example.test", "2 mails not sent yet", "not running"}},
		{"/schedules", []string{"nightly", "@web", "every 24h0m0s", "FAILED", `class="stale"`, "&lt;b&gt;x"}},
	} {
		res, body := get(t, h, "GET", "http://127.0.0.1:8080"+c.path, nil)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", c.path, res.StatusCode, body)
			continue
		}
		for _, s := range c.has {
			if !strings.Contains(body, s) {
				t.Errorf("GET %s: the page has no %q:\n%s", c.path, s, body)
			}
		}
		for _, bad := range []string{"<script", "<img", "<b>down"} {
			if strings.Contains(body, bad) {
				t.Errorf("GET %s: the page holds %q unescaped", c.path, bad)
			}
		}
		if c.path == "/" || c.path == "/results" || c.path == "/peer/bob" {
			if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
				t.Errorf("GET %s: the hostile host name or output is not shown escaped:\n%s", c.path, body)
			}
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "Content-Type": "text/html; charset=utf-8"} {
			if got := res.Header.Get(k); got != v {
				t.Errorf("GET %s: %s = %q, want %q", c.path, k, got, v)
			}
		}
		if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q, want no script allowed", c.path, csp)
		}
	}
	res, body := get(t, h, "GET", "http://127.0.0.1:8080/style.css", nil)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/css") || !strings.Contains(body, "stale") {
		t.Errorf("GET /style.css: %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

func TestNotFoundAndNodeDown(t *testing.T) {
	h := newPageServer(newFake())
	if res, _ := get(t, h, "GET", "http://localhost/peer/nobody", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /peer/nobody: %d, want 404", res.StatusCode)
	}
	if res, _ := get(t, h, "GET", "http://localhost/nothing-here", nil); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing-here: %d, want 404", res.StatusCode)
	}
	down := newFake()
	down.err = errors.New("the agent <i>stopped</i>")
	res, body := get(t, newPageServer(down), "GET", "http://localhost/", nil)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "the agent &lt;i&gt;stopped") || !strings.Contains(body, `http-equiv="refresh"`) {
		t.Errorf("GET / with the node unreachable: %d\n%s\nwant 503, the error escaped, and the page still refreshing", res.StatusCode, body)
	}
}

// TestReadOnly: anything but GET and HEAD is refused, on every path.
func TestReadOnly(t *testing.T) {
	h := newPageServer(newFake())
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		for _, p := range []string{"/", "/peer/bob", "/status"} {
			if res, _ := get(t, h, m, "http://127.0.0.1"+p, nil); res.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405", m, p, res.StatusCode)
			}
		}
	}
	if res, _ := get(t, h, "HEAD", "http://127.0.0.1/", nil); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD /: %d, want 200", res.StatusCode)
	}
}

// TestTokenAlsoOnLoopback: on loopback too, a request without the token is refused and shows
// nothing (any local user can connect to a loopback port); a handler without a token serves
// nothing at all.
func TestTokenAlsoOnLoopback(t *testing.T) {
	h := newTestServer(newFake(), testToken)
	for _, host := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		if res, body := get(t, h, "GET", "http://"+host+"/results", nil); res.StatusCode != http.StatusUnauthorized || strings.Contains(body, "page.html") {
			t.Errorf("GET /results on %s without the token: %d, want 401 and no results", host, res.StatusCode)
		}
	}
	none := newTestServer(newFake(), "")
	for _, mod := range []func(*http.Request){nil, func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }} {
		if res, body := get(t, none, "GET", "http://127.0.0.1:8080/results", mod); res.StatusCode == http.StatusOK || strings.Contains(body, "page.html") {
			t.Errorf("GET /results from a dashboard without a token: %d, want it refused", res.StatusCode)
		}
	}
}

// TestLoopbackHostOnly: on a loopback listener the dashboard answers only requests addressed to
// a loopback host, even with the token, so that a page on another site cannot reach it through
// DNS rebinding.
func TestLoopbackHostOnly(t *testing.T) {
	h := newPageServer(newFake())
	for host, ok := range map[string]bool{"127.0.0.1:8080": true, "localhost:8080": true, "[::1]:8080": true, "127.0.0.1": true,
		"evil.example:8080": false, "192.168.1.5:8080": false, "localhost.evil.example": false} {
		res, _ := get(t, h, "GET", "http://"+host+"/", nil)
		if got := res.StatusCode == http.StatusOK; got != ok {
			t.Errorf("GET / with Host %s: %d, want served %v", host, res.StatusCode, ok)
		}
	}
}

// TestTokenRequired: with a token, a request without it is refused; the token works as a
// Bearer header, and a first visit with ?token= sets an HttpOnly cookie and takes the token out
// of the address; the cookie then works alone. A wrong token never does.
func TestTokenRequired(t *testing.T) {
	const tok = testToken
	h := New(Options{Open: func(context.Context) (Source, func(), error) { return newFake(), func() {}, nil }, Token: tok,
		Now: func() time.Time { return testNow }})
	host := "http://192.168.1.5:8080"
	if res, body := get(t, h, "GET", host+"/", nil); res.StatusCode != http.StatusUnauthorized || strings.Contains(body, "bob") {
		t.Fatalf("GET / without the token: %d, want 401 and nothing of the fleet", res.StatusCode)
	}
	for _, bad := range []func(*http.Request){
		func(r *http.Request) { r.Header.Set("Authorization", "Bearer wrong") },
		func(r *http.Request) { r.AddCookie(&http.Cookie{Name: CookieName, Value: tok + "x"}) },
		func(r *http.Request) { r.Header.Set("Authorization", "Basic "+tok) },
	} {
		if res, _ := get(t, h, "GET", host+"/", bad); res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET / with a wrong token: %d, want 401", res.StatusCode)
		}
	}
	if res, _ := get(t, h, "GET", host+"/?token=wrong", nil); res.StatusCode != http.StatusUnauthorized || len(res.Cookies()) != 0 {
		t.Errorf("GET /?token=wrong: %d with cookies %v, want 401 and no cookie", res.StatusCode, res.Cookies())
	}
	if res, _ := get(t, h, "GET", host+"/", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }); res.StatusCode != http.StatusOK {
		t.Errorf("GET / with the Bearer token: %d, want 200", res.StatusCode)
	}
	res, _ := get(t, h, "GET", host+"/peer/bob?token="+tok, nil)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/peer/bob" {
		t.Fatalf("GET /peer/bob?token=: %d to %q, want 303 to /peer/bob", res.StatusCode, res.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == CookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.Value != tok || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("the first visit set %+v, want an HttpOnly, SameSite=Strict cookie with the token", cookie)
	}
	if res, body := get(t, h, "GET", host+"/peer/bob", func(r *http.Request) { r.AddCookie(cookie) }); res.StatusCode != http.StatusOK || !strings.Contains(body, "Peer bob") {
		t.Errorf("GET /peer/bob with the cookie: %d, want the page", res.StatusCode)
	}
}

// TestPagesReadRecentResultsOnly: with a long history, the results page and a peer's page each
// ask the node once for a page of the most recent results (of all, of that peer), get no more
// than that, and show them newest first; the whole history is never read.
func TestPagesReadRecentResultsOnly(t *testing.T) {
	for _, c := range []struct {
		path  string
		call  recentCall
		first string // the newest command of the page
	}{
		{"/results", recentCall{"", recentResults}, "echo 999"},
		{"/peer/bob", recentCall{"bob", peerResults}, "echo 998"},
	} {
		src := newFake()
		src.results = nil
		for i := 999; i >= 0; i-- {
			peer := "bob"
			if i%2 == 1 {
				peer = "carol"
			}
			src.results = append(src.results, node.Result{Peer: peer, Command: []string{"echo", strconv.Itoa(i)},
				Status: node.StatusSent, Sent: testNow.Add(time.Duration(i-1000) * time.Second)})
		}
		res, body := get(t, newPageServer(src), "GET", "http://127.0.0.1"+c.path, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", c.path, res.StatusCode)
		}
		if len(src.recent) != 1 || src.recent[0] != c.call || src.returned > c.call.limit {
			t.Errorf("GET %s: RecentResults calls %+v, %d results read; want one call %+v and at most %d read",
				c.path, src.recent, src.returned, c.call, c.call.limit)
		}
		if rows := strings.Count(body, "<code>echo "); rows != c.call.limit {
			t.Errorf("GET %s: %d result rows, want %d", c.path, rows, c.call.limit)
		}
		if i := strings.Index(body, "<code>echo "); i < 0 || !strings.HasPrefix(body[i:], "<code>"+c.first+"<") {
			t.Errorf("GET %s: the first command shown is not %q", c.path, c.first)
		}
	}
}

// TestStreamedResultOnPage: a streamed output is shown from the start of its spool file, cut at
// the page's limit, escaped like any output.
func TestStreamedResultOnPage(t *testing.T) {
	src := newFake()
	spool := filepath.Join(t.TempDir(), "out.1")
	os.WriteFile(spool, []byte("first line <b>x</b>\n"+strings.Repeat("y", 40<<10)), 0o600)
	src.results = []node.Result{{Peer: "bob", Command: []string{"cat", "big.log"}, Status: node.StatusDone,
		Streamed: true, StdoutPath: spool, StdoutSize: 40<<10 + 20, StderrPath: filepath.Join(t.TempDir(), "none"),
		Sent: testNow.Add(-time.Minute), Finished: testNow}}
	_, body := get(t, newPageServer(src), "GET", "http://127.0.0.1/results", nil)
	if !strings.Contains(body, "first line &lt;b&gt;x&lt;/b&gt;") {
		t.Fatalf("the page does not show the streamed output's start, escaped:\n%s", body)
	}
	if strings.Contains(body, strings.Repeat("y", 20<<10)) {
		t.Fatal("the page shows more of the output than its limit")
	}
}
