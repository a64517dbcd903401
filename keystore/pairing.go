package keystore

import "log/slog"

// Pairing returns the pairing blob for an email address (exact bytes; the
// caller canonicalises addresses).
func (tx *Tx) Pairing(address string) ([]byte, bool, error) {
	if err := checkAddress("pairing address", address); err != nil {
		return nil, false, err
	}
	v := tx.bucket(bPairings).Get([]byte(address))
	if v == nil {
		return nil, false, nil
	}
	return clone(v), true, nil
}

// PutPairing stores or replaces the pairing blob for address.
func (tx *Tx) PutPairing(address string, blob []byte) error {
	if err := checkAddress("pairing address", address); err != nil {
		return err
	}
	if err := checkBlob("pairing", blob); err != nil {
		return err
	}
	if err := tx.bucket(bPairings).Put([]byte(address), clone(blob)); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_pairing", slog.String("address", address))
	}
	return nil
}

// DeletePairing removes the pairing for address (ErrNotFound if absent).
func (tx *Tx) DeletePairing(address string) error {
	if err := checkAddress("pairing address", address); err != nil {
		return err
	}
	return deleteExisting(tx, bPairings, []byte(address), "pairing "+address, "delete_pairing", slog.String("address", address))
}

// ForEachPairing calls fn for every armed pairing, in address order. The values are copies.
func (tx *Tx) ForEachPairing(fn func(address string, blob []byte) error) error {
	return tx.bucket(bPairings).ForEach(func(k, v []byte) error {
		return fn(string(k), clone(v))
	})
}
