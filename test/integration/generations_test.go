//go:build integration

package integration

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/threefoldtech/zbus"

	"github.com/threefoldtech/gateway/pkg/gateway"
	stubs2022 "github.com/threefoldtech/gateway/pkg/gateway/contracts/zos2022/stubs"
	"github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase"
	stubsbase "github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase/stubs"
	"github.com/threefoldtech/gateway/pkg/gateway/zos"
	"github.com/threefoldtech/gateway/test/harness"
)

// generation is one generation of zos's callers, calling manager@0.0.1
// through the stub zbusc generates from its own contract.
type generation struct {
	name    string
	setName func(c context.Context, wlID, name string, backends []string, passthrough bool) (string, error)
	setFQDN func(c context.Context, wlID, fqdn string, backends []string, passthrough bool) error
	delete  func(c context.Context, wlID string) error
	// metrics returns the bytes towards the backends and back, read from
	// the generation's own GatewayMetrics.
	metrics func(c context.Context) (in, out map[string]float64, err error)
}

// generations returns a caller of each generation on client. wlIDs are zos's
// (<twin>-<deployment>-<name>): the 2022 caller names the twin of each.
func generations(client zbus.Client) []generation {
	s21, s22, sbase := zos.NewGatewayStub(client), stubs2022.NewGatewayStub(client), stubsbase.NewGatewayStub(client)
	base := func(backends []string, passthrough bool) zosbase.GatewayBase {
		b := zosbase.GatewayBase{TLSPassthrough: passthrough}
		for _, s := range backends {
			b.Backends = append(b.Backends, zosbase.Backend(s))
		}
		return b
	}
	return []generation{
		{
			name:    "2021",
			setName: s21.SetNamedProxy,
			setFQDN: s21.SetFQDNProxy,
			delete:  s21.DeleteNamedProxy,
			metrics: func(c context.Context) (map[string]float64, map[string]float64, error) {
				m, err := s21.Metrics(c)
				return m.Received, m.Sent, err
			},
		},
		{
			name: "2022",
			setName: func(c context.Context, wlID, name string, backends []string, passthrough bool) (string, error) {
				var twin uint32
				fmt.Sscanf(wlID, "%d-", &twin)
				return s22.SetNamedProxy(c, wlID, name, backends, passthrough, twin)
			},
			setFQDN: s22.SetFQDNProxy,
			delete:  s22.DeleteNamedProxy,
			metrics: func(c context.Context) (map[string]float64, map[string]float64, error) {
				m, err := s22.Metrics(c) // zos2022.GatewayMetrics: Sent and Received only
				return m.Received, m.Sent, err
			},
		},
		{
			name: "zosbase",
			setName: func(c context.Context, wlID, name string, backends []string, passthrough bool) (string, error) {
				return sbase.SetNamedProxy(c, wlID, zosbase.GatewayNameProxy{GatewayBase: base(backends, passthrough), Name: name})
			},
			setFQDN: func(c context.Context, wlID, fqdn string, backends []string, passthrough bool) error {
				return sbase.SetFQDNProxy(c, wlID, zosbase.GatewayFQDNProxy{GatewayBase: base(backends, passthrough), FQDN: fqdn})
			},
			delete: sbase.DeleteNamedProxy,
			metrics: func(c context.Context) (map[string]float64, map[string]float64, error) {
				m, err := sbase.Metrics(c)
				return m.Request, m.Response, err
			},
		},
	}
}

