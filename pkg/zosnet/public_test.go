package zosnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/threefoldtech/zbus"
)

// gridtypesIPNet is zos's gridtypes.IPNet, methods included: its text
// encoding must play no part on the wire (msgpack v4 ignores it).
type gridtypesIPNet struct{ net.IPNet }

func (i gridtypesIPNet) MarshalText() ([]byte, error) {
	if len(i.IP) == 0 {
		return []byte{}, nil
	}
	return []byte(i.String()), nil
}

func (i *gridtypesIPNet) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		return nil
	}
	ip, n, err := net.ParseCIDR(string(text))
	if err != nil {
		return err
	}
	n.IP = ip
	i.IPNet = *n
	return nil
}

// zosPublicConfig is zos's pkg.PublicConfig, with its json tags.
type zosPublicConfig struct {
	Type   string         `json:"type"`
	IPv4   gridtypesIPNet `json:"ipv4"`
	IPv6   gridtypesIPNet `json:"ipv6"`
	GW4    net.IP         `json:"gw4"`
	GW6    net.IP         `json:"gw6"`
	Domain string         `json:"domain"`
}

// ipnet parses a CIDR as zos's gridtypes.ParseIPNet does: the address
// itself, not the network's, as ParseCIDR returns it (16 bytes for IPv4).
func ipnet(t testing.TB, cidr string) gridtypesIPNet {
	t.Helper()
	var n gridtypesIPNet
	if err := n.UnmarshalText([]byte(cidr)); err != nil {
		t.Fatal(err)
	}
	return n
}

// netlinkIPNet is an address as zos reads it from netlink, which gives IPv4
// in 4 bytes.
func netlinkIPNet(t testing.TB, cidr string) gridtypesIPNet {
	t.Helper()
	n := ipnet(t, cidr)
	if v4 := n.IP.To4(); v4 != nil {
		n.IP = v4
	}
	return n
}

// encode returns v as zbus puts it on the wire (msgpack, as the daemon's
// server encodes a result).
func encode(t testing.TB, v any) []byte {
	t.Helper()
	req, err := zbus.NewRequest("id", "id", DaemonObject, "GetPublicConfig", v)
	if err != nil {
		t.Fatal(err)
	}
	return req.Inputs[0]
}

// The wire format itself: a map keyed by zos's Go field names, json tags
// ignored, gridtypes.IPNet a map {IP, Mask} (its MarshalText ignored).
func TestWireFormatIsZosFieldNames(t *testing.T) {
	data := encode(t, zosPublicConfig{Type: "macvlan", IPv4: netlinkIPNet(t, "185.69.166.7/24"), Domain: "gw.example"})
	var m map[string]any
	if err := zbus.Tuple([][]byte{data}).Unmarshal(0, &m); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"Domain", "GW4", "GW6", "IPv4", "IPv6", "Type"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v", keys, want)
	}
	v4, ok := m["IPv4"].(map[string]any)
	if !ok {
		t.Fatalf("IPv4 is %T, want a map", m["IPv4"])
	}
	if ip, _ := v4["IP"].([]byte); !slices.Equal(ip, []byte{185, 69, 166, 7}) {
		t.Fatalf("IPv4.IP = %#v", v4["IP"])
	}
}

