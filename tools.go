//go:build tools

// Package tools pins the code generators of the module, so that
// `go generate` (zbusc, for the client stub) runs the versions go.mod names.
package tools

import (
	_ "github.com/dave/jennifer/jen"
	_ "github.com/threefoldtech/zbus/generation"
)
