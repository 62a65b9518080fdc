//go:build !linux

package gateway

import "net/netip"

// LocalNets returns nothing where there is no local routing table to read.
func LocalNets() ([]netip.Prefix, error) { return nil, nil }
