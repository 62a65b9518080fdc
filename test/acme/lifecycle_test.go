//go:build e2e

package acme

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/pkg/certs"
	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/traefik"
	"github.com/threefoldtech/gateway/test/harness"
)

// The backoff of these tests: 2s after the first failure, doubling up to
// 8s. On a node: 5m up to 24h.
const (
	testBackoffMin = 2 * time.Second
	testBackoffMax = 8 * time.Second
)

// validations returns the HTTP-01 challenges of name Pebble tried to
// validate, one per order (Pebble validates each challenge up to three
// times, and never reuses an authorization that failed).
func validations(p *harness.Pebble, name string, port int) []string {
	re := regexp.MustCompile(`Attempting to validate w/ HTTP: http://` + regexp.QuoteMeta(name) + `:` + strconv.Itoa(port) + `/\.well-known/acme-challenge/([A-Za-z0-9_-]+)`)
	var tokens []string
	for _, m := range re.FindAllStringSubmatch(p.Proc.Output(), -1) {
		if !slices.Contains(tokens, m[1]) {
			tokens = append(tokens, m[1])
		}
	}
	return tokens
}

// allowedAttempts is how many orders the backoff allows within d of the
// first: the first, then one after each wait of testBackoffMin doubling up
// to testBackoffMax, if the orders themselves took no time.
func allowedAttempts(d time.Duration) int {
	n, wait := 1, testBackoffMin
	for elapsed := wait; elapsed <= d; elapsed += wait {
		n++
		wait = min(2*wait, testBackoffMax)
	}
	return n
}

// routeStatus returns the status List gives wlID.
func routeStatus(t testing.TB, gw *harness.Gateway, wlID string) *gateway.RouteStatus {
	t.Helper()
	list, err := gw.List()
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	for _, p := range list {
		if p.WorkloadID == wlID {
			return p.Status
		}
	}
	t.Fatalf("List has no route %s", wlID)
	return nil
}

