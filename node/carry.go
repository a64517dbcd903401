package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/mailbox"
	"github.com/sealpost/sealpost/session"
)

// Packages carried as files (docs/PROTOCOL.md section 21): Export writes what waits in the
// outbox for one peer into a directory, Import applies the package files of a directory as if
// they had arrived by mail, through the same path (receive, process.go), so every check, the
// ledger and the replay window apply unchanged and a directory imported twice runs nothing
// twice. A node without a mailbox (MailConfig.NoMail) moves all of its packages this way; a
// node with one moves packages this way for addresses that no mail reaches (carried).
//
// A gateway is a node with a mailbox that forwards sealed packages it cannot open for an
// air-gapped node (Gateway): mail for it is held in the outbox until exported, and files from it
// are mailed on to the address their head names. It holds no key of that node.

// Outcomes of a carried file, in CarriedFile.Outcome.
const (
	CarryWritten  = "written"  // export: the package is in the file, and out of the outbox
	CarryImported = "imported" // import: applied as a mail would be
	CarrySeen     = "seen"     // import: a copy of a package applied before (nothing ran again)
	// CarryStale: import: for a session or epoch this node has moved past, such as the answer to
	// a handshake that completed from an earlier copy of the directory. Nothing changed.
	CarryStale     = "stale"
	CarryForwarded = "forwarded" // import on a gateway: queued to be mailed on
	CarrySkipped   = "skipped"   // import: not for this node (left alone)
	CarryFailed    = "failed"    // import: refused or unreadable (left alone; Detail says why)
)

// CarriedFile is what became of one file.
type CarriedFile struct {
	Name    string `json:"name"`
	Type    string `json:"type,omitempty"` // the package's type (PAIR, COMMAND, ...)
	Bytes   int    `json:"bytes"`
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
	// Removed: import --remove deleted the file after its effects committed (or the gateway
	// after it queued the package for mail).
	Removed bool `json:"removed,omitempty"`
}

// CarryReport is what Export or Import did, file by file, in the order it handled them.
type CarryReport struct {
	Dir   string        `json:"dir"`
	Files []CarriedFile `json:"files"`
}

// Count returns how many files had outcome o.
func (r CarryReport) Count(o string) int {
	k := 0
	for _, f := range r.Files {
		if f.Outcome == o {
			k++
		}
	}
	return k
}

// Gateway is an air-gapped node this node forwards for (docs/PROTOCOL.md section 21).
type Gateway struct {
	// Name is the local name used with export and gateway.
	Name string `json:"name"`
	// Fingerprint is the air-gapped node's: mail sealed to it is held for the directory, and
	// files it sent are mailed on.
	Fingerprint string `json:"fingerprint"`
	// Address is the air-gapped node's own address: the one its peers mail it at, which must
	// reach this node's mailbox (by default this node's address plus-addressed with Name).
	Address string `json:"address"`
}

// ErrNoSuchCarryPeer: export or gateway named neither a peer nor a gateway route.
var ErrNoSuchCarryPeer = errors.New("no peer or gateway route by that name")

// noMail is the transport of a node without a mailbox: nothing arrives, nothing is moved, and
// Send is never called (Flush mails nothing, see mailable).
type noMail struct{}

var errNoMail = errors.New("this node has no mailbox (init --no-mail): packages are carried with `sealpost export` and `sealpost import`")

func (noMail) Send(context.Context, string, []byte) error { return errNoMail }

// Receive waits as long as asked (a serving loop that has nothing else to read) and returns
// nothing.
func (noMail) Receive(ctx context.Context, after mailbox.Cursor, wait time.Duration, _ int) ([]mailbox.Message, mailbox.Cursor, error) {
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, after, ctx.Err()
		}
	}
	return nil, after, nil
}
func (noMail) Ack(context.Context, ...mailbox.Message) error             { return nil }
func (noMail) Reject(context.Context, mailbox.Message, string) error     { return nil }
func (noMail) Prune(context.Context, time.Time) (int, error)             { return 0, nil }
func (noMail) Processed(context.Context, int) ([]mailbox.Message, error) { return nil, nil }
func (noMail) Close() error                                              { return nil }

// carriedDomain: an address in it (RFC 2606's .invalid) names a node that no mail reaches; what
// waits for it leaves only by export.
const carriedDomain = ".invalid"

