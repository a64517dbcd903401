package keystore

import "log/slog"

// Config holds small settings other packages keep with the node state (the
// mailbox host, polling interval, and so on). Values are opaque bytes.
//
// Layout: config: key -> raw bytes.

// Config returns the value stored under key. An empty stored value is
// returned as a non-nil empty slice with true.
func (tx *Tx) Config(key string) ([]byte, bool, error) {
	if err := checkConfigKey(key); err != nil {
		return nil, false, err
	}
	v, ok := get(tx.bucket(bConfig), []byte(key))
	return v, ok, nil
}

// PutConfig stores val (copied) under key.
func (tx *Tx) PutConfig(key string, val []byte) error {
	if err := checkConfigKey(key); err != nil {
		return err
	}
	if err := tx.bucket(bConfig).Put([]byte(key), append([]byte{}, val...)); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("put_config", slog.String("key", key), slog.Int("bytes", len(val)))
	}
	return nil
}

// DeleteConfig removes key; a missing key is not an error.
func (tx *Tx) DeleteConfig(key string) error {
	if err := checkConfigKey(key); err != nil {
		return err
	}
	if err := tx.bucket(bConfig).Delete([]byte(key)); err != nil {
		return err
	}
	if tx.debugOn() {
		tx.logOp("delete_config", slog.String("key", key))
	}
	return nil
}
