package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/pkg/traefik"
)

// dnsRecords serves A and AAAA records from a real DNS server on loopback.
type dnsRecords struct {
	mu      sync.Mutex
	records map[string][]string
}

func (d *dnsRecords) set(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records[dns.Fqdn(name)] = ips
}

func (d *dnsRecords) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	d.mu.Lock()
	ips, ok := d.records[strings.ToLower(q.Name)]
	d.mu.Unlock()
	if !ok {
		m.Rcode = dns.RcodeNameError
	}
	for _, s := range ips {
		ip := net.ParseIP(s)
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 60}
		switch {
		case ip.To4() != nil && q.Qtype == dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ip})
		case ip.To4() == nil && q.Qtype == dns.TypeAAAA:
			hdr.Rrtype = dns.TypeAAAA
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
		}
	}
	_ = w.WriteMsg(m)
}

func startDNS(t testing.TB) (*dnsRecords, string) {
	t.Helper()
	recs := &dnsRecords{records: map[string][]string{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: recs, NotifyStartedFunc: func() { close(started) }}
	go func() { _ = srv.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = srv.Shutdown() })
	return recs, pc.LocalAddr().String()
}

var nodeIP = netip.MustParseAddr("198.51.100.7")

func newModule(t testing.TB, root string) (*Module, *dnsRecords) {
	t.Helper()
	recs, addr := startDNS(t)
	m, err := New(Config{
		Routes:     openRoutes(t, root),
		Domain:     "gw.example",
		PublicIPs:  []netip.Addr{nodeIP, netip.MustParseAddr("2001:db8::7")},
		Resolver:   DNSResolver{Server: addr},
		MetricsURL: "http://127.0.0.1:1/metrics",
		Logger:     zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, recs
}

// openRoutes publishes routes the way the daemon does, under root.
func openRoutes(t testing.TB, root string) *traefik.Routes {
	t.Helper()
	routes, err := traefik.OpenRoutes(root)
	if err != nil {
		t.Fatal(err)
	}
	return routes
}

// snapshot returns every file under root with its content.
func snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestSetNamedProxy(t *testing.T) {
	root := t.TempDir()
	m, _ := newModule(t, root)
	fqdn, err := m.SetNamedProxy("wl1", "App", []string{"http://10.0.0.1:8080"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if fqdn != "app.gw.example" {
		t.Fatalf("fqdn = %q", fqdn)
	}
	if _, err := os.Stat(filepath.Join(root, "proxy", "wl1.yaml")); err != nil {
		t.Fatalf("route file: %v", err)
	}
	list, _ := m.List()
	want := []Proxy{{WorkloadID: "wl1", FQDN: "app.gw.example", Kind: KindName, Backends: []string{"http://10.0.0.1:8080"}}}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("List = %+v, want %+v", list, want)
	}
}

func TestNamedProxyNeedsDomain(t *testing.T) {
	m, err := New(Config{Routes: openRoutes(t, t.TempDir()), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.SetNamedProxy("wl1", "app", []string{"http://10.0.0.1"}, false)
	if !errors.Is(err, ErrNoDomain) || !strings.Contains(err.Error(), "name proxies need a gateway domain") {
		t.Fatalf("err = %v", err)
	}
}

func TestFQDNProxyNeedsPublicIP(t *testing.T) {
	m, err := New(Config{Routes: openRoutes(t, t.TempDir()), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.SetFQDNProxy("wl1", "a.example", []string{"http://10.0.0.1"}, false); !errors.Is(err, ErrNoPublicIP) {
		t.Fatalf("err = %v", err)
	}
}

func TestRefusedCallsChangeNothing(t *testing.T) {
	root := t.TempDir()
	m, recs := newModule(t, root)
	recs.set("mine.example", "198.51.100.7")
	recs.set("elsewhere.example", "203.0.113.1")
	recs.set("half.example", "198.51.100.7", "2001:db8::99")
	if _, err := m.SetNamedProxy("held", "taken", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if err := m.SetFQDNProxy("heldfqdn", "mine.example", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	listBefore, _ := m.List()

	ok := []string{"http://10.0.0.2"}
	tests := []struct {
		name string
		call func() error
		want string // in the error text
	}{
		{"bad wlID", func() error { _, err := m.SetNamedProxy("../x", "a", ok, false); return err }, `invalid wlID "../x"`},
		{"bad prefix", func() error { _, err := m.SetNamedProxy("n", "a`b", ok, false); return err }, "invalid prefix"},
		{"bad backend", func() error { _, err := m.SetNamedProxy("n", "a", []string{"http://host"}, false); return err }, "invalid backends[0]"},
		{"metadata backend", func() error {
			_, err := m.SetNamedProxy("n", "a", []string{"http://169.254.169.254"}, false)
			return err
		}, "link-local"},
		{"own IP backend", func() error { _, err := m.SetNamedProxy("n", "a", []string{"http://198.51.100.7"}, false); return err }, "loop"},
		{"no backends", func() error { _, err := m.SetNamedProxy("n", "a", nil, false); return err }, "invalid backends"},
		{"name taken", func() error { _, err := m.SetNamedProxy("n", "taken", ok, false); return err }, `domain "taken.gw.example" already registered by held`},
		{"fqdn taken", func() error { return m.SetFQDNProxy("n", "mine.example", ok, false) }, "already registered by heldfqdn"},
		{"fqdn under domain", func() error { return m.SetFQDNProxy("n", "x.gw.example", ok, false) }, "gateway domain"},
		{"fqdn is domain", func() error { return m.SetFQDNProxy("n", "gw.example", ok, false) }, "gateway domain"},
		{"fqdn without records", func() error { return m.SetFQDNProxy("n", "nothing.example", ok, false) }, "no A or AAAA record"},
		{"fqdn elsewhere", func() error { return m.SetFQDNProxy("n", "elsewhere.example", ok, false) }, "resolves to 203.0.113.1"},
		// A stale AAAA elsewhere would break HTTP-01 later.
		{"fqdn half elsewhere", func() error { return m.SetFQDNProxy("n", "half.example", ok, false) }, "2001:db8::99"},
		{"bad fqdn", func() error { return m.SetFQDNProxy("n", "a`.example", ok, false) }, "invalid fqdn"},
		{"delete bad wlID", func() error { return m.DeleteNamedProxy("a/b") }, "invalid wlID"},
		// Replacing held's route with a bad one keeps the old route.
		{"bad replace", func() error { _, err := m.SetNamedProxy("held", "taken", []string{"ftp://x"}, false); return err }, "invalid backends[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if after := snapshot(t, root); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused calls changed the files:\nbefore %v\nafter  %v", before, after)
	}
	if listAfter, _ := m.List(); fmt.Sprint(listAfter) != fmt.Sprint(listBefore) {
		t.Errorf("refused calls changed the index: %v -> %v", listBefore, listAfter)
	}
}

func TestReplaceAndDelete(t *testing.T) {
	root := t.TempDir()
	m, recs := newModule(t, root)
	recs.set("user.example", "198.51.100.7", "2001:db8::7")
	if _, err := m.SetNamedProxy("wl", "a", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	// Same wlID, new kind, mode and domain: the old domain is freed.
	if err := m.SetFQDNProxy("wl", "user.example", []string{"10.0.0.2:443"}, true); err != nil {
		t.Fatal(err)
	}
	list, _ := m.List()
	if len(list) != 1 || list[0].FQDN != "user.example" || !list[0].TLSPassthrough || list[0].Kind != KindFQDN {
		t.Fatalf("List = %+v", list)
	}
	if _, err := m.SetNamedProxy("other", "a", []string{"http://10.0.0.3"}, false); err != nil {
		t.Fatalf("old domain not freed: %v", err)
	}
	if err := m.DeleteNamedProxy("wl"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "proxy", "wl.yaml")); !os.IsNotExist(err) {
		t.Fatalf("file still there: %v", err)
	}
	if err := m.SetFQDNProxy("third", "user.example", []string{"http://10.0.0.4"}, false); err != nil {
		t.Fatalf("deleted domain not freed: %v", err)
	}
	// Deleting an unknown wlID is not an error.
	if err := m.DeleteNamedProxy("never-existed"); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentSetsOneDomain(t *testing.T) {
	m, _ := newModule(t, t.TempDir())
	const n = 100
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.SetNamedProxy(fmt.Sprintf("wl%d", i), "race", []string{"http://10.0.0.1"}, false)
		}()
	}
	wg.Wait()
	var won int
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !strings.Contains(err.Error(), "already registered by"):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d calls won the domain, want exactly 1", won)
	}
	if list, _ := m.List(); len(list) != 1 {
		t.Fatalf("List has %d routes", len(list))
	}
}

func TestRecovery(t *testing.T) {
	root := t.TempDir()
	m, recs := newModule(t, root)
	recs.set("user.example", "198.51.100.7")
	mustSet := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := m.SetNamedProxy("a", "a", []string{"http://10.0.0.1", "http://10.0.0.2:81"}, false)
	mustSet(err)
	_, err = m.SetNamedProxy("b", "b", []string{"10.0.0.1:443"}, true)
	mustSet(err)
	mustSet(m.SetFQDNProxy("c", "user.example", []string{"https://10.0.0.1:8443"}, true))
	want, _ := m.List()

	proxy := filepath.Join(root, "proxy")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(proxy, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Files the module cannot take for its own routes: left untouched.
	write("garbage.yaml", "::: not yaml")
	write("hand.yaml", "http:\n  routers:\n    hand:\n      rule: Host(`x.example`) || PathPrefix(`/`)\n      service: hand\n")
	// Two files claiming one domain: neither wins, the domain stays held.
	a, _ := os.ReadFile(filepath.Join(proxy, "a.yaml"))
	for _, id := range []string{"dup1", "dup2"} {
		write(id+".yaml", strings.NewReplacer("a:", id+":", "service: a", "service: "+id, "- a\n", "- "+id+"\n").Replace(string(a)))
	}
	// An interrupted write leaves a temporary file behind.
	write(".a.yaml.123.tmp", "partial")
	before := snapshot(t, root)

	m2, _ := newModule(t, root)
	got, _ := m2.List()
	var wantIDs, gotIDs []string
	for _, p := range want {
		if p.WorkloadID != "a" {
			wantIDs = append(wantIDs, fmt.Sprint(p))
		}
	}
	for _, p := range got {
		gotIDs = append(gotIDs, fmt.Sprint(p))
	}
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatalf("recovered %v\nwant %v", gotIDs, wantIDs)
	}
	if _, err := m2.SetNamedProxy("new", "a", []string{"http://10.0.0.9"}, false); err == nil || !strings.Contains(err.Error(), "conflicting files") {
		t.Fatalf("disputed domain given away: %v", err)
	}
	after := snapshot(t, root)
	delete(before, filepath.Join(proxy, ".a.yaml.123.tmp"))
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("recovery changed files other than the stale temporary one")
	}
}
