package node

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/sealpost/sealpost/keystore"
	"github.com/sealpost/sealpost/session"
)

// keySupply holds handshake keys made ahead (session.NewHandshakeKeys), each for one handshake.
// A nil or empty supply gives nil, and the handshake makes its own.
type keySupply struct {
	keys []*session.HandshakeKeys
}

func (k *keySupply) take() *session.HandshakeKeys {
	if k == nil || len(k.keys) == 0 {
		if f := noKeyHook.Load(); f != nil {
			(*f)()
		}
		return nil
	}
	last := k.keys[len(k.keys)-1]
	k.keys = k.keys[:len(k.keys)-1]
	return last
}

// noKeyHook, when a test sets it, is called each time a handshake finds no key made ahead and
// so makes its own RSA key inside the caller's transaction.
var noKeyHook atomic.Pointer[func()]

// handshakeKeys makes, on every core, the handshake keys the commands of specs will need: one per
// distinct peer that has no initiator session yet. A peer that gets a session meanwhile leaves a
// key unused, which costs only the time it took.
func (n *Node) handshakeKeys(ctx context.Context, specs []RunSpec) (*keySupply, error) {
	need := 0
	if err := n.view(func(tx *keystore.Tx, st TxStore) error {
		seen := map[string]bool{}
		for _, s := range specs {
			if seen[s.Peer] {
				continue
			}
			seen[s.Peer] = true
			p, ok, err := tx.Peer(s.Peer)
			if err != nil || !ok {
				continue // Submit says what is wrong with it
			}
			open, err := n.hasInitiatorSession(st, p.Fingerprint)
			if err != nil {
				return err
			}
			if !open {
				need++
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if need == 0 {
		return nil, nil
	}
	out := &keySupply{keys: make([]*session.HandshakeKeys, need)}
	work := make(chan int)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for range min(runtime.GOMAXPROCS(0), need) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				k, err := session.NewHandshakeKeys()
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				out.keys[i] = k
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < need && ctx.Err() == nil; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if first != nil {
		return nil, first
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// hasInitiatorSession reports whether this node has a session of its own with the peer, confirmed
// or being opened.
func (n *Node) hasInitiatorSession(st TxStore, fp session.Fingerprint) (bool, error) {
	ids, err := st.SessionsOf(fp)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		s, ok, err := st.Session(id)
		if err != nil {
			return false, err
		}
		if ok && s.Role == session.Initiator {
			return true, nil
		}
	}
	return false, nil
}
