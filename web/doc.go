// Package web is sealpost's dashboard (`sealpost dashboard`): read-only web pages of the fleet
// view, each peer's details and recent results, the recent results of all peers, and the
// node's status and outbox, rendered on the server with html/template and a little embedded
// CSS. The pages refresh themselves with a meta refresh; they load nothing from anywhere else
// and run no JavaScript at all, so nothing leaves the machine and nothing a peer sends can run
// in the browser.
//
// # Imports
//
// node only (for the types of its API: FleetEntry, PeerInfo, Result, Status), and the standard
// library; never keystore or session (deps_test.go). The command line is its only importer and
// gives it a Source through Options.Open.
//
// # Invariants
//
//   - Read-only: GET and HEAD only; no forms, nothing on any page changes the node.
//   - Everything a peer or a program wrote (host names, OS strings, command output) reaches the
//     page through html/template's contextual escaping, never as template.HTML.
//   - A page reads what it shows: results through RecentResults with the page's limit (50 on
//     the results page, 20 on a peer's), never the whole history with every output, which a
//     refresh every 10 s in every open tab would read again and again.
//   - Every response carries a Content-Security-Policy that allows only this origin's style
//     sheet (no script, no frames, no form targets), X-Frame-Options DENY, nosniff, no-referrer
//     and Cache-Control no-store.
//   - Every request must carry Options.Token (Authorization: Bearer, or the HttpOnly cookie a
//     first visit with ?token= sets), compared in constant time, also on a loopback address:
//     any local user can connect there, and the pages show every command's output (THREATS.md
//     row 36). Without a token the handler serves nothing. On a loopback listener
//     (Options.LoopbackHost) the Host header must also name a loopback host, so that a web page
//     elsewhere cannot reach the dashboard by DNS rebinding.
package web
