package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/sealpost/sealpost/web"
)

// minTokenLen is the shortest token --token-file may hold: a guessable one would defeat it.
const minTokenLen = 16

func runDashboard(ctx context.Context, g *globals, args []string) error {
	fs := newFlags(g, "dashboard", "[--listen 127.0.0.1:8080] [--token-file FILE]",
		"Serve read-only web pages of this node: the fleet view (one row per peer, STALE ones\n"+
			"marked), a page per peer with its host, sessions and recent results, the recent results\n"+
			"of all peers, and the status and outbox. The pages refresh themselves every 10 seconds and\n"+
			"load nothing from elsewhere (no JavaScript at all). The dashboard reads the node through\n"+
			"the agent's control socket, or opens the state for the moment of each page when no agent\n"+
			"runs, so it can run next to an agent.\n\n"+
			"It requires a token on every request, also on a loopback address (any user of this\n"+
			"machine can connect there, and the pages show every command's output): the one in\n"+
			"--token-file, or else a new one that it prints once at start. Open the printed link with\n"+
			"?token= once (the browser then keeps it in a cookie) or send `Authorization: Bearer TOKEN`.\n"+
			"On a loopback address it also answers only to requests addressed to a loopback host name\n"+
			"(so that a web page elsewhere cannot reach it by DNS rebinding). The dashboard speaks plain\n"+
			"HTTP: off this machine, put it behind TLS (a reverse proxy or an SSH tunnel).",
		"sealpost dashboard --listen 127.0.0.1:8080")
	listen := fs.String("listen", "127.0.0.1:8080", "listen on `ADDR` (host:port; port 0 picks a free one)")
	tokenFile := fs.String("token-file", "", "require the token in `FILE` on every request (default: a new one, printed at start)")
	if _, err := parseNoArgs(fs, args); err != nil {
		return err
	}
	token := ""
	if *tokenFile != "" {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return fmt.Errorf("read the token: %w", err)
		}
		if token = strings.TrimSpace(string(b)); len(token) < minTokenLen {
			return usagef("the token in %s is shorter than %d characters: put a long random one there (openssl rand -base64 32)", *tokenFile, minTokenLen)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another program using that port? try another with --listen)", *listen, err)
	}
	defer ln.Close()
	addr := ln.Addr().(*net.TCPAddr)
	generated := false
	if token == "" {
		var b [32]byte
		rand.Read(b[:])
		token, generated = base64.RawURLEncoding.EncodeToString(b[:]), true
	}
	host, port := addrForURL(*listen, addr)
	link := fmt.Sprintf("http://%s/", net.JoinHostPort(host, port))
	var out strings.Builder
	fmt.Fprintf(&out, "dashboard on %s (read-only; Ctrl-C stops it)\n", link)
	if generated {
		fmt.Fprintf(&out, "It requires this token, shown only now:\n  %s\nOpen %s?token=%s once; the browser keeps it in a cookie.\n", token, link, token)
	} else {
		fmt.Fprintf(&out, "It requires the token in %s: open %s?token=TOKEN once, or send Authorization: Bearer TOKEN.\n", *tokenFile, link)
	}
	fmt.Fprint(g.stdout, out.String())

	src := &dashboardSource{g: g}
	srv := &http.Server{
		Handler:           web.New(web.Options{Open: src.open, Token: token, LoopbackHost: addr.IP.IsLoopback(), Logger: g.logger()}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve the dashboard: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// addrForURL is the host and port to print in the dashboard's link: the host as given (a name
// stays a name), the address the listener got for an empty or unspecified one, and the port it
// got (for --listen :0).
func addrForURL(listen string, got *net.TCPAddr) (host, port string) {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		host = got.IP.String()
		if got.IP.IsUnspecified() {
			if h, err := os.Hostname(); err == nil {
				host = h
			}
		}
	}
	return host, fmt.Sprint(got.Port)
}

// dashboardSource reaches the node for one page at a time, as every command does (openAPI):
// the agent's control socket, or the state itself when no agent runs, opened for the page and
// closed after it. One page at a time, so that two requests do not fight over the state's lock.
type dashboardSource struct {
	g  *globals
	mu sync.Mutex
}

func (s *dashboardSource) open(ctx context.Context) (web.Source, func(), error) {
	s.mu.Lock()
	api, done, err := openAPI(ctx, s.g)
	if err != nil {
		s.mu.Unlock()
		return nil, nil, err
	}
	return api, func() { done(); s.mu.Unlock() }, nil
}