// TestEveryGenerationOverZbus calls the gateway as each generation of zos
// does, through its own generated stub on manager@0.0.1: name, FQDN and
// passthrough routes are published, a refused call writes nothing, Metrics
// decodes into the generation's own field names with the real numbers, and
// a delete is idempotent.
func TestEveryGenerationOverZbus(t *testing.T) {
	n := startNode(t, metered())
	for i, g := range generations(n.client) {
		t.Run(g.name, func(t *testing.T) {
			c := ctx(t)
			twin := 10 + i
			nameID, fqdnID, passID := fmt.Sprintf("%d-1-name", twin), fmt.Sprintf("%d-1-fqdn", twin), fmt.Sprintf("%d-1-pass", twin)
			label := "App_" + g.name // zos takes '_' in a name, and so does the gateway
			got, err := g.setName(c, nameID, label, []string{"http://10.0.0.1:8080"}, false)
			if want := strings.ToLower(label) + ".gw.test"; err != nil || got != want {
				t.Fatalf("SetNamedProxy = %q, %v; want %q", got, err, want)
			}
			fqdn := "www-" + g.name + ".user.test"
			n.dns.Set(t, fqdn, "198.51.100.7")
			if err := g.setFQDN(c, fqdnID, fqdn, []string{"http://10.0.0.2"}, false); err != nil {
				t.Fatalf("SetFQDNProxy: %v", err)
			}
			if _, err := g.setName(c, passID, "tls-"+g.name, []string{"10.0.0.3:443"}, true); err != nil {
				t.Fatalf("SetNamedProxy with passthrough: %v", err)
			}
			routes := published(t, n.root)
			if r := routes[nameID]; r == nil || r.HTTP == nil || !strings.Contains(r.HTTP.Routers[nameID].Rule, strings.ToLower(label)+".gw.test") {
				t.Fatalf("name route published as %+v", r)
			}
			if r := routes[fqdnID]; r == nil || r.HTTP == nil || !strings.Contains(r.HTTP.Routers[fqdnID].Rule, fqdn) {
				t.Fatalf("fqdn route published as %+v", r)
			}
			if r := routes[passID]; r == nil || r.TCP == nil || r.TCP.Routers[passID].TLS == nil || !r.TCP.Routers[passID].TLS.Passthrough {
				t.Fatalf("passthrough route published as %+v", r)
			}

			// Refused calls write nothing.
			before := published(t, n.root)
			if _, err := g.setName(c, fmt.Sprintf("%d-2-bad", twin), "bad", []string{"http://169.254.169.254"}, false); err == nil || !strings.Contains(err.Error(), "link-local") {
				t.Fatalf("a metadata backend: err = %v", err)
			}
			if _, err := g.setName(c, fmt.Sprintf("%d-2-bad", twin), "a.b", []string{"http://10.0.0.1"}, false); err == nil || !strings.Contains(err.Error(), "single DNS label") {
				t.Fatalf("a dotted name: err = %v", err)
			}
			if err := g.setFQDN(c, fmt.Sprintf("%d-2-bad", twin), "elsewhere.user.test", []string{"http://10.0.0.1"}, false); err == nil || !strings.Contains(err.Error(), "no A or AAAA record") {
				t.Fatalf("an fqdn that does not point here: err = %v", err)
			}
			if after := published(t, n.root); !reflect.DeepEqual(after, before) {
				t.Fatal("a refused call changed the published routes")
			}

			// Metrics: the bytes of a route, under this generation's names.
			busy := harness.StartHTTPBackend(t, "busy-"+g.name)
			busyID := fmt.Sprintf("%d-1-busy", twin)
			if _, err := g.setName(c, busyID, "busy-"+g.name, []string{busy.URL()}, false); err != nil {
				t.Fatal(err)
			}
			const up, down = 200_000, 500_000
			post(t, busy, up, down)
			in, out, err := g.metrics(c)
			if err != nil {
				t.Fatal(err)
			}
			if in[busyID] < up || in[busyID] > up*1.125+8192 || out[busyID] < down || out[busyID] > down*1.125+8192 {
				t.Fatalf("Metrics: %s carried %v bytes in and %v out, want about %d and %d (all: %v %v)", busyID, in[busyID], out[busyID], up, down, in, out)
			}

			// A delete is idempotent.
			for range 2 {
				for _, id := range []string{nameID, fqdnID, passID, busyID} {
					if err := g.delete(c, id); err != nil {
						t.Fatalf("DeleteNamedProxy(%s): %v", id, err)
					}
				}
			}
			for id := range maps.Keys(published(t, n.root)) {
				if strings.HasPrefix(id, fmt.Sprintf("%d-", twin)) {
					t.Fatalf("route %s still published after its delete", id)
				}
			}
		})
	}
}

