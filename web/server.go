package web

import (
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sealpost/sealpost/node"
)

// Source is what the dashboard reads of a node; node.API (the node itself, or the client of a
// running agent's control socket) has all of it.
type Source interface {
	Fleet(ctx context.Context, target string) ([]node.FleetEntry, error)
	Peers(ctx context.Context) ([]node.PeerInfo, error)
	// RecentResults, not Results: a page shows the most recent few, and must not read the
	// whole history with every output on each refresh.
	RecentResults(ctx context.Context, peer string, limit int) ([]node.Result, error)
	Status(ctx context.Context) (node.Status, error)
	Schedules(ctx context.Context) ([]node.ScheduleInfo, error)
}

// Options configure the dashboard's handler.
type Options struct {
	// Open reaches the node for one page; close is called when the page is rendered. The
	// command line opens the agent's control socket, or the state itself for that moment, so
	// that the dashboard never keeps the state's lock from an agent. Required.
	Open func(ctx context.Context) (src Source, close func(), err error)
	// Token is required on every request (see the package documentation), also on loopback:
	// any local user can connect to a loopback port, and the pages show every command's
	// output. Empty: nothing is served (the handler fails closed).
	Token string
	// LoopbackHost: the dashboard listens on a loopback address, so requests must also name a
	// loopback host in their Host header (127.0.0.1, [::1], localhost): a web page elsewhere
	// must not reach it through DNS rebinding.
	LoopbackHost bool
	// Refresh is how often the pages reload themselves; zero means 10 s.
	Refresh time.Duration
	// Now is the clock the pages' "3m ago" are counted from; nil means time.Now.
	Now func() time.Time
	// Logger logs pages that could not be made (nil: silent).
	Logger *slog.Logger
}

// CookieName is the cookie that carries the token after a first visit with ?token=.
const CookieName = "sealpost_dashboard"

// contentSecurityPolicy allows this origin's style sheet and nothing else: no script (inline or
// not), no frames around or inside the pages, no form targets, no base URL changes.
const contentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/style.css
var styleCSS []byte

// New returns the dashboard's handler.
func New(opts Options) http.Handler {
	if opts.Refresh <= 0 {
		opts.Refresh = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &server{opts: opts, pages: map[string]*template.Template{}}
	for _, name := range []string{"fleet", "peer", "results", "status", "schedules"} {
		files := []string{"templates/layout.html", "templates/resultrows.html", "templates/" + name + ".html"}
		s.pages[name] = template.Must(template.New(name).ParseFS(templateFS, files...))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.fleet)
	mux.HandleFunc("GET /peer/{name}", s.peer)
	mux.HandleFunc("GET /results", s.results)
	mux.HandleFunc("GET /status", s.status)
	mux.HandleFunc("GET /schedules", s.schedules)
	mux.HandleFunc("GET /style.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Write(styleCSS)
	})
	return s.guard(mux)
}

type server struct {
	opts  Options
	pages map[string]*template.Template
}

// guard sets the security headers on every response, refuses what is not GET or HEAD, checks
// that a request to a loopback listener was addressed to a loopback host, and checks the token.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read-only: GET and HEAD only", http.StatusMethodNotAllowed)
			return
		}
		if s.opts.LoopbackHost && !loopbackHost(r.Host) {
			http.Error(w, "this dashboard answers only to a loopback host name (127.0.0.1, [::1], localhost)", http.StatusMisdirectedRequest)
			return
		}
		if s.opts.Token == "" {
			http.Error(w, "this dashboard has no token set, so it serves nothing", http.StatusInternalServerError)
			return
		}
		if tok := r.URL.Query().Get("token"); tok != "" && s.tokenOK(tok) {
			// A first visit with the token in the link: keep it in a cookie and take it out of
			// the address bar (and of the history, the refreshes and any Referer).
			http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			q := r.URL.Query()
			q.Del("token")
			u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
		if !s.authorized(r) {
			h.Set("WWW-Authenticate", `Bearer realm="sealpost dashboard"`)
			http.Error(w, "a token is needed: open the link `sealpost dashboard` printed (with ?token=...) once, or send Authorization: Bearer TOKEN", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// authorized: the request carries the token in an Authorization: Bearer header or the cookie.
func (s *server) authorized(r *http.Request) bool {
	if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && s.tokenOK(strings.TrimSpace(auth)) {
		return true
	}
	c, err := r.Cookie(CookieName)
	return err == nil && s.tokenOK(c.Value)
}

func (s *server) tokenOK(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.Token)) == 1
}

// loopbackHost reports whether a Host header names this machine's loopback: localhost, or a
// loopback IP, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// layout is what every page shows around its content.
type layout struct {
	Title   string
	Nav     string
	Node    string
	Now     string
	Refresh int
	Error   string
	Body    any
}

// render reaches the node, lets fill make the page's content from it, and writes the page. A
// node that cannot be reached, or a fill that fails, gives the same page with the error in it
// (503, or 404 for errNotFound), so that the refresh finds the node again when it is back.
func (s *server) render(w http.ResponseWriter, r *http.Request, name, title string, fill func(ctx context.Context, src Source, st node.Status) (any, error)) {
	ctx := r.Context()
	now := s.opts.Now()
	page := layout{Title: title, Nav: name, Now: now.Local().Format("2006-01-02 15:04:05"), Refresh: int(s.opts.Refresh / time.Second)}
	if page.Refresh < 1 {
		page.Refresh = 1
	}
	code := http.StatusOK
	err := func() error {
		src, done, err := s.opts.Open(ctx)
		if err != nil {
			return err
		}
		defer done()
		st, err := src.Status(ctx)
		if err != nil {
			return err
		}
		page.Node = st.Address
		page.Body, err = fill(ctx, src, st)
		return err
	}()
	if err != nil {
		page.Error = err.Error()
		code = http.StatusServiceUnavailable
		if errors.Is(err, errNotFound) {
			code = http.StatusNotFound
		} else {
			s.opts.Logger.Warn("dashboard page failed", "op", name, "err", err)
		}
	}
	var b strings.Builder
	if err := s.pages[name].ExecuteTemplate(&b, "layout", page); err != nil {
		s.opts.Logger.Error("dashboard template", "op", name, "err", err)
		http.Error(w, "the page could not be made", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write([]byte(b.String()))
	}
}

// errNotFound: a page about something the node does not know (a peer not pinned).
var errNotFound = errors.New("not found")