func TestPublicFromZosAnswer(t *testing.T) {
	tests := []struct {
		name    string
		cfg     zosPublicConfig
		want    Public
		wantErr string
	}{
		{
			name: "domain and both families",
			cfg: zosPublicConfig{Type: "macvlan", IPv4: netlinkIPNet(t, "185.69.166.7/24"), IPv6: ipnet(t, "2a02:1802:5e::7/64"),
				GW4: net.ParseIP("185.69.166.1"), GW6: net.ParseIP("2a02:1802:5e::1"), Domain: "gent01.devnet.grid.tf"},
			want: Public{Domain: "gent01.devnet.grid.tf", IPv4: netip.MustParseAddr("185.69.166.7"), IPv6: netip.MustParseAddr("2a02:1802:5e::7")},
		},
		{
			// A public IP and no domain: FQDN proxies only.
			name: "no domain",
			cfg:  zosPublicConfig{IPv4: netlinkIPNet(t, "185.69.166.7/24")},
			want: Public{IPv4: netip.MustParseAddr("185.69.166.7")},
		},
		{
			// gridtypes.ParseIPNet keeps IPv4 in 16 bytes.
			name: "IPv4 in 16 bytes",
			cfg:  zosPublicConfig{IPv4: ipnet(t, "185.69.166.7/24")},
			want: Public{IPv4: netip.MustParseAddr("185.69.166.7")},
		},
		{
			name: "domain normalized",
			cfg:  zosPublicConfig{Domain: "GW.Example.COM."},
			want: Public{Domain: "gw.example.com"},
		},
		{
			name: "nothing set",
			cfg:  zosPublicConfig{},
			want: Public{},
		},
		{
			// A farmer's typo must not stop the gateway: the rest is used.
			name:    "bad domain left out",
			cfg:     zosPublicConfig{Domain: "gw_example com", IPv4: netlinkIPNet(t, "185.69.166.7/24")},
			want:    Public{IPv4: netip.MustParseAddr("185.69.166.7")},
			wantErr: "domain",
		},
		{
			// zos takes the first IPv6 of its public interface, which can
			// be its link-local one.
			name:    "link-local IPv6 left out",
			cfg:     zosPublicConfig{IPv6: ipnet(t, "fe80::1/64"), Domain: "gw.example"},
			want:    Public{Domain: "gw.example"},
			wantErr: "IPv6 fe80::1",
		},
		{
			name:    "IPv6 in the IPv4 field left out",
			cfg:     zosPublicConfig{IPv4: ipnet(t, "2a02:1802:5e::7/64")},
			want:    Public{},
			wantErr: "wrong address family",
		},
		{
			name:    "IPv4 in the IPv6 field left out",
			cfg:     zosPublicConfig{IPv6: netlinkIPNet(t, "185.69.166.7/24")},
			want:    Public{},
			wantErr: "wrong address family",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &zbus.Response{Output: zbus.Output{Data: encode(t, tt.cfg)}}
			cfg, err := decodePublicConfig(resp)
			if err != nil {
				t.Fatal(err)
			}
			got, err := PublicOf(cfg)
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("error %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}

// networker is zos's network daemon as far as GetPublicConfig goes.
type networker struct {
	mu    sync.Mutex
	cfg   zosPublicConfig
	err   error
	calls int
}

func (n *networker) GetPublicConfig() (zosPublicConfig, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls++
	return n.cfg, n.err
}

func (n *networker) set(cfg zosPublicConfig, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg, n.err = cfg, err
}

// bus is a zbus.Client whose calls are served by zbus's own surrogate of
// obj, as the daemon's server serves them, each request and response going
// through its wire encoding. While down, a call waits for its context, as
// one does when nobody serves the queue.
type bus struct {
	obj any
	mu  sync.Mutex
	// down counts the calls still to go unanswered.
	down int
}

func (b *bus) RequestContext(ctx context.Context, module string, object zbus.ObjectID, method string, args ...any) (*zbus.Response, error) {
	b.mu.Lock()
	down := b.down > 0
	if down {
		b.down--
	}
	b.mu.Unlock()
	if down || module != DaemonModule || object != DaemonObject {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	out, err := wireCall(b.obj, object, method, args...)
	if err != nil {
		// zbus v1.0.1's Redis client returns neither response nor error
		// for such a call.
		return nil, nil
	}
	data, err := zbus.NewResponse("id", out, "").Encode()
	if err != nil {
		return nil, err
	}
	return zbus.LoadResponse(data)
}

func (b *bus) Request(module string, object zbus.ObjectID, method string, args ...any) (*zbus.Response, error) {
	return b.RequestContext(context.Background(), module, object, method, args...)
}

func (b *bus) Stream(context.Context, string, zbus.ObjectID, string) (<-chan zbus.Event, error) {
	return nil, errors.New("no streams")
}

func (b *bus) Status(context.Context, string) (zbus.Status, error) {
	return zbus.Status{}, errors.New("no status")
}

func newSource(t testing.TB, b zbus.Client) *PublicSource {
	t.Helper()
	s, err := NewPublicSource(PublicSourceConfig{Bus: b, Interval: 10 * time.Millisecond, StartWait: 300 * time.Millisecond,
		CallTimeout: 50 * time.Millisecond, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestGetThroughZbus(t *testing.T) {
	n := &networker{cfg: zosPublicConfig{IPv4: netlinkIPNet(t, "185.69.166.7/24"), Domain: "gw.example"}}
	s := newSource(t, &bus{obj: n})
	got, err := s.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (Public{Domain: "gw.example", IPv4: netip.MustParseAddr("185.69.166.7")}); got != want {
		t.Fatalf("got %v, want %v", got, want)
	}

	// The daemon's error is an answer: the node has no public config.
	n.set(zosPublicConfig{}, errors.New("no public configuration"))
	if _, err := s.Get(context.Background()); !errors.Is(err, ErrNoPublicConfig) || !strings.Contains(err.Error(), "no public configuration") {
		t.Fatalf("err = %v, want ErrNoPublicConfig with the daemon's text", err)
	}

	// A call zbus could not make (here: the daemon has no such method) is
	// no answer, never a zero configuration.
	s = newSource(t, &bus{obj: struct{}{}})
	if _, err := s.Get(context.Background()); err == nil || errors.Is(err, ErrNoPublicConfig) {
		t.Fatalf("err = %v, want no answer", err)
	}
}

func TestFirst(t *testing.T) {
	cfg := zosPublicConfig{IPv4: netlinkIPNet(t, "185.69.166.7/24"), Domain: "gw.example"}
	want := Public{Domain: "gw.example", IPv4: netip.MustParseAddr("185.69.166.7")}
	tests := []struct {
		name     string
		down     int
		err      error
		want     Public
		maxCalls int
	}{
		// The node boots: the daemon answers the second call.
		{name: "daemon up late", down: 1, want: want, maxCalls: 1},
		// Never up: the gateway starts without after StartWait.
		{name: "daemon never up", down: 1 << 30, want: Public{}, maxCalls: 0},
		// No public config is an answer: no waiting.
		{name: "no public config", err: errors.New("no public configuration"), want: Public{}, maxCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &networker{cfg: cfg, err: tt.err}
			s := newSource(t, &bus{obj: n, down: tt.down})
			start := time.Now()
			got, err := s.First(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if n.calls > tt.maxCalls {
				t.Errorf("the daemon was called %d times, want at most %d", n.calls, tt.maxCalls)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("First took %s with StartWait 300ms", took)
			}
		})
	}

	// The gateway stopped while it waited.
	ctx, cancel := context.WithCancel(context.Background())
	s := newSource(t, &bus{obj: &networker{}, down: 1 << 30})
	time.AfterFunc(20*time.Millisecond, cancel)
	if _, err := s.First(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestWatch(t *testing.T) {
	start := zosPublicConfig{IPv4: netlinkIPNet(t, "185.69.166.7/24"), Domain: "gw.example"}
	current := Public{Domain: "gw.example", IPv4: netip.MustParseAddr("185.69.166.7")}
	tests := []struct {
		name string
		// then is what the daemon answers after a few unchanged answers.
		then    zosPublicConfig
		thenErr error
		want    *Public // nil: no change seen
	}{
		{name: "domain changed", then: zosPublicConfig{IPv4: start.IPv4, Domain: "gw2.example"},
			want: &Public{Domain: "gw2.example", IPv4: current.IPv4}},
		// The farmer sets a domain on a node that had none... or removes it.
		{name: "domain removed", then: zosPublicConfig{IPv4: start.IPv4},
			want: &Public{IPv4: current.IPv4}},
		{name: "IPv6 added", then: zosPublicConfig{IPv4: start.IPv4, IPv6: ipnet(t, "2a02:1802:5e::7/64"), Domain: "gw.example"},
			want: &Public{Domain: "gw.example", IPv4: current.IPv4, IPv6: netip.MustParseAddr("2a02:1802:5e::7")}},
		// Same values written differently are no change.
		{name: "same values", then: zosPublicConfig{IPv4: ipnet(t, "185.69.166.7/24"), Domain: "GW.example."}},
		// An error keeps what the gateway has.
		{name: "daemon error", thenErr: errors.New("failed to load configuration: boom")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &networker{cfg: start}
			b := &bus{obj: n, down: 2}
			s := newSource(t, b)
			time.AfterFunc(50*time.Millisecond, func() { n.set(tt.then, tt.thenErr) })
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			got, err := s.Watch(ctx, current)
			if tt.want == nil {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Watch returned %v, %v; want no change until its context ended", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != *tt.want {
				t.Fatalf("got %v, want %v", got, *tt.want)
			}
		})
	}
}

func TestNewPublicSourceChecks(t *testing.T) {
	if _, err := NewPublicSource(PublicSourceConfig{}); err == nil {
		t.Error("no bus: no error")
	}
	if _, err := NewPublicSource(PublicSourceConfig{Bus: &bus{}, Interval: -time.Second}); err == nil {
		t.Error("negative interval: no error")
	}
	s, err := NewPublicSource(PublicSourceConfig{Bus: &bus{}})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Interval != DefaultInterval || s.cfg.StartWait != DefaultStartWait || s.cfg.CallTimeout != DefaultCallTimeout {
		t.Fatalf("defaults not filled: %+v", s.cfg)
	}
}

func TestPublicString(t *testing.T) {
	p := Public{Domain: "gw.example", IPv6: netip.MustParseAddr("2001:db8::1")}
	if got, want := p.String(), `--public.domain="gw.example" --public.ipv4="" --public.ipv6="2001:db8::1"`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	if got := fmt.Sprint(p.Addrs()); got != "[2001:db8::1]" {
		t.Fatalf("Addrs() = %s", got)
	}
}

// Whatever bytes arrive, decoding neither panics nor yields a Public the
// gateway could not use.
func FuzzDecodePublicConfig(f *testing.F) {
	f.Add(encode(f, zosPublicConfig{Type: "macvlan", IPv4: netlinkIPNet(f, "185.69.166.7/24"), IPv6: ipnet(f, "2a02:1802:5e::7/64"), Domain: "gw.example"}))
	f.Add(encode(f, zosPublicConfig{}))
	f.Add(encode(f, map[string]any{"IPv4": map[string]any{"IP": []byte{1, 2, 3}}, "Domain": "x"}))
	f.Add(encode(f, map[string]any{"IPv6": map[string]any{"IP": make([]byte, 16)}, "Domain": strings.Repeat("a.", 200)}))
	f.Add([]byte{0xc1})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := decodePublicConfig(&zbus.Response{Output: zbus.Output{Data: data}})
		if err != nil {
			return
		}
		p, _ := PublicOf(cfg)
		if p.IPv4.IsValid() && !p.IPv4.Is4() || p.IPv6.IsValid() && (p.IPv6.Is4() || p.IPv6.Is4In6()) {
			t.Fatalf("wrong family in %v", p)
		}
		if p.Domain != "" && strings.ToLower(p.Domain) != p.Domain {
			t.Fatalf("domain not normalized: %q", p.Domain)
		}
	})
}