// mailable returns the outbox items Flush may mail: none on a node without a mailbox; otherwise
// all but those for a carried address (in .invalid, or an air-gapped node's this node is the
// gateway of), which wait for export.
func (n *Node) mailable(tx *keystore.Tx, items []keystore.OutboxItem) ([]keystore.OutboxItem, error) {
	if n.cfg.NoMail {
		return nil, nil
	}
	gws, err := gatewaysIn(tx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(items, func(it keystore.OutboxItem) bool {
		return strings.HasSuffix(it.To, carriedDomain) || slices.ContainsFunc(gws, func(g Gateway) bool { return g.Address == it.To })
	}), nil
}

// gatewaysIn reads the gateway routes from the stored settings (they change while the node runs,
// so they are not taken from n.cfg).
func gatewaysIn(tx *keystore.Tx) ([]Gateway, error) {
	b, ok, err := tx.MailboxSettings()
	if err != nil || !ok {
		return nil, err
	}
	var c MailConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("stored mailbox settings: %w", err)
	}
	return c.Gateways, nil
}

// putGateways stores the gateway routes, keeping every other stored setting as it is.
func putGateways(tx *keystore.Tx, gws []Gateway) error {
	b, _, err := tx.MailboxSettings()
	if err != nil {
		return err
	}
	m := map[string]json.RawMessage{}
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("stored mailbox settings: %w", err)
		}
	}
	if len(gws) == 0 {
		delete(m, "gateways")
	} else {
		g, err := json.Marshal(gws)
		if err != nil {
			return err
		}
		m["gateways"] = g
	}
	out, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.PutMailboxSettings(out)
}

// AddGateway makes this node the gateway of an air-gapped node (docs/PROTOCOL.md section 21):
// mail sealed to g.Fingerprint (and PAIR packages for no pairing of this node's) is held in the
// outbox for `export`, and files from it are mailed on. An empty g.Address is this node's own,
// plus-addressed with g.Name. It returns the route as stored.
func (n *Node) AddGateway(_ context.Context, g Gateway) (Gateway, error) {
	if n.cfg.NoMail {
		return g, fmt.Errorf("a gateway needs a mailbox; this node has none (init --no-mail)")
	}
	if g.Name == "" || strings.ContainsAny(g.Name, "/ \t\n@+") {
		return g, fmt.Errorf("gateway name %q: use a short name without spaces, slashes, @ or +", g.Name)
	}
	fp, err := session.ParseFingerprint(g.Fingerprint)
	if err != nil {
		return g, fmt.Errorf("--fingerprint: %w", err)
	}
	if fp == n.Fingerprint() {
		return g, fmt.Errorf("%s is this node's own fingerprint", fp)
	}
	g.Fingerprint = fp.String()
	if g.Address == "" {
		local, domain, _ := strings.Cut(n.cfg.Address, "@")
		local, _, _ = strings.Cut(local, "+")
		g.Address = local + "+" + strings.ToLower(g.Name) + "@" + domain
	}
	g.Address = strings.ToLower(strings.TrimSpace(g.Address))
	if err := session.ValidAddress(g.Address); err != nil {
		return g, fmt.Errorf("--address: %w", err)
	}
	if strings.EqualFold(g.Address, n.cfg.Address) {
		return g, fmt.Errorf("--address %s is this node's own: give the air-gapped node an address of its own that reaches this mailbox (a plus-address)", g.Address)
	}
	err = n.update(func(tx *keystore.Tx, _ TxStore) error {
		if _, ok, err := tx.Peer(g.Name); err != nil {
			return err
		} else if ok {
			return fmt.Errorf("%q is a peer of this node already; a gateway route needs a name of its own", g.Name)
		}
		gws, err := gatewaysIn(tx)
		if err != nil {
			return err
		}
		gws = slices.DeleteFunc(gws, func(o Gateway) bool { return o.Name == g.Name })
		for _, o := range gws {
			if o.Fingerprint == g.Fingerprint || o.Address == g.Address {
				return fmt.Errorf("gateway route %s has that fingerprint or address already", o.Name)
			}
		}
		return putGateways(tx, append(gws, g))
	})
	return g, err
}

// RemoveGateway ends forwarding for one air-gapped node. What waits for it in the outbox stays
// there (an export still writes it).
func (n *Node) RemoveGateway(_ context.Context, name string) error {
	return n.update(func(tx *keystore.Tx, _ TxStore) error {
		gws, err := gatewaysIn(tx)
		if err != nil {
			return err
		}
		k := len(gws)
		if gws = slices.DeleteFunc(gws, func(o Gateway) bool { return o.Name == name }); len(gws) == k {
			return fmt.Errorf("%w: %q (see `sealpost gateway list`)", ErrNoSuchCarryPeer, name)
		}
		return putGateways(tx, gws)
	})
}

