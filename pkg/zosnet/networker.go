package zosnet

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/threefoldtech/zbus"
)

// NetID is the ID of a tenant's network on the node, zos's zos.NetID.
type NetID string

// netIDLength is how many base58 characters of the hash zos keeps.
const netIDLength = 13

// NetworkID returns the ID zos gives the network named name of twin
// (zosbase pkg/gridtypes/zos/network.go): the first 13 base58 characters of
// md5("<twin>:<name>").
func NetworkID(twin uint32, name string) NetID {
	h := md5.Sum([]byte(strconv.FormatUint(uint64(twin), 10) + ":" + name))
	b := base58(h[:])
	if len(b) > netIDLength {
		b = b[:netIDLength]
	}
	return NetID(b)
}

// base58Alphabet is Bitcoin's, the one of github.com/jbenet/go-base58 that
// zos uses.
const base58Alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

// base58 encodes b as Bitcoin's base58 does: each leading zero byte is a
// '1'.
func base58(b []byte) string {
	n := new(big.Int).SetBytes(b)
	radix, mod := big.NewInt(58), new(big.Int)
	var out []byte
	for n.Sign() > 0 {
		n.DivMod(n, radix, mod)
		out = append(out, base58Alphabet[mod.Int64()])
	}
	for _, c := range b {
		if c != 0 {
			break
		}
		out = append(out, base58Alphabet[0])
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return string(out)
}

// TwinOf returns the twin of a workload ID as zos writes it,
// "<twin>-<deployment>-<name>".
func TwinOf(wlID string) (uint32, error) {
	first, _, ok := strings.Cut(wlID, "-")
	if !ok {
		return 0, fmt.Errorf("workload ID %q is not <twin>-<deployment>-<name>", wlID)
	}
	twin, err := strconv.ParseUint(first, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("workload ID %q does not start with a twin ID", wlID)
	}
	return uint32(twin), nil
}

// ErrNoAnswer is the error of a call the network daemon did not answer.
var ErrNoAnswer = errors.New("zos's network daemon (zbus module " + DaemonModule + ") did not answer")

// Networker is a client of the network daemon's object, for the calls the
// gateway needs. Its methods are safe for concurrent use.
type Networker struct {
	client  zbus.Client
	timeout time.Duration

	mu sync.Mutex
	// silentUntil is when the calls wait for the daemon again after one it
	// did not answer: until then they fail at once, so that a start that
	// attaches many routes does not wait for each.
	silentUntil time.Time
}

// NewNetworker returns a client of the network daemon reached through
// client, each call bounded by timeout (0: DefaultCallTimeout).
func NewNetworker(client zbus.Client, timeout time.Duration) *Networker {
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	return &Networker{client: client, timeout: timeout}
}

// GetNet returns the IP range of network id (the tenant's whole network, a
// /16 of IPv4), or the daemon's error for an unknown one.
func (n *Networker) GetNet(ctx context.Context, id NetID) (net.IPNet, error) {
	var ipnet net.IPNet
	err := n.call(ctx, "GetNet", []any{id}, &ipnet)
	return ipnet, err
}

// Namespace returns the name of the network namespace of network id under
// /var/run/netns.
func (n *Networker) Namespace(ctx context.Context, id NetID) (string, error) {
	var ns string
	if err := n.call(ctx, "Namespace", []any{id}, &ns); err != nil {
		return "", err
	}
	if ns == "" || strings.ContainsAny(ns, "/\x00") || ns == "." || ns == ".." {
		return "", fmt.Errorf("the network daemon named namespace %q for network %s", ns, id)
	}
	return ns, nil
}

// call calls method with args and decodes its one result into out; the
// error the method returned, if any, is returned.
func (n *Networker) call(ctx context.Context, method string, args []any, out any) error {
	n.mu.Lock()
	silent := time.Now().Before(n.silentUntil)
	n.mu.Unlock()
	if silent {
		return fmt.Errorf("%w (the last call waited %s)", ErrNoAnswer, n.timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	obj := DaemonObject
	resp, err := n.client.RequestContext(ctx, DaemonModule, obj, method, args...)
	switch {
	case ctx.Err() != nil:
		n.mu.Lock()
		n.silentUntil = time.Now().Add(n.timeout)
		n.mu.Unlock()
		return fmt.Errorf("%w within %s", ErrNoAnswer, n.timeout)
	case err != nil:
		return fmt.Errorf("calling %s of the network daemon: %w", method, err)
	case resp == nil:
		// zbus gives no answer and no error when the call was refused
		// (wrong arguments), or the broker failed.
		return fmt.Errorf("calling %s of the network daemon: no answer", method)
	}
	if resp.Error != nil {
		return fmt.Errorf("calling %s of the network daemon: %s", method, *resp.Error)
	}
	if callErr := resp.CallError(); callErr != nil {
		return callErr
	}
	if err := resp.Unmarshal(&zbus.Loader{out}); err != nil {
		return fmt.Errorf("reading the answer of %s of the network daemon: %w", method, err)
	}
	return nil
}