// TestGenerationsShareDomains guards the one index behind every contract: a
// domain set by one generation is refused to another's workload, by name
// and by FQDN, and is free again once deleted.
func TestGenerationsShareDomains(t *testing.T) {
	n := startNode(t, defaults())
	c := ctx(t)
	gens := generations(n.client)
	n.dns.Set(t, "shop.user.test", "198.51.100.7")
	for i, holder := range gens {
		for j, claimer := range gens {
			if i == j {
				continue
			}
			t.Run(holder.name+" holds, "+claimer.name+" claims", func(t *testing.T) {
				holderID, claimerID := fmt.Sprintf("%d-1-a", 20+i), fmt.Sprintf("%d-1-b", 30+j)
				if _, err := holder.setName(c, holderID, "shared", []string{"http://10.0.0.1"}, false); err != nil {
					t.Fatal(err)
				}
				if _, err := claimer.setName(c, claimerID, "Shared", []string{"10.0.0.2:443"}, true); err == nil || !strings.Contains(err.Error(), "already registered") {
					t.Fatalf("a name held through %s claimed through %s: err = %v", holder.name, claimer.name, err)
				}
				if err := holder.setFQDN(c, holderID+"f", "shop.user.test", []string{"http://10.0.0.1"}, false); err != nil {
					t.Fatal(err)
				}
				if err := claimer.setFQDN(c, claimerID+"f", "shop.user.test", []string{"http://10.0.0.2"}, false); err == nil || !strings.Contains(err.Error(), "already registered") {
					t.Fatalf("an fqdn held through %s claimed through %s: err = %v", holder.name, claimer.name, err)
				}
				if _, ok := published(t, n.root)[claimerID]; ok {
					t.Fatal("the refused claim was published")
				}
				for _, id := range []string{holderID, holderID + "f"} {
					if err := claimer.delete(c, id); err != nil {
						t.Fatal(err)
					}
				}
				if _, err := claimer.setName(c, claimerID, "shared", []string{"http://10.0.0.2"}, false); err != nil {
					t.Fatalf("the freed name: %v", err)
				}
				if err := claimer.delete(c, claimerID); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestMalformedCallsAreAnswered guards against the silence of zbus: a call
// of no generation's shape reaches the object, which answers it with an
// error naming the argument, instead of no response (on which a generated
// stub panics).
func TestMalformedCallsAreAnswered(t *testing.T) {
	n := startNode(t, defaults())
	id := zbus.ObjectID{Name: gateway.ZosObjectName, Version: gateway.ObjectVersion}
	for _, tc := range []struct {
		method string
		args   []any
		want   string
	}{
		{"SetNamedProxy", []any{"1-1-a", []string{"http://10.0.0.1"}}, "SetNamedProxy argument 2: expected a string prefix or a GatewayNameProxy config, got an array"},
		{"SetNamedProxy", []any{"1-1-a", "app", []string{"http://10.0.0.1"}}, "takes 4 arguments"},
		{"SetFQDNProxy", []any{"1-1-a"}, "SetFQDNProxy takes 2 arguments"},
		{"DeleteNamedProxy", []any{}, "DeleteNamedProxy takes 1 argument"},
	} {
		resp, err := n.client.RequestContext(ctx(t), gateway.ModuleName, id, tc.method, tc.args...)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Error != nil {
			t.Fatalf("%s%v: zbus refused the call: %s", tc.method, tc.args, *resp.Error)
		}
		if err := resp.CallError(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s%v: err = %v, want %q", tc.method, tc.args, err, tc.want)
		}
	}
	if got := published(t, n.root); len(got) != 0 {
		t.Fatalf("malformed calls published %v", got)
	}
}
