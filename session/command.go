package session

import (
	"bytes"
	"crypto/ecdh"
	"fmt"
	"time"
)

// The initiator's side of commands (docs/PROTOCOL.md, "Commands, responses and rotation"). Each
// transmission of a command carries a fresh X25519 share and is sealed under the initiator's
// current epoch. The initiator keeps, per transmission, only the response secret and its share's
// private key; when the answer comes, the response secret opens it and, if the command went out
// under the current epoch, the DH output yields the next epoch.

// Send seals a new command for peer under the current Confirmed session and records it as
// pending. notAfter bounds when it may run (at most MaxTTL, or Config.MaxTTL, from now). The same
// command id must never be sent with different content; use Retry to send it again.
func (e *Engine) Send(st Store, peer Fingerprint, cmd CommandID, payload []byte, notAfter time.Time) ([]byte, error) {
	if len(payload) > MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(payload), MaxPayload)
	}
	if cmd.IsZero() {
		return nil, fmt.Errorf("send: command id is zero")
	}
	if _, ok, err := st.Pending(cmd); err != nil {
		return nil, err
	} else if ok {
		return nil, fmt.Errorf("send: command %s is already pending; use Retry", cmd)
	}
	now := e.now()
	if life := notAfter.Sub(now); life <= 0 || life > e.ttl {
		return nil, fmt.Errorf("%w: lifetime %s, want (0, %s]", ErrTTL, life.Round(time.Second), e.ttl)
	}
	pd := &Pending{Command: cmd, Peer: peer, Payload: bytes.Clone(payload), Created: now.UnixMilli(), NotAfter: notAfter.UnixMilli()}
	pkg, err := e.transmit(st, pd)
	if err != nil {
		return nil, err
	}
	return pkg, st.PutPending(pd)
}

// Retry sends a pending command again under the current session, with a new sequence number and
// share but the same command id, created-at and not-after: the responder's ledger makes sure it
// runs at most once. Use it after a re-handshake, or when an answer is overdue.
func (e *Engine) Retry(st Store, cmd CommandID) ([]byte, error) {
	pd, ok, err := st.Pending(cmd)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("retry: command %s is not pending", cmd)
	}
	pkg, err := e.transmit(st, pd)
	if err != nil {
		return nil, err
	}
	return pkg, st.PutPending(pd)
}

// transmit seals one transmission of pd and appends its Send record.
func (e *Engine) transmit(st Store, pd *Pending) ([]byte, error) {
	s, err := e.confirmedInitiator(st, pd.Peer)
	if err != nil {
		return nil, err
	}
	var seed [32]byte
	if err := e.random(seed[:]); err != nil {
		return nil, err
	}
	priv, err := ecdh.X25519().NewPrivateKey(seed[:])
	if err != nil {
		return nil, err
	}
	h := Header{
		Type: TypeCommand, Sender: e.fp, Recipient: pd.Peer, Session: s.ID, Epoch: s.Current.ID,
		Seq: s.NextSeq, Command: pd.Command, Created: pd.Created, NotAfter: pd.NotAfter,
	}
	buf, _ := encodeInner(priv.PublicKey().Bytes(), pd.Payload)
	pkg, err := sealInto(buf, &h, &s.Current.Secret, e.rand)
	if err != nil {
		return nil, err
	}
	hc := hashPackage(pkg)
	snd := Send{Session: s.ID, Epoch: s.Current.ID, Seq: h.Seq, CommandHash: hc, ResponseSecret: responseSecret(&s.Current.Secret, hc[:])}
	copy(snd.SharePriv[:], seed[:])
	pd.Sends = append(pd.Sends, snd)
	if len(pd.Sends) > MaxSends {
		pd.Sends = pd.Sends[len(pd.Sends)-MaxSends:]
	}
	s.NextSeq++
	if err := st.PutSession(s); err != nil {
		return nil, err
	}
	return pkg, nil
}

func (e *Engine) confirmedInitiator(st Store, peer Fingerprint) (*State, error) {
	ids, err := st.SessionsOf(peer)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		s, ok, err := st.Session(id)
		if err != nil {
			return nil, err
		}
		if ok && s.Role == Initiator && s.Status == Confirmed {
			return s, nil
		}
	}
	return nil, ErrNoSession
}

// receiveAnswer handles RESPONSE and ERROR packages on the initiator.
func (e *Engine) receiveAnswer(st Store, p *Package, raw []byte) (Outcome, error) {
	pd, ok, err := st.Pending(p.Command)
	if err != nil {
		return Outcome{}, err
	}
	if !ok || pd.Peer != p.Sender {
		return Outcome{}, fmt.Errorf("%w: %s for no pending command", ErrReplay, p.Type)
	}
	idx := -1
	for i := range pd.Sends {
		s := &pd.Sends[i]
		if s.Session == p.Session && s.Epoch == p.Epoch && s.Seq == p.Seq {
			idx = i
			break
		}
	}
	if idx < 0 {
		return Outcome{}, fmt.Errorf("%w: %s matches no transmission of command %s", ErrReplay, p.Type, p.Command)
	}
	snd := pd.Sends[idx]
	plain, err := open(p, raw, &snd.ResponseSecret)
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: %s", err, p.Type)
	}
	out := Outcome{Peer: p.Sender, Session: p.Session, Command: p.Command}

	if p.Type == TypeError {
		re, err := decodeError(plain)
		if err != nil {
			return Outcome{}, err
		}
		out.Err = re
		if re.Code == CodeRekey {
			// The command did not run. Forget this transmission's keys and keep the command
			// pending for the next session.
			pd.Sends = append(pd.Sends[:idx], pd.Sends[idx+1:]...)
			out.Kind = RekeyRequested
			return out, st.PutPending(pd)
		}
		out.Kind = Failed
		return out, st.DeletePending(pd.Command)
	}

	share, payload, err := decodeInner(plain)
	if err != nil {
		return Outcome{}, err
	}
	s, ok, err := st.Session(p.Session)
	if err != nil {
		return Outcome{}, err
	}
	// Only a child of the current epoch is adopted: the responder deletes an epoch only after a
	// command under one of its children, which we send only after adopting that child; so a child
	// of the current epoch is always one the responder still holds.
	if ok && s.Role == Initiator && s.Status == Confirmed && s.Current.ID == snd.Epoch && share == ([32]byte{}) {
		// The null share: the responder holds a full window of this epoch's children and none of
		// their responses reached us. No child; a new handshake is due.
		out.Epoch, out.Rekey = s.Current.Gen, true
	} else if ok && s.Role == Initiator && s.Status == Confirmed && s.Current.ID == snd.Epoch {
		dh, err := x25519(snd.SharePriv[:], share[:])
		if err != nil {
			return Outcome{}, parseErr("share", "response share: %v", err)
		}
		hr := hashPackage(raw)
		child := childSecret(dh, &snd.ResponseSecret, snd.CommandHash[:], hr[:])
		s.Current = Epoch{ID: epochID(&child), Secret: child, Gen: s.Current.Gen + 1}
		if err := st.PutSession(s); err != nil {
			return Outcome{}, err
		}
		out.Epoch = s.Current.Gen
	} else if ok {
		out.Epoch = s.Current.Gen
	}
	if err := st.DeletePending(pd.Command); err != nil {
		return Outcome{}, err
	}
	out.Kind = Delivered
	out.Payload = bytes.Clone(payload)
	return out, nil
}

func x25519(priv, pub []byte) ([]byte, error) {
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	pk, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return k.ECDH(pk)
}
