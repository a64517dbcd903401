package mailbox

import (
	"fmt"
	"strings"

	netmail "net/mail"
)

// Many nodes, one mailbox (docs/PROTOCOL.md section 17). Sites often give many hosts one
// mailbox; each node then keeps an address of its own by plus-addressing
// (shared+web1@example.org, shared+web2@example.org), which Gmail, Fastmail, Microsoft 365,
// Postfix (recipient_delimiter = +) and the embedded relay all deliver to shared@example.org.
// Every node logged in to that account sees every node's mail, so each one reads only what was
// sent to its own address, and leaves the rest as it leaves mail that is not sealpost's: never
// downloaded, flagged, moved or expunged. The address a mail was sent to is read from its To
// header, which a sealpost sender writes as the one recipient it submits the mail to (the
// peer's pinned address; no Bcc, no second recipient). Delivered-To is not used: only some
// servers add it (Postfix's local delivery, Dovecot's LMTP, Gmail; not Microsoft 365), and
// after alias expansion it names the final mailbox rather than the address the sender chose.
// The relay is untrusted and may rewrite either header: this is a courtesy between cooperating
// nodes, and the sealed recipient fingerprint stays the real check.

// plusDelimiter separates an address's local part from its detail.
const plusDelimiter = "+"

// splitPlus splits a bare address into its mailbox (the address without the detail) and its
// detail: "shared+web1@example.org" gives ("shared@example.org", "web1", true). An address
// without a detail, or that is not name@domain, gives (addr, "", false). The local part is cut
// at the first "+", as Postfix, Dovecot and Gmail do.
func splitPlus(addr string) (base, detail string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return addr, "", false
	}
	local, domain := addr[:at], addr[at:]
	local, detail, ok = strings.Cut(local, plusDelimiter)
	if !ok || local == "" {
		return addr, "", false
	}
	return local + domain, detail, true
}

// toAddresses reads the bare addresses of a To header; a header that does not parse as an
// address list gives none (such a mail is judged by its sealed recipient alone).
func toAddresses(v string) []string {
	if strings.TrimSpace(v) == "" {
		return nil
	}
	list, err := netmail.ParseAddressList(v)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

// mailboxesOf is the set of mailboxes (lower-cased addresses without their detail) that the
// node's address and its login may receive for: other addresses of these mailboxes belong to
// other nodes. The login counts only when it is an address.
func mailboxesOf(address, login string) []string {
	var out []string
	for _, a := range []string{address, login} {
		if !strings.Contains(a, "@") {
			continue
		}
		base, _, _ := splitPlus(strings.ToLower(a))
		if !containsFold(out, base) {
			out = append(out, base)
		}
	}
	return out
}

// othersMail reports whether a mail whose To header names to is another node's: none of its
// addresses is own (the node's address, compared without regard to case), and one of them is
// another address of one of mailboxes (same mailbox, another detail or none). A mail with no To
// address, or sent only to addresses of other mailboxes (an alias, a forwarding), is not: the
// sealed recipient decides for it, as for every mail.
func othersMail(to []string, own string, mailboxes []string) bool {
	if len(to) == 0 || containsFold(to, own) {
		return false
	}
	for _, a := range to {
		base, _, _ := splitPlus(strings.ToLower(a))
		if containsFold(mailboxes, base) {
			return true
		}
	}
	return false
}

// othersMail reports whether a mail with these headers was sent to another node of this
// node's mailbox.
func (s *settings) othersMail(h head) bool {
	return othersMail(h.to, s.Address, s.mailboxes)
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// folderDetail is the detail of an address as one level of a folder name: the node's own
// processed and rejected folders are sealpost/processed/<detail> and sealpost/rejected/<detail>,
// so that one node's Prune and restore check never see another node's mail. Letters, digits,
// "-" and "_" are kept (lower-cased); every other byte becomes "=" and two hex digits, so that no
// detail names a hierarchy delimiter ("/" or "."), a LIST wildcard ("*", "%") or another
// detail's folder. An empty detail ("shared+@example.org") is "=".
func folderDetail(detail string) string {
	if detail == "" {
		return "="
	}
	var b strings.Builder
	for i := 0; i < len(detail); i++ {
		c := detail[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}
