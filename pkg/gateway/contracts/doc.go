// Package contracts holds, one package each, the bus contracts zos's callers
// of the gateway used after the first (pkg/gateway's Gateway, 2021): each
// package copies zos's interface and the types it carries, with zos's exact
// Go field names (zbus encodes a struct as a map keyed by them), and its
// stubs/ folder holds the client zbusc generates from it. The gateway serves
// all of them with one object (pkg/gateway's Object); the stubs let tests
// call it as each generation of zos does.
package contracts
