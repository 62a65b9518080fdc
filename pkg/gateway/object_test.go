package gateway

import (
	"reflect"
	"strings"
	"testing"

	"github.com/threefoldtech/zbus"
	"github.com/vmihailenco/msgpack"

	"github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase"
)

// busCall calls method of m's Object as zbus's server does: each argument
// encoded as a stub encodes it, decoded by zbus into the method's
// parameters. It returns the call's error text ("" for none) and its
// encoded result.
func busCall(t testing.TB, m *Module, method string, args ...any) (string, []byte) {
	t.Helper()
	req, err := zbus.NewRequest("id", "reply", zbus.ObjectID{Name: ZosObjectName, Version: ObjectVersion}, method, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := zbus.NewSurrogate(Object{M: m}).CallRequest(req)
	if err != nil {
		// zbus refused the call itself: its client would get no answer.
		t.Fatalf("zbus refused %s%v: %v", method, args, err)
	}
	if out.Error != nil {
		return out.Error.Message, out.Data
	}
	return "", out.Data
}

func network(n string) *zosbase.Name {
	name := zosbase.Name(n)
	return &name
}

// TestObjectServesEveryGeneration guards the dispatch: each form of each
// generation of zos reaches the module with its arguments and is recorded
// with its contract.
func TestObjectServesEveryGeneration(t *testing.T) {
	root := t.TempDir()
	m, recs := newModuleWith(t, root, func(c *Config) { c.Networks = newMapNetworks("office") })
	recs.set("www.user.example", nodeIP.String())
	recs.set("tls.user.example", nodeIP.String())
	backend := []string{"http://10.0.0.1:8080"}
	for _, tc := range []struct {
		name     string
		method   string
		args     []any
		fqdn     string // the route's domain, and what SetNamedProxy returns
		contract string
		want     RouteRequest
	}{
		{"2021 name", "SetNamedProxy", []any{"wl-21", "App", backend, false}, "app.gw.example", contract2021,
			RouteRequest{Backends: backend}},
		{"2021 fqdn", "SetFQDNProxy", []any{"wl-21f", "www.user.example", backend, false}, "www.user.example", contract2021,
			RouteRequest{Backends: backend}},
		{"2022 name with the twin of its wlID", "SetNamedProxy", []any{"7-1-web", "web22", []string{"10.0.0.2:443"}, true, uint32(7)}, "web22.gw.example", contract2022,
			RouteRequest{Backends: []string{"10.0.0.2:443"}, TLSPassthrough: true}},
		{"zosbase name, zos's characters", "SetNamedProxy", []any{"7-2-web", zosbase.GatewayNameProxy{Name: "My_App-", GatewayBase: zosbase.GatewayBase{Backends: []zosbase.Backend{"http://10.0.0.3"}}}},
			"my_app-.gw.example", contractZosbase, RouteRequest{Backends: []string{"http://10.0.0.3"}}},
		{"zosbase name, passthrough in a network", "SetNamedProxy", []any{"7-3-web", zosbase.GatewayNameProxy{Name: "priv", GatewayBase: zosbase.GatewayBase{TLSPassthrough: true, Backends: []zosbase.Backend{"10.1.0.5:443"}, Network: network("office")}}},
			"priv.gw.example", contractZosbase, RouteRequest{Backends: []string{"10.1.0.5:443"}, TLSPassthrough: true, Network: "office"}},
		{"zosbase fqdn", "SetFQDNProxy", []any{"7-4-web", zosbase.GatewayFQDNProxy{FQDN: "tls.user.example", GatewayBase: zosbase.GatewayBase{TLSPassthrough: true, Backends: []zosbase.Backend{"10.0.0.4:443"}}}},
			"tls.user.example", contractZosbase, RouteRequest{Backends: []string{"10.0.0.4:443"}, TLSPassthrough: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errText, data := busCall(t, m, tc.method, tc.args...)
			if errText != "" {
				t.Fatal(errText)
			}
			if tc.method == "SetNamedProxy" {
				var got string
				if err := msgpack.Unmarshal(data, &got); err != nil || got != tc.fqdn {
					t.Fatalf("returned %q (%v), want %q", got, err, tc.fqdn)
				}
			}
			id := tc.args[0].(string)
			r, ok := m.idx.byID[id]
			if !ok {
				t.Fatalf("no route %q", id)
			}
			var backends []string
			for _, b := range r.backends {
				backends = append(backends, b.String(r.passthrough))
			}
			got := RouteRequest{Backends: backends, TLSPassthrough: r.passthrough, Network: r.network}
			if r.fqdn != tc.fqdn || r.contract != tc.contract || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("route %s %s %+v, want %s %s %+v", r.fqdn, r.contract, got, tc.fqdn, tc.contract, tc.want)
			}
		})
	}

	// Metrics, List and DeleteNamedProxy are one call in every generation.
	if errText, _ := busCall(t, m, "Metrics"); !strings.Contains(errText, "no meter") {
		t.Fatalf("Metrics without a meter: %q", errText)
	}
	errText, data := busCall(t, m, "List")
	var list []Proxy
	if err := msgpack.Unmarshal(data, &list); errText != "" || err != nil || len(list) != 6 {
		t.Fatalf("List = %d routes, %q, %v", len(list), errText, err)
	}
	for range 2 {
		if errText, _ := busCall(t, m, "DeleteNamedProxy", "7-2-web"); errText != "" {
			t.Fatal(errText)
		}
	}
	if _, ok := m.idx.byID["7-2-web"]; ok {
		t.Fatal("DeleteNamedProxy left the route")
	}
}

