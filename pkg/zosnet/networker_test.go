package zosnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/threefoldtech/zbus"
)

func TestBase58(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"bitcoin's example", []byte("hello world"), "StV1DL6CwTryKyV"},
		// Leading zero bytes are '1's, as in Bitcoin's encoding: the
		// first of md5's bytes may be zero.
		{"leading zeros", []byte{0, 0, 1}, "112"},
		{"empty", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := base58(tc.in); got != tc.want {
				t.Fatalf("base58(%x) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestNetworkID(t *testing.T) {
	id := NetworkID(7, "office")
	if len(id) != netIDLength || strings.ContainsAny(string(id), "0OIl") {
		t.Fatalf("NetworkID = %q, want 13 base58 characters", id)
	}
	if NetworkID(7, "office") != id {
		t.Fatal("NetworkID is not deterministic")
	}
	// The twin is part of the ID: another twin's network of the same
	// name is another network.
	if NetworkID(8, "office") == id || NetworkID(7, "lab") == id {
		t.Fatal("NetworkID ignores the twin or the name")
	}
}

func TestTwinOf(t *testing.T) {
	for _, tc := range []struct {
		wlID string
		want uint32
		err  bool
	}{
		{"7-1-web", 7, false},
		{"4294967295-12-x", 4294967295, false},
		{"wl-42", 0, true},
		{"7", 0, true},
		{"4294967296-1-x", 0, true},
	} {
		got, err := TwinOf(tc.wlID)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("TwinOf(%q) = %d, %v", tc.wlID, got, err)
		}
	}
}

// daemon is a network daemon with zos's method names and types.
type daemon struct{ nets map[NetID]string }

func (d daemon) GetNet(id NetID) (net.IPNet, error) {
	cidr, ok := d.nets[id]
	if !ok {
		return net.IPNet{}, fmt.Errorf("network not found")
	}
	_, n, err := net.ParseCIDR(cidr)
	return *n, err
}

func (d daemon) Namespace(id NetID) string { return "n-" + string(id) }

// loopClient is a zbus client that serves its requests with a surrogate
// of object, through zbus's own encoding; or never answers.
type loopClient struct {
	zbus.Client
	object any
}

func (c loopClient) RequestContext(ctx context.Context, module string, object zbus.ObjectID, method string, args ...any) (*zbus.Response, error) {
	if c.object == nil {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	out, err := wireCall(c.object, object, method, args...)
	if err != nil {
		return nil, err
	}
	return zbus.NewResponse("id", out, ""), nil
}

// wireCall calls method of obj as a zbus server would: the arguments
// encoded into a request as a client does, decoded, and dispatched by zbus's
// own Surrogate, so that the types are checked on the wire.
func wireCall(obj any, id zbus.ObjectID, method string, args ...any) (zbus.Output, error) {
	req, err := zbus.NewRequest("id", "id", id, method, args...)
	if err != nil {
		return zbus.Output{}, err
	}
	data, err := req.Encode()
	if err != nil {
		return zbus.Output{}, err
	}
	if req, err = zbus.LoadRequest(data); err != nil {
		return zbus.Output{}, err
	}
	return zbus.NewSurrogate(obj).CallRequest(req)
}

func TestNetworker(t *testing.T) {
	office := NetworkID(7, "office")
	n := NewNetworker(loopClient{object: daemon{nets: map[NetID]string{office: "10.77.0.0/16"}}}, 0)
	ipnet, err := n.GetNet(context.Background(), office)
	if err != nil || ipnet.String() != "10.77.0.0/16" {
		t.Fatalf("GetNet = %v, %v", ipnet, err)
	}
	if ns, err := n.Namespace(context.Background(), office); err != nil || ns != "n-"+string(office) {
		t.Fatalf("Namespace = %q, %v", ns, err)
	}
	if _, err := n.GetNet(context.Background(), NetworkID(7, "lab")); err == nil || !strings.Contains(err.Error(), "network not found") {
		t.Fatalf("GetNet of an unknown network: %v, want the daemon's error", err)
	}

	// A node without the daemon: the call ends, and says so.
	silent := NewNetworker(loopClient{}, 50*time.Millisecond)
	if _, err := silent.GetNet(context.Background(), office); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("GetNet without a daemon: %v, want ErrNoAnswer", err)
	}
	// The next call does not wait again for a daemon that just did not
	// answer: a start that attaches many routes fails them fast.
	start := time.Now()
	if _, err := silent.Namespace(context.Background(), office); !errors.Is(err, ErrNoAnswer) || time.Since(start) > 25*time.Millisecond {
		t.Fatalf("Namespace right after: %v after %s", err, time.Since(start))
	}
}

// FuzzTwinOf checks that a twin is read only from a wlID that starts with
// it, and that the network ID of any name is 13 base58 characters.
func FuzzTwinOf(f *testing.F) {
	for _, s := range []string{"7-1-web", "0-0-0", "-1-x", "4294967296-1-x", "+7-1-x", "07-1-x", "7", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, wlID string) {
		twin, err := TwinOf(wlID)
		if err == nil {
			first, _, _ := strings.Cut(wlID, "-")
			if n, perr := strconv.ParseUint(first, 10, 32); perr != nil || uint32(n) != twin {
				t.Fatalf("TwinOf(%q) = %d", wlID, twin)
			}
		}
		if id := NetworkID(twin, wlID); len(id) != netIDLength || strings.Trim(string(id), base58Alphabet) != "" {
			t.Fatalf("NetworkID(%d, %q) = %q", twin, wlID, id)
		}
	})
}
