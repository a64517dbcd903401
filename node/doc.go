// Package node is the engine that joins sealpost's leaf packages: receive -> open -> ledger ->
// policy -> execute -> seal -> outbox -> send. So far it holds the bridge between the protocol and
// the state store (TxStore), which makes every state change one received package causes commit
// in one bbolt transaction; the mailbox loop, execution and the outbox come with the mailbox layer.
//
// It may import session, compress, mailbox, commands and keystore; nothing imports it but
// cmd/sealpost. docs/PROTOCOL.md section 11 (the last paragraph) and section 13 are its contract.
package node
