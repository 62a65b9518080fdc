//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase"
	"github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase/stubs"
	"github.com/threefoldtech/gateway/test/harness"
)

// TestZosbaseStub sets routes as zos does today, through the stub zbusc
// generates from zosbase's contract (SetNamedProxy and SetFQDNProxy with a
// config struct, on manager@0.0.1), and reaches each backend through the
// real Traefik: a name with an underscore, as zos accepts it, an FQDN, and a
// name with passthrough. Before the object took zosbase's form, every such
// call came back as no response and the stub panicked.
func TestZosbaseStub(t *testing.T) {
	e := newEnv(t)
	stub := stubs.NewGatewayStub(e.gw.Client)
	for _, tc := range []struct {
		name, wlID  string
		label, fqdn string // a name proxy when label is set
		passthrough bool
	}{
		{name: "name with an underscore", wlID: "41-1-web", label: "Zos_Web"},
		{name: "fqdn", wlID: "41-2-shop", fqdn: "shop.zosbase.test"},
		{name: "name with passthrough", wlID: "41-3-tls", label: "zos-tls", passthrough: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), routeTimeout)
			defer cancel()
			backendName := "backend-" + tc.wlID
			host := strings.ToLower(tc.label) + "." + e.gw.Domain
			if tc.label == "" {
				host = tc.fqdn
				e.dns.Set(t, tc.fqdn, "127.0.0.1")
			}
			base := zosbase.GatewayBase{TLSPassthrough: tc.passthrough}
			var tlsBackend *harness.TLSBackend
			if tc.passthrough {
				tlsBackend = harness.StartTLSBackend(t, backendName, host)
				base.Backends = []zosbase.Backend{zosbase.Backend(tlsBackend.Addr)}
			} else {
				base.Backends = []zosbase.Backend{zosbase.Backend(harness.StartHTTPBackend(t, backendName).URL())}
			}

			err := harness.Call(func() error {
				if tc.label == "" {
					return stub.SetFQDNProxy(ctx, tc.wlID, zosbase.GatewayFQDNProxy{GatewayBase: base, FQDN: tc.fqdn})
				}
				got, err := stub.SetNamedProxy(ctx, tc.wlID, zosbase.GatewayNameProxy{GatewayBase: base, Name: tc.label})
				if err == nil && got != host {
					t.Errorf("SetNamedProxy returned %q, want %q", got, host)
				}
				return err
			})
			if err != nil {
				t.Fatalf("Set through zosbase's stub: %v", err)
			}

			if tc.passthrough {
				e.waitPassthrough(t, host, backendName)
				a, err := e.tlsGet(host)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a.Leaf, tlsBackend.Cert.Raw) {
					t.Errorf("the handshake presented another certificate than the backend's own")
				}
			} else {
				e.waitHTTP(t, host, backendName)
			}

			if err := harness.Call(func() error { return stub.DeleteNamedProxy(ctx, tc.wlID) }); err != nil {
				t.Fatalf("DeleteNamedProxy: %v", err)
			}
			if tc.passthrough {
				return
			}
			harness.WaitFor(t, routeTimeout, host+" to reach no backend", func() error {
				a, err := e.get(host, "/")
				if err != nil {
					return err
				}
				if a.status != http.StatusNotFound {
					return errStatus(a.status)
				}
				return nil
			})
		})
	}

	// Metrics answers in zosbase's GatewayMetrics.
	if err := harness.Call(func() error { _, err := stub.Metrics(context.Background()); return err }); err != nil && !strings.Contains(err.Error(), "metering") {
		t.Fatalf("Metrics through zosbase's stub: %v", err)
	}
}

// errStatus is an unexpected HTTP status.
type errStatus int

func (s errStatus) Error() string { return http.StatusText(int(s)) }