// TestFQDNCertificateBackoff: a user domain whose HTTP-01 validation keeps
// failing (its owner pointed it elsewhere: Pebble resolves it to an address
// where nothing listens) costs, during 30 other route changes, only the
// orders the backoff allows, counted on Pebble's side; the route serves
// meanwhile with the default certificate and List says why and when the
// next attempt is. Once the domain points at the node again, its
// certificate comes without a restart.
func TestFQDNCertificateBackoff(t *testing.T) {
	t.Parallel()
	const name = "moved.user.test"
	redis := harness.StartRedis(t)
	// The gateway checks the name points at the node; Pebble sees it
	// elsewhere.
	gwDNS := harness.StartChallTestSrv(t)
	gwDNS.AddA(t, name, "127.0.0.1")
	pebbleDNS := harness.StartChallTestSrv(t)
	pebbleDNS.AddA(t, name, "127.0.0.2")
	pebble := harness.NewPebble(t)
	gw := harness.StartGateway(t, harness.GatewayOptions{
		Redis:          redis,
		IPv4:           "127.0.0.1",
		Resolver:       gwDNS.DNSAddr,
		CAServer:       pebble.DirectoryURL,
		CACertificates: pebble.CAFile,
		Extra:          []string{"--acme.backoffmin=" + testBackoffMin.String(), "--acme.backoffmax=" + testBackoffMax.String()},
	})
	port := harness.PortOf(t, gw.WebAddr)
	pebble.Start(t, harness.PebbleOptions{HTTPPort: port, DNSServer: pebbleDNS.DNSAddr})
	roots := pebble.Roots(t)

	backend := harness.StartHTTPBackend(t, "moved")
	if err := gw.SetFQDNProxy("wl-moved", name, []string{backend.URL()}, false); err != nil {
		t.Fatalf("SetFQDNProxy(%q): %v", name, err)
	}
	harness.WaitFor(t, acmeTimeout, "the first order of "+name+" to fail", func() error {
		if st := routeStatus(t, gw, "wl-moved"); st == nil || st.ACME == nil || st.ACME.Failures == 0 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	first := time.Now()

	// 30 route changes in the next 20 seconds, each a reload of Traefik.
	other := harness.StartHTTPBackend(t, "other")
	for i := range 30 {
		wl := "wl-other-" + strconv.Itoa(i%10)
		if i < 10 {
			gw.SetNamedProxy(t, wl, "other"+strconv.Itoa(i), []string{other.URL()}, false)
		} else if i < 20 {
			gw.DeleteNamedProxy(t, wl)
		} else {
			gw.SetNamedProxy(t, wl, "again"+strconv.Itoa(i), []string{other.URL()}, false)
		}
		time.Sleep(650 * time.Millisecond)
	}
	during := time.Since(first)
	tokens := validations(pebble, name, port)
	allowed := allowedAttempts(during)
	t.Logf("%s: %d orders in the %s after its first failure and 30 route changes; the backoff allows %d (Pebble received %d orders in all)", name, len(tokens), during.Round(time.Millisecond), allowed, pebble.Orders())
	if len(tokens) > allowed {
		t.Errorf("%d orders for %s, the backoff allows %d", len(tokens), name, allowed)
	}
	if len(tokens) < 2 {
		t.Errorf("%d orders for %s: the gateway did not try again on its own", len(tokens), name)
	}

	// Served all along, with the default certificate, and List says why.
	a, err := harness.TLSGet(context.Background(), gw.WebSecureAddr, name, "/")
	if err != nil || a.Status != 200 || a.Backend != "moved" {
		t.Errorf("HTTPS to %s while its certificate fails: %+v %v", name, a, err)
	}
	st := routeStatus(t, gw, "wl-moved")
	if st == nil || st.ACME == nil || st.ACME.Failures < 1 || st.ACME.LastError == "" || st.Certificate != nil {
		t.Fatalf("status of wl-moved while its orders fail: %+v", st)
	}
	t.Logf("List: %d failures, last error %q, next attempt in %s", st.ACME.Failures, st.ACME.LastError, time.Until(st.ACME.NextAttempt).Round(time.Millisecond))
	if !st.ACME.NextAttempt.IsZero() && time.Until(st.ACME.NextAttempt) > testBackoffMax {
		t.Errorf("next attempt in %s, past the longest wait %s", time.Until(st.ACME.NextAttempt), testBackoffMax)
	}

	// The owner points the name back at the node.
	pebbleDNS.SetA(t, name, "127.0.0.1")
	fixed := time.Now()
	leaf := waitCertificate(t, gw.WebSecureAddr, name, roots, testBackoffMax+acmeTimeout)
	t.Logf("certificate %s %s after the name pointed back, without a restart", harness.SerialHex(leaf), time.Since(fixed).Round(time.Millisecond))
	if !slices.Equal(leaf.DNSNames, []string{name}) {
		t.Errorf("certificate names %q, want %q", leaf.DNSNames, name)
	}
	harness.WaitFor(t, routeTimeout, "List to show the certificate", func() error {
		st := routeStatus(t, gw, "wl-moved")
		if st == nil || st.Certificate == nil || st.ACME != nil || !st.Certificate.NotAfter.Equal(leaf.NotAfter.UTC()) {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
}

// TestFQDNCertificatePruned: the certificate of a deleted route stops being
// served at once; set again within --acme.keepretired it comes back without
// a new order; past it, its files are gone and it is never ordered again.
func TestFQDNCertificatePruned(t *testing.T) {
	t.Parallel()
	const name = "gone.user.test"
	const keep = 4 * time.Second
	redis := harness.StartRedis(t)
	dns := harness.StartChallTestSrv(t)
	dns.AddA(t, name, "127.0.0.1")
	pebble := harness.NewPebble(t)
	gw := harness.StartGateway(t, harness.GatewayOptions{
		Redis:          redis,
		IPv4:           "127.0.0.1",
		Resolver:       dns.DNSAddr,
		CAServer:       pebble.DirectoryURL,
		CACertificates: pebble.CAFile,
		Extra:          []string{"--acme.keepretired=" + keep.String()},
	})
	pebble.Start(t, harness.PebbleOptions{HTTPPort: harness.PortOf(t, gw.WebAddr), DNSServer: dns.DNSAddr})
	roots := pebble.Roots(t)
	backend := harness.StartHTTPBackend(t, "gone")

	set := func() {
		t.Helper()
		if err := gw.SetFQDNProxy("wl-gone", name, []string{backend.URL()}, false); err != nil {
			t.Fatalf("SetFQDNProxy(%q): %v", name, err)
		}
	}
	set()
	leaf := waitCertificate(t, gw.WebSecureAddr, name, roots, acmeTimeout)
	orders := len(validations(pebble, name, harness.PortOf(t, gw.WebAddr)))

	notServed := func(what string) time.Duration {
		t.Helper()
		start := time.Now()
		harness.WaitFor(t, routeTimeout, what, func() error {
			got, err := harness.PeerLeaf(context.Background(), gw.WebSecureAddr, name)
			if err != nil {
				return err
			}
			if got.Equal(leaf) {
				return fmt.Errorf("still served")
			}
			return nil
		})
		return time.Since(start)
	}

	gw.DeleteNamedProxy(t, "wl-gone")
	t.Logf("certificate no longer served %s after the delete", notServed("the deleted route's certificate to stop being served").Round(time.Millisecond))

	// Set again within keep: the same certificate, no new order.
	set()
	if again := waitCertificate(t, gw.WebSecureAddr, name, roots, routeTimeout); !again.Equal(leaf) {
		t.Errorf("the route set again got certificate %s, want the kept %s", harness.SerialHex(again), harness.SerialHex(leaf))
	}

	// Deleted for good: gone from disk once keep has passed.
	gw.DeleteNamedProxy(t, "wl-gone")
	notServed("the certificate to stop being served after the second delete")
	harness.WaitFor(t, keep+routeTimeout, "the retired certificate's files to be deleted", func() error {
		if files := certFiles(t, gw.Root, name); len(files) > 0 {
			return fmt.Errorf("still on disk: %v", files)
		}
		return nil
	})
	time.Sleep(keep)
	if n := len(validations(pebble, name, harness.PortOf(t, gw.WebAddr))); n != orders {
		t.Errorf("%d orders for %s, %d before the delete: a deleted route's certificate was ordered again", n, name, orders)
	}
}

// certFiles lists the files of name's certificate under root: the gateway's
// own (certs/) and those Traefik reads (traefik/certificates/).
func certFiles(t testing.TB, root, name string) []string {
	t.Helper()
	var out []string
	for _, pattern := range []string{
		filepath.Join(root, certs.DirName, "certificates", name+".*"),
		filepath.Join(root, traefik.StateDirName, traefik.CertificatesDirName, name+"-*"),
	} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m...)
	}
	return out
}