// Gateways lists the gateway routes.
func (n *Node) Gateways(context.Context) ([]Gateway, error) {
	var gws []Gateway
	err := n.store.View(func(tx *keystore.Tx) error {
		var err error
		gws, err = gatewaysIn(tx)
		return err
	})
	return gws, err
}

// divert is the gateway's part of receiving a mail (process.go, receive): a package not for this
// node that a gateway route holds is queued, unopened, for the air-gapped node's export, in the
// mail's own transaction. A PAIR goes to every route unless this node armed a pairing for its
// sender's address: PAIR names no recipient, and each air-gapped node takes only one it armed.
func (n *Node) divert(tx *keystore.Tx, st TxStore, pkg []byte) (bool, error) {
	own := n.Fingerprint()
	if len(pkg) >= 40 && session.Type(pkg[5]) != session.TypePair && string(pkg[24:40]) == string(own[:]) {
		return false, nil // ours: the common case, decided without parsing (section 3's offsets)
	}
	p, err := session.Parse(pkg)
	if err != nil || p.Recipient == own {
		return false, nil // not a gateway's business (a malformed one is rejected as usual)
	}
	var to []string
	if p.Type == session.TypePair {
		addr, ok := pairAddress(p)
		if !ok {
			return false, nil
		}
		if _, armed, err := st.Pairing(addr); err != nil || armed {
			return false, err
		}
	}
	gws, err := gatewaysIn(tx)
	if err != nil {
		return false, err
	}
	for _, g := range gws {
		if p.Type == session.TypePair || g.Fingerprint == p.Recipient.String() {
			to = append(to, g.Address)
		}
	}
	for _, addr := range to {
		if err := enqueue(tx, addr, pkg); err != nil {
			return false, err
		}
	}
	if len(to) > 0 {
		n.log.Info("package held for an air-gapped node", "op", "gateway", "type", packageType(pkg), "to", to)
	}
	return len(to) > 0, nil
}

// pairAddress is the sender's address in a PAIR body (section 5: mode, key, length, address,
// MAC), if the body is long enough to hold one; Receive checks the rest.
func pairAddress(p *session.Package) (string, bool) {
	b := p.Body
	if len(b) < 34 {
		return "", false
	}
	k := int(b[33])
	if k == 0 || len(b) < 34+k {
		return "", false
	}
	return string(b[34 : 34+k]), true
}

// Export writes every package waiting in the outbox for peer (a pinned peer, one with a pairing
// armed, or a gateway route) into dir, one file each, and takes them out of the outbox once the
// files are durable: a temporary name, synced, renamed to a random name that is never an
// existing file's, and the directory synced. A crash before the outbox commit only writes them
// again at the next export (the peer takes the copies as it takes duplicate mail).
func (n *Node) Export(ctx context.Context, peer, dir string) (CarryReport, error) {
	rep := CarryReport{Dir: dir, Files: []CarriedFile{}}
	n.sendMu.Lock() // a Flush at the same time must not mail what is being exported
	defer n.sendMu.Unlock()
	var items []keystore.OutboxItem
	err := n.view(func(tx *keystore.Tx, st TxStore) error {
		addr, err := carryAddress(tx, peer)
		if err != nil {
			return err
		}
		all, err := tx.Outbox()
		for _, it := range all {
			if it.To == addr {
				items = append(items, it)
			}
		}
		return err
	})
	if err != nil || len(items) == 0 {
		return rep, err
	}
	if fi, err := os.Stat(dir); err != nil {
		return rep, err
	} else if !fi.IsDir() {
		return rep, fmt.Errorf("%s is not a directory", dir)
	}
	var written []uint64
	var werr error
	for _, it := range items {
		if werr = ctx.Err(); werr != nil {
			break
		}
		name, err := writeCarryFile(dir, marshalCarryFile(it.To, it.Package))
		if err != nil {
			werr = err
			break
		}
		written = append(written, it.ID)
		rep.Files = append(rep.Files, CarriedFile{Name: name, Type: packageType(it.Package), Bytes: len(it.Package), Outcome: CarryWritten})
	}
	if len(written) > 0 {
		if err := syncDir(dir); err != nil {
			return CarryReport{Dir: dir, Files: []CarriedFile{}}, fmt.Errorf("sync %s (the files are written but may not be durable; they stay in the outbox): %w", dir, err)
		}
		if err := n.store.Update(func(tx *keystore.Tx) error {
			for _, id := range written {
				if err := tx.DeleteOutbox(id); err != nil && !errors.Is(err, keystore.ErrNotFound) {
					return err
				}
			}
			return nil
		}); err != nil {
			return rep, fmt.Errorf("files written, but not cleared from the outbox (the next export writes them again): %w", err)
		}
	}
	for _, f := range rep.Files {
		n.emit(Event{Kind: EventSent, Peer: peer, Package: f.Type, Bytes: f.Bytes, Detail: "to " + filepath.Join(dir, f.Name)})
	}
	return rep, werr
}