// TestObjectRefusesMalformedCalls guards the errors of calls that fit no
// form: zbus hands any call to the object, which must answer each with an
// error naming the argument and what it expected, and change nothing.
func TestObjectRefusesMalformedCalls(t *testing.T) {
	root := t.TempDir()
	m, _ := newModule(t, root)
	backend := []string{"http://10.0.0.1:8080"}
	name := func(edit func(*zosbase.GatewayNameProxy)) zosbase.GatewayNameProxy {
		c := zosbase.GatewayNameProxy{Name: "app", GatewayBase: zosbase.GatewayBase{Backends: []zosbase.Backend{"http://10.0.0.1"}}}
		edit(&c)
		return c
	}
	for _, tc := range []struct {
		name   string
		method string
		args   []any
		want   string
	}{
		{"no arguments", "SetNamedProxy", nil, "SetNamedProxy takes 2 arguments (wlID, config), 4 (wlID, prefix, backends, TLSPassthrough) or 5 (wlID, prefix, backends, TLSPassthrough, twinID), got 0"},
		{"wlID not a string", "SetNamedProxy", []any{42, "app", backend, false}, "SetNamedProxy argument 1 (wlID): expected a string, got an integer"},
		{"second argument an array", "SetNamedProxy", []any{"wl-1", backend, false}, "SetNamedProxy argument 2: expected a string prefix or a GatewayNameProxy config, got an array"},
		{"prefix with three arguments", "SetNamedProxy", []any{"wl-1", "app", backend}, "SetNamedProxy with a prefix as argument 2 takes 4 arguments (wlID, prefix, backends, TLSPassthrough) or 5 (wlID, prefix, backends, TLSPassthrough, twinID), got 3"},
		{"prefix with six arguments", "SetNamedProxy", []any{"7-1-a", "app", backend, false, uint32(7), "x"}, "got 6"},
		{"config with more", "SetNamedProxy", []any{"wl-1", name(func(*zosbase.GatewayNameProxy) {}), false}, "SetNamedProxy with a GatewayNameProxy config as argument 2 takes 2 arguments (wlID, config), got 3"},
		{"backends a map", "SetNamedProxy", []any{"wl-1", "app", map[string]string{"a": "b"}, false}, "SetNamedProxy argument 3 (backends): expected an array of strings, got a map"},
		{"a backend not a string", "SetNamedProxy", []any{"wl-1", "app", []any{"http://10.0.0.1", 7}, false}, "SetNamedProxy argument 3 (backends): element 1: expected a string, got an integer"},
		{"passthrough a string", "SetNamedProxy", []any{"wl-1", "app", backend, "yes"}, "SetNamedProxy argument 4 (TLSPassthrough): expected a boolean, got a string"},
		{"twinID a string", "SetNamedProxy", []any{"7-1-a", "app", backend, false, "7"}, "SetNamedProxy argument 5 (twinID): expected an unsigned integer, got a string"},
		{"twinID negative", "SetNamedProxy", []any{"7-1-a", "app", backend, false, -7}, "SetNamedProxy argument 5 (twinID): expected an unsigned integer, got -7"},
		{"twinID too big", "SetNamedProxy", []any{"7-1-a", "app", backend, false, uint64(1) << 32}, "expected an unsigned 32-bit integer, got 4294967296"},
		// zos checked that the twin owned the name; the gateway checks
		// that the call's twin is the workload's.
		{"twinID of another twin", "SetNamedProxy", []any{"7-1-a", "app", backend, false, uint32(8)}, `invalid twinID "8": is not the twin 7 of wlID "7-1-a"`},
		{"twinID and a wlID without a twin", "SetNamedProxy", []any{"wl-1", "app", backend, false, uint32(7)}, `invalid wlID "wl-1": a zos workload ID is <twin>-<deployment>-<name>`},
		{"config of the other kind", "SetNamedProxy", []any{"wl-1", zosbase.GatewayFQDNProxy{FQDN: "a.b.example"}}, `SetNamedProxy argument 2 (config): GatewayNameProxy has no field "FQDN" (it has TLSPassthrough, Backends, Network, Name)`},
		{"config Backends a string", "SetNamedProxy", []any{"wl-1", map[string]any{"Name": "app", "Backends": "http://10.0.0.1"}}, "SetNamedProxy argument 2 (config): GatewayNameProxy.Backends: expected an array of strings, got a string"},
		{"config Network an integer", "SetNamedProxy", []any{"wl-1", map[string]any{"Name": "app", "Network": 3}}, "SetNamedProxy argument 2 (config): GatewayNameProxy.Network: expected a string, got an integer (or nil)"},
		{"config Name refused by the core", "SetNamedProxy", []any{"wl-1", name(func(c *zosbase.GatewayNameProxy) { c.Name = "a.b" })}, `invalid prefix "a.b": must be a single DNS label`},
		{"config without a network daemon", "SetNamedProxy", []any{"wl-1", name(func(c *zosbase.GatewayNameProxy) { c.Network = network("office") })}, `invalid network "office": this gateway cannot reach private networks`},
		{"fqdn one argument", "SetFQDNProxy", []any{"wl-1"}, "SetFQDNProxy takes 2 arguments (wlID, config) or 4 (wlID, fqdn, backends, TLSPassthrough), got 1"},
		{"fqdn five arguments", "SetFQDNProxy", []any{"wl-1", "a.example", backend, false, uint32(1)}, "SetFQDNProxy with a fqdn as argument 2 takes 4 arguments (wlID, fqdn, backends, TLSPassthrough), got 5"},
		{"fqdn second argument a boolean", "SetFQDNProxy", []any{"wl-1", true}, "SetFQDNProxy argument 2: expected a string fqdn or a GatewayFQDNProxy config, got a boolean"},
		{"fqdn config of the other kind", "SetFQDNProxy", []any{"wl-1", name(func(*zosbase.GatewayNameProxy) {})}, `SetFQDNProxy argument 2 (config): GatewayFQDNProxy has no field "Name"`},
		{"delete without wlID", "DeleteNamedProxy", nil, "DeleteNamedProxy takes 1 argument (wlID), got 0"},
		{"delete with nil", "DeleteNamedProxy", []any{nil}, "DeleteNamedProxy argument 1 (wlID): expected a string, got nil"},
		{"metrics with an argument", "Metrics", []any{"x"}, "Metrics takes no arguments, got 1"},
		{"list with an argument", "List", []any{"x"}, "List takes no arguments, got 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot(t, root)
			errText, _ := busCall(t, m, tc.method, tc.args...)
			if !strings.Contains(errText, tc.want) {
				t.Fatalf("error %q, want %q", errText, tc.want)
			}
			if len(m.idx.byID) != 0 || !reflect.DeepEqual(snapshot(t, root), before) {
				t.Fatal("a refused call changed the routes")
			}
		})
	}
}

// The wire form the dispatch reads: zbus encodes a zosbase config as a map
// keyed by Go field name, GatewayBase's fields inlined, an unset Network
// nil and a set one a plain string.
func TestZosbaseConfigOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		config any
		want   map[string]any
	}{
		{zosbase.GatewayNameProxy{Name: "a", GatewayBase: zosbase.GatewayBase{Backends: []zosbase.Backend{"http://10.0.0.1"}}},
			map[string]any{"Name": "a", "TLSPassthrough": false, "Backends": []any{"http://10.0.0.1"}, "Network": nil}},
		{zosbase.GatewayFQDNProxy{FQDN: "a.example", GatewayBase: zosbase.GatewayBase{TLSPassthrough: true, Network: network("n")}},
			map[string]any{"FQDN": "a.example", "TLSPassthrough": true, "Backends": nil, "Network": "n"}},
	} {
		b, err := msgpack.Marshal(tc.config)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := msgpack.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("%T on the wire: %#v, want %#v", tc.config, got, tc.want)
		}
	}
}