// carryAddress is where the outbox keeps what waits for the peer or gateway route called name.
func carryAddress(tx *keystore.Tx, name string) (string, error) {
	if p, ok, err := tx.Peer(name); err != nil {
		return "", err
	} else if ok {
		return p.Address, nil
	}
	var addr string
	if err := tx.ForEachPairing(func(a string, blob []byte) error {
		if pr, err := decode[session.Pairing](blob, "pairing"); err == nil && pr.Name == name {
			addr = a
		}
		return nil
	}); err != nil || addr != "" {
		return addr, err
	}
	gws, err := gatewaysIn(tx)
	if err != nil {
		return "", err
	}
	for _, g := range gws {
		if g.Name == name {
			return g.Address, nil
		}
	}
	return "", fmt.Errorf("%w: %q (see `sealpost peer list` and `sealpost gateway list`)", ErrNoSuchCarryPeer, name)
}

// writeCarryFile writes b under a fresh name in dir, durably, and returns the name.
func writeCarryFile(dir string, b []byte) (string, error) {
	name, err := carryName()
	if err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	final := filepath.Join(dir, name)
	if err == nil {
		// Never over another file (rename would replace it): 128 random bits make that
		// unheard of, and this makes it impossible short of a race with another writer.
		if _, serr := os.Lstat(final); serr == nil {
			err = fmt.Errorf("%s exists already", final)
		}
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return "", err
	}
	return name, nil
}

// syncDir makes renames and removals in dir durable. File systems that cannot sync a directory
// (EINVAL: FAT on some systems) make their changes durable with the file's own sync.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// Import handles every package file in dir (named *.slpk) as if it had arrived by mail, oldest
// package first: one addressed to this node goes through the same path as a mail (receive), one
// that an air-gapped node this node is the gateway of sent to someone else is queued to be mailed
// on (and its file removed once queued), and any other is left alone (files this node wrote,
// files for other nodes). A file that cannot be read or is refused is reported and left where it
// is; it never stops the others. With remove, the files whose effects committed are deleted.
// Commands the files clear run before Import returns (unless an agent serves this node, which
// runs them), and their answers wait in the outbox for the next export, or go by mail.
func (n *Node) Import(ctx context.Context, dir string, remove bool) (CarryReport, error) {
	rep := CarryReport{Dir: dir, Files: []CarriedFile{}}
	if !n.serving.Load() {
		defer n.exec.wait(ctx)
		// A push whose last chunk a file brought goes into place, and chunks asked for again
		// are sealed, after the transactions that recorded them (placePushes, resendPending):
		// their answers and chunks wait for the next export too. A resender of a node with a
		// mailbox may wait for its mail to go, which Import does not wait for.
		defer func() {
			n.afterMail(ctx)
			n.placers.wait()
			if !n.mails() {
				n.resenders.wait()
			}
		}()
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return rep, err
	}
	type file struct {
		CarriedFile
		cf carryFile
	}
	var files []file
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), carryExt) || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		f := file{CarriedFile: CarriedFile{Name: e.Name()}}
		b, err := readCarryFile(filepath.Join(dir, e.Name()))
		if err == nil {
			f.Bytes = len(b)
			f.cf, err = parseCarryFile(b)
		}
		if err != nil {
			f.Outcome, f.Detail = CarryFailed, Printable(err.Error())
			rep.Files = append(rep.Files, f.CarriedFile)
			continue
		}
		f.Type, f.Bytes = f.cf.pkg.Type.String(), len(f.cf.Package) // the package's size, as export shows it
		files = append(files, f)
	}
	// Oldest first, and a session's packages in their order: a handshake's answer before the
	// commands that follow it.
	slices.SortStableFunc(files, func(a, b file) int {
		return cmp.Or(cmp.Compare(a.cf.pkg.Created, b.cf.pkg.Created), cmp.Compare(a.cf.pkg.Seq, b.cf.pkg.Seq), strings.Compare(a.Name, b.Name))
	})
	own := n.Fingerprint()
	var ferr error
	for _, f := range files {
		if ferr = ctx.Err(); ferr != nil {
			break
		}
		p := f.cf.pkg
		var mine, forward bool
		var why string
		err := n.view(func(tx *keystore.Tx, st TxStore) error {
			switch {
			case p.Sender == own:
				why = "written by this node"
			case p.Recipient == own:
				mine = true
			case p.Type == session.TypePair && strings.EqualFold(f.cf.To, n.cfg.Address):
				addr, _ := pairAddress(p)
				if _, armed, err := st.Pairing(addr); err != nil {
					return err
				} else if armed {
					mine = true
				} else if pp, ok, err := tx.PeerByFingerprint(p.Sender); err != nil {
					return err
				} else if ok && pp.Address == addr {
					f.Outcome = CarrySeen // paired already: this is its PAIR again
				} else {
					why = "no pairing armed for " + Printable(addr) + " (arm it with `sealpost peer add`, then import again)"
				}
			default:
				gws, err := gatewaysIn(tx)
				if err != nil {
					return err
				}
				forward = slices.ContainsFunc(gws, func(g Gateway) bool { return g.Fingerprint == p.Sender.String() })
				why = "addressed to another node"
			}
			return nil
		})
		if err != nil {
			ferr = err
			break
		}
		switch {
		case mine:
			dup, rejectErr, err := n.receive(ctx, f.cf.Package, nil)
			switch {
			case err == nil && rejectErr == nil && dup:
				f.Outcome = CarrySeen
			case err != nil:
				// The node's own trouble: stop, as the inbox does; the file stays.
				f.Outcome, f.Detail = CarryFailed, err.Error()
				rep.Files = append(rep.Files, f.CarriedFile)
				return rep, fmt.Errorf("import %s: %w", f.Name, err)
			case errors.Is(rejectErr, session.ErrReplay):
				f.Outcome = CarrySeen
			case errors.Is(rejectErr, session.ErrUnknownSession), errors.Is(rejectErr, session.ErrUnknownEpoch),
				errors.Is(rejectErr, session.ErrUnknownStream): // a chunk of a stream that arrived whole
				f.Outcome, f.Detail = CarryStale, Printable(rejectErr.Error())
			case rejectErr != nil:
				f.Outcome, f.Detail = CarryFailed, Printable(rejectErr.Error())
				n.log.Info("package file rejected", "op", "import", "file", f.Name, "err", rejectErr)
				n.emit(Event{Kind: EventRejected, Package: f.Type, Bytes: f.Bytes, Detail: rejectErr.Error()})
			default:
				f.Outcome = CarryImported
			}
		case forward:
			f.Outcome, f.Detail = n.forward(f.cf)
		case f.Outcome == "":
			f.Outcome, f.Detail = CarrySkipped, why
		}
		if f.Outcome == CarryForwarded || remove && (f.Outcome == CarryImported || f.Outcome == CarrySeen || f.Outcome == CarryStale) {
			if err := os.Remove(filepath.Join(dir, f.Name)); err == nil || errors.Is(err, os.ErrNotExist) {
				f.Removed = true
			} else {
				f.Detail = joinNote(f.Detail, "not removed: "+err.Error())
			}
		}
		rep.Files = append(rep.Files, f.CarriedFile)
	}
	if slices.ContainsFunc(rep.Files, func(f CarriedFile) bool { return f.Removed }) {
		if err := syncDir(dir); err != nil && ferr == nil {
			ferr = err
		}
	}
	if err := n.flushSoon(ctx); err != nil {
		n.log.Warn("outbox not flushed; will retry", "op", "flush", "err", err)
	}
	return rep, ferr
}

// forward queues a package from an air-gapped node to be mailed to the address its file names.
func (n *Node) forward(cf carryFile) (outcome, detail string) {
	to := cf.To
	if strings.HasSuffix(to, carriedDomain) || strings.EqualFold(to, n.cfg.Address) {
		return CarryFailed, "its address " + Printable(to) + " is not one mail reaches through this gateway"
	}
	err := n.update(func(tx *keystore.Tx, _ TxStore) error {
		gws, err := gatewaysIn(tx)
		if err != nil {
			return err
		}
		if slices.ContainsFunc(gws, func(g Gateway) bool { return g.Address == to }) {
			return fmt.Errorf("its address %s is an air-gapped node's behind this gateway: carry it there instead", to)
		}
		return enqueue(tx, to, cf.Package)
	})
	if err != nil {
		return CarryFailed, Printable(err.Error())
	}
	n.log.Info("package from an air-gapped node queued for mail", "op", "gateway", "type", cf.pkg.Type.String(), "to", to)
	return CarryForwarded, "to " + to
}

// readCarryFile reads one regular file of at most maxCarryFile bytes, following no symbolic link.
func readCarryFile(path string) ([]byte, error) {
	if fi, err := os.Lstat(path); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, &CarryFileError{"not a regular file (" + fi.Mode().Type().String() + ")"}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxCarryFile+1))
}
