package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/internal/atomicfile"
	"github.com/threefoldtech/gateway/pkg/store"
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
	return newModuleWith(t, root, nil)
}

// newModuleWith is newModule with cfg changed by edit first.
func newModuleWith(t testing.TB, root string, edit func(*Config)) (*Module, *dnsRecords) {
	t.Helper()
	recs, addr := startDNS(t)
	cfg := Config{
		Routes:    openRoutes(t, root),
		Domain:    "gw.example",
		PublicIPs: []netip.Addr{nodeIP, netip.MustParseAddr("2001:db8::7")},
		Resolver:  DNSResolver{Server: addr},
		Logger:    zerolog.Nop(),
	}
	if edit != nil {
		edit(&cfg)
	}
	if cfg.Store == nil {
		cfg.Store = openStore(t, root)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Recover(); err != nil {
		t.Fatal(err)
	}
	return m, recs
}

// c21 serves m as the 2021 contract does on the bus.
func c21(m *Module) Contract2021 { return Contract2021{M: m} }

// stores are the stores open by root: a module started again on a root
// closes the store of the one before, as a restart does.
var stores sync.Map

// openStore opens the store under root, closing the one a module opened
// there before.
func openStore(t testing.TB, root string) *store.Store {
	t.Helper()
	if prev, ok := stores.LoadAndDelete(root); ok {
		prev.(*store.Store).Close()
	}
	s, err := store.Open(filepath.Join(root, store.FileName))
	if err != nil {
		t.Fatal(err)
	}
	stores.Store(root, s)
	t.Cleanup(func() {
		stores.CompareAndDelete(root, s)
		s.Close()
	})
	return s
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

// grouped returns the routes published under root, read straight from the
// group files.
func grouped(t testing.TB, root string) map[string]*traefik.Configuration {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, traefik.RoutesDirName, "routes~*"+traefik.FileExt))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*traefik.Configuration{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := traefik.Unmarshal(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for id, c := range traefik.Split(cfg) {
			if traefik.GroupName(id)+traefik.FileExt != filepath.Base(f) {
				t.Fatalf("route %s in %s", id, f)
			}
			out[id] = c
		}
	}
	return out
}

// layoutFiles returns, sorted, the names of the group files of ids and of
// the reserved file: what the routes folder holds with those routes.
func layoutFiles(ids ...string) []string {
	names := []string{"gateway~anchor" + traefik.FileExt}
	for _, id := range ids {
		if name := traefik.GroupName(id) + traefik.FileExt; !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// routeYAML returns route id as a file of its own, as it is quarantined.
func routeYAML(t testing.TB, cfg *traefik.Configuration) string {
	t.Helper()
	data, err := traefik.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestSetNamedProxy(t *testing.T) {
	root := t.TempDir()
	m, _ := newModule(t, root)
	fqdn, err := c21(m).SetNamedProxy("wl1", "App", []string{"http://10.0.0.1:8080"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if fqdn != "app.gw.example" {
		t.Fatalf("fqdn = %q", fqdn)
	}
	if grouped(t, root)["wl1"] == nil {
		t.Fatalf("route not in its group file %s", traefik.GroupName("wl1"))
	}
	list, _ := c21(m).List()
	want := []Proxy{{WorkloadID: "wl1", FQDN: "app.gw.example", Kind: KindName, Backends: []string{"http://10.0.0.1:8080"}}}
	if fmt.Sprint(list) != fmt.Sprint(want) {
		t.Fatalf("List = %+v, want %+v", list, want)
	}
}

func TestNamedProxyNeedsDomain(t *testing.T) {
	root := t.TempDir()
	m, err := New(Config{Store: openStore(t, root), Routes: openRoutes(t, root), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c21(m).SetNamedProxy("wl1", "app", []string{"http://10.0.0.1"}, false)
	if !errors.Is(err, ErrNoDomain) || !strings.Contains(err.Error(), "name proxies need a gateway domain") {
		t.Fatalf("err = %v", err)
	}
}

func TestFQDNProxyNeedsPublicIP(t *testing.T) {
	root := t.TempDir()
	m, err := New(Config{Store: openStore(t, root), Routes: openRoutes(t, root), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c21(m).SetFQDNProxy("wl1", "a.example", []string{"http://10.0.0.1"}, false); !errors.Is(err, ErrNoPublicIP) {
		t.Fatalf("err = %v", err)
	}
}

func TestRefusedCallsChangeNothing(t *testing.T) {
	root := t.TempDir()
	m, recs := newModule(t, root)
	recs.set("mine.example", "198.51.100.7")
	recs.set("elsewhere.example", "203.0.113.1")
	recs.set("half.example", "198.51.100.7", "2001:db8::99")
	if _, err := c21(m).SetNamedProxy("held", "taken", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	if err := c21(m).SetFQDNProxy("heldfqdn", "mine.example", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, root)
	listBefore, _ := c21(m).List()

	ok := []string{"http://10.0.0.2"}
	tests := []struct {
		name string
		call func() error
		want string // in the error text
	}{
		{"bad wlID", func() error { _, err := c21(m).SetNamedProxy("../x", "a", ok, false); return err }, `invalid wlID "../x"`},
		{"bad prefix", func() error { _, err := c21(m).SetNamedProxy("n", "a`b", ok, false); return err }, "invalid prefix"},
		{"bad backend", func() error { _, err := c21(m).SetNamedProxy("n", "a", []string{"http://host"}, false); return err }, "invalid backends[0]"},
		{"metadata backend", func() error {
			_, err := c21(m).SetNamedProxy("n", "a", []string{"http://169.254.169.254"}, false)
			return err
		}, "link-local"},
		{"own IP backend", func() error {
			_, err := c21(m).SetNamedProxy("n", "a", []string{"http://198.51.100.7"}, false)
			return err
		}, "loop"},
		{"no backends", func() error { _, err := c21(m).SetNamedProxy("n", "a", nil, false); return err }, "invalid backends"},
		// The holder is another tenant's workload: not named.
		{"name taken", func() error { _, err := c21(m).SetNamedProxy("n", "taken", ok, false); return err }, `domain "taken.gw.example" already registered by another workload`},
		{"fqdn taken", func() error { return c21(m).SetFQDNProxy("n", "mine.example", ok, false) }, `domain "mine.example" already registered by another workload`},
		{"fqdn under domain", func() error { return c21(m).SetFQDNProxy("n", "x.gw.example", ok, false) }, "gateway domain"},
		{"fqdn is domain", func() error { return c21(m).SetFQDNProxy("n", "gw.example", ok, false) }, "gateway domain"},
		{"fqdn without records", func() error { return c21(m).SetFQDNProxy("n", "nothing.example", ok, false) }, "no A or AAAA record"},
		{"fqdn elsewhere", func() error { return c21(m).SetFQDNProxy("n", "elsewhere.example", ok, false) }, "resolves to 203.0.113.1"},
		// A stale AAAA elsewhere would break HTTP-01 later.
		{"fqdn half elsewhere", func() error { return c21(m).SetFQDNProxy("n", "half.example", ok, false) }, "2001:db8::99"},
		{"bad fqdn", func() error { return c21(m).SetFQDNProxy("n", "a`.example", ok, false) }, "invalid fqdn"},
		{"delete bad wlID", func() error { return c21(m).DeleteNamedProxy("a/b") }, "invalid wlID"},
		// Replacing held's route with a bad one keeps the old route.
		{"bad replace", func() error { _, err := c21(m).SetNamedProxy("held", "taken", []string{"ftp://x"}, false); return err }, "invalid backends[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(tt.name, "taken") && strings.Contains(err.Error(), "held") {
				t.Fatalf("err = %v names the holder of the domain", err)
			}
		})
	}
	if after := snapshot(t, root); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("refused calls changed the files:\nbefore %v\nafter  %v", before, after)
	}
	if listAfter, _ := c21(m).List(); fmt.Sprint(listAfter) != fmt.Sprint(listBefore) {
		t.Errorf("refused calls changed the index: %v -> %v", listBefore, listAfter)
	}
}

func TestReplaceAndDelete(t *testing.T) {
	root := t.TempDir()
	m, recs := newModule(t, root)
	recs.set("user.example", "198.51.100.7", "2001:db8::7")
	if _, err := c21(m).SetNamedProxy("wl", "a", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}
	// Same wlID, new kind, mode and domain: the old domain is freed.
	if err := c21(m).SetFQDNProxy("wl", "user.example", []string{"10.0.0.2:443"}, true); err != nil {
		t.Fatal(err)
	}
	list, _ := c21(m).List()
	if len(list) != 1 || list[0].FQDN != "user.example" || !list[0].TLSPassthrough || list[0].Kind != KindFQDN {
		t.Fatalf("List = %+v", list)
	}
	if _, err := c21(m).SetNamedProxy("other", "a", []string{"http://10.0.0.3"}, false); err != nil {
		t.Fatalf("old domain not freed: %v", err)
	}
	if err := c21(m).DeleteNamedProxy("wl"); err != nil {
		t.Fatal(err)
	}
	if grouped(t, root)["wl"] != nil {
		t.Fatal("route still published")
	}
	if err := c21(m).SetFQDNProxy("third", "user.example", []string{"http://10.0.0.4"}, false); err != nil {
		t.Fatalf("deleted domain not freed: %v", err)
	}
	// Deleting an unknown wlID is not an error.
	if err := c21(m).DeleteNamedProxy("never-existed"); err != nil {
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
			_, errs[i] = c21(m).SetNamedProxy(fmt.Sprintf("wl%d", i), "race", []string{"http://10.0.0.1"}, false)
		}()
	}
	wg.Wait()
	var won int
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case !strings.Contains(err.Error(), "already registered by another workload"):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d calls won the domain, want exactly 1", won)
	}
	if list, _ := c21(m).List(); len(list) != 1 {
		t.Fatalf("List has %d routes", len(list))
	}
}

// TestRecovery guards the start: the routes of the store come back as they
// were set; what else the routes folder holds goes to quarantine, with its
// content, out of the folder Traefik reads, even a file that claims a
// route's domain in a shape the gateway once wrote.
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
	_, err := c21(m).SetNamedProxy("a", "a", []string{"http://10.0.0.1", "http://10.0.0.2:81"}, false)
	mustSet(err)
	_, err = c21(m).SetNamedProxy("b", "b", []string{"10.0.0.1:443"}, true)
	mustSet(err)
	mustSet(c21(m).SetFQDNProxy("c", "user.example", []string{"https://10.0.0.1:8443"}, true))
	want, _ := c21(m).List()

	proxy := filepath.Join(root, "proxy")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(proxy, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Files the module cannot take for its own routes.
	write("garbage.yaml", "::: not yaml")
	write("hand.yaml", "http:\n  routers:\n    hand:\n      rule: Host(`x.example`) || PathPrefix(`/`)\n      service: hand\n")
	// Two more files claiming a's domain, of the one-file-per-route layout:
	// the store's route wins, the files go to quarantine.
	routesBefore := grouped(t, root)
	a := routeYAML(t, routesBefore["a"])
	for _, id := range []string{"dup1", "dup2"} {
		write(id+".yaml", strings.NewReplacer("a:", id+":", "service: a", "service: "+id, "- a\n", "- "+id+"\n").Replace(a))
	}
	// An interrupted write leaves a temporary file behind.
	write(".a.yaml.123.tmp", "partial")
	before := snapshot(t, root)

	m2, _ := newModule(t, root)
	got, _ := c21(m2).List()
	var wantIDs, gotIDs []string
	for _, p := range want {
		wantIDs = append(wantIDs, fmt.Sprint(p))
	}
	for _, p := range got {
		gotIDs = append(gotIDs, fmt.Sprint(p))
	}
	if !slices.Equal(gotIDs, wantIDs) {
		t.Fatalf("recovered %v\nwant %v", gotIDs, wantIDs)
	}
	if _, err := c21(m2).SetNamedProxy("new", "a", []string{"http://10.0.0.9"}, false); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("a's domain given away: %v", err)
	}
	// The routes stay as they were; everything else is in quarantine,
	// with its content; the temporary file is gone.
	after := snapshot(t, root)
	delete(before, filepath.Join(proxy, ".a.yaml.123.tmp"))
	quarantined := map[string]string{}
	for path, content := range after {
		if filepath.Dir(path) == filepath.Join(root, traefik.QuarantineDirName) {
			quarantined[strings.SplitN(filepath.Base(path), ".yaml.", 2)[0]] = content
			delete(after, path)
		}
	}
	for _, id := range []string{"dup1", "dup2", "garbage", "hand"} {
		path := filepath.Join(proxy, id+".yaml")
		if quarantined[id] != before[path] {
			t.Errorf("%s: quarantined as %q, want %q", id, quarantined[id], before[path])
		}
		delete(before, path)
	}
	if routesAfter := grouped(t, root); !reflect.DeepEqual(routesAfter, routesBefore) {
		t.Fatalf("recovery changed routes:\nbefore %v\nafter  %v", routesBefore, routesAfter)
	}
	for path := range after {
		if filepath.Dir(path) == proxy {
			delete(after, path)
		}
	}
	for path := range before {
		if filepath.Dir(path) == proxy {
			delete(before, path)
		}
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("recovery changed files outside the routes folder:\nbefore %v\nafter  %v", before, after)
	}
	if got, want := proxyEntries(t, root), layoutFiles("a", "b", "c"); !slices.Equal(got, want) {
		t.Fatalf("routes folder holds %v, want %v", got, want)
	}
}

// nodeAddr returns an address of one of this machine's interfaces that is
// neither loopback nor link-local. A machine without one gets 192.0.2.77 for
// the test, on a dummy interface or, where the kernel has no dummy driver,
// on lo (root is needed either way).
func nodeAddr(t testing.TB) netip.Addr {
	t.Helper()
	addrs, err := InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if !a.IsLoopback() && !a.IsLinkLocalUnicast() && !a.IsMulticast() {
			return a
		}
	}
	const added = "192.0.2.77"
	run := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
		return nil
	}
	dev := fmt.Sprintf("gwt%d", os.Getpid()%100000)
	if err := run("link", "add", dev, "type", "dummy"); err == nil {
		t.Cleanup(func() { _ = run("link", "del", dev) })
	} else {
		t.Logf("no dummy interface (%v): adding %s to lo", err, added)
		dev = "lo"
	}
	if err := run("addr", "add", added+"/32", "dev", dev); err != nil {
		t.Fatalf("this machine has no address but loopback and link-local ones, and adding one failed (run as root): %v", err)
	}
	t.Cleanup(func() { _ = run("addr", "del", added+"/32", "dev", dev) })
	return netip.MustParseAddr(added)
}

// TestNodeAddressBackends guards against routes that make Traefik connect to
// itself: one request (or one ClientHello, or one HTTP-01 request sent to
// port 80 of a passthrough backend) would loop until Traefik runs out of
// descriptors. Every address of the node's interfaces is refused, read at
// the call with the default source, even inside --backends.allow; loopback
// stays under --backends.allow.
func TestNodeAddressBackends(t *testing.T) {
	addr := nodeAddr(t)
	root := t.TempDir()
	m, _ := newModuleWith(t, root, func(c *Config) {
		c.Allow = []netip.Prefix{netip.PrefixFrom(addr, addr.BitLen()), netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	})
	host := addr.String()
	if addr.Is6() {
		host = "[" + host + "]"
	}
	calls := []struct {
		name  string
		call  func() error
		field string
	}{
		{"http", func() error {
			_, err := c21(m).SetNamedProxy("wl", "a", []string{"http://10.0.0.1", "http://" + host + ":8080"}, false)
			return err
		}, "backends[1]"},
		{"passthrough", func() error {
			_, err := c21(m).SetNamedProxy("wl", "a", []string{"10.0.0.1:443", host + ":443"}, true)
			return err
		}, "backends[1]"},
		{"fqdn", func() error { return c21(m).SetFQDNProxy("wl", "user.example", []string{"https://" + host}, false) }, "backends[0]"},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil || !strings.Contains(err.Error(), "invalid "+tt.field) || !strings.Contains(err.Error(), "the node's own address") {
				t.Fatalf("err = %v, want %s refused as the node's own address", err, tt.field)
			}
		})
	}
	// Loopback is the operator's to allow: the test suites do.
	if _, err := c21(m).SetNamedProxy("lo", "lo", []string{"http://127.0.0.1:8080", "http://[::1]:8080"}, false); err != nil {
		t.Fatalf("allowed loopback refused: %v", err)
	}
	if list, _ := c21(m).List(); len(list) != 1 {
		t.Fatalf("List = %v", list)
	}
}

// TestNodeAddressRouteAtStart guards a node that gained an address since a
// route was set (a bridge, a VPN): at start the route is not indexed and its
// file goes to quarantine, so Traefik stops looping into itself.
func TestNodeAddressRouteAtStart(t *testing.T) {
	addr := nodeAddr(t)
	root := t.TempDir()
	// Set while the node did not have the address.
	before, _ := newModuleWith(t, root, func(c *Config) {
		c.NodeAddrs = func() ([]netip.Addr, error) { return nil, nil }
		c.NodeNets = func() ([]netip.Prefix, error) { return nil, nil }
	})
	b := netip.AddrPortFrom(addr, 443).String()
	if _, err := c21(before).SetNamedProxy("loops", "loops", []string{b}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := c21(before).SetNamedProxy("fine", "fine", []string{"10.0.0.1:443"}, true); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	m, _ := newModuleWith(t, root, func(c *Config) { c.Logger = zerolog.New(&logs) })
	if list, _ := c21(m).List(); len(list) != 1 || list[0].WorkloadID != "fine" {
		t.Fatalf("List = %v", list)
	}
	if grouped(t, root)["loops"] != nil {
		t.Fatal("route to the node's own address still published")
	}
	if q := quarantined(t, root); len(q["loops.yaml"]) != 1 {
		t.Fatalf("quarantine holds %v", q)
	}
	if !strings.Contains(logs.String(), `"level":"error"`) || !strings.Contains(logs.String(), "is the node's own address") {
		t.Fatalf("no error line names the reason:\n%s", logs.String())
	}
}

// quarantineStamp ends the name of a quarantined entry.
var quarantineStamp = regexp.MustCompile(`\.\d{8}T\d{6}\.\d{9}Z(-\d+)?$`)

// quarantined returns the content of each entry in quarantine, by the name
// it had in the routes folder; a folder reads as "<folder>".
func quarantined(t testing.TB, root string) map[string][]string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, traefik.QuarantineDirName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range entries {
		loc := quarantineStamp.FindStringIndex(e.Name())
		if loc == nil {
			t.Fatalf("quarantined %q has no time stamp", e.Name())
		}
		i := loc[0]
		content := "<folder>"
		path := filepath.Join(root, traefik.QuarantineDirName, e.Name())
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			content = "-> " + target
		case !e.IsDir():
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			content = string(b)
		}
		out[e.Name()[:i]] = append(out[e.Name()[:i]], content)
	}
	return out
}

// TestStoreIsTheCommit guards the crash order: a Set is committed by the
// store, before the routes folder is written. A folder whose sync fails no
// longer fails a Set (the folder is derived and repaired at start); a store
// that cannot commit fails it with nothing written; and what a crash
// between the store's commit and the files left behind (a group file
// missing, another stale) is repaired at the next start.
func TestStoreIsTheCommit(t *testing.T) {
	root := t.TempDir()
	m, _ := newModule(t, root)
	proxy := filepath.Join(root, traefik.RoutesDirName)
	restore := atomicfile.FailDirSync(proxy, syscall.EIO)
	if _, err := c21(m).SetNamedProxy("a", "app", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatalf("a folder that does not sync failed the Set: %v", err)
	}
	restore()
	if _, err := c21(m).SetNamedProxy("b", "b", []string{"http://10.0.0.2"}, false); err != nil {
		t.Fatal(err)
	}
	want := grouped(t, root)

	// The crash: one route's group file lost, the other's stale.
	for _, id := range []string{"a", "b"} {
		path := filepath.Join(proxy, traefik.GroupName(id)+traefik.FileExt)
		if id == "a" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			continue
		}
		stale := route{id: "b", fqdn: "b.gw.example", kind: KindName, name: "b", backends: backends(t, false, "http://10.0.0.99")}
		if err := os.WriteFile(path, []byte(routeYAML(t, stale.render())), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m2, _ := newModule(t, root)
	if got := grouped(t, root); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the restart the folder holds %v, want %v", got, want)
	}
	if q := quarantined(t, root); len(q) != 0 {
		t.Fatalf("quarantine holds %v", q)
	}

	// A store that cannot commit: the Set fails and writes nothing.
	before := snapshot(t, root)
	m2.store.Close()
	if _, err := c21(m2).SetNamedProxy("c", "c", []string{"http://10.0.0.3"}, false); err == nil {
		t.Fatal("a Set succeeded without its store")
	}
	if err := c21(m2).DeleteNamedProxy("a"); err == nil {
		t.Fatal("a delete succeeded without its store")
	}
	if after := snapshot(t, root); !reflect.DeepEqual(after, before) {
		t.Fatal("a Set or delete that failed changed files")
	}
	if list, _ := c21(m2).List(); len(list) != 2 {
		t.Fatalf("List = %v", list)
	}
}

// startSilentDNS starts a DNS server on loopback that reads every query and
// never answers, as a resolver that lost its upstream does. It returns its
// address and a count of the queries it got.
func startSilentDNS(t testing.TB) (string, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	var queries atomic.Int64
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			queries.Add(1)
		}
	}()
	return pc.LocalAddr().String(), &queries
}

// TestSlowResolverDoesNotStarveOtherCalls guards the bus workers: each
// SetFQDNProxy waits for the DNS check, and zbus serves a fixed number of
// calls at once, so checks against a silent resolver must never take every
// worker. The bus is modelled as zbus runs it: a fixed pool of workers
// taking calls from one queue in order.
func TestSlowResolverDoesNotStarveOtherCalls(t *testing.T) {
	const workers = 4
	addr, queries := startSilentDNS(t)
	m, _ := newModuleWith(t, t.TempDir(), func(c *Config) {
		c.Resolver = DNSResolver{Server: addr}
		c.Workers = workers
		c.LookupTimeout = 2 * time.Second
	})
	if _, err := c21(m).SetNamedProxy("named", "named", []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatal(err)
	}

	queue := make(chan func(), 64)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for call := range queue {
				call()
			}
		}()
	}
	defer wg.Wait()
	defer close(queue)

	const sets = 2 * workers
	type result struct {
		err  error
		took time.Duration
	}
	results := make(chan result, sets)
	for i := range sets {
		queue <- func() {
			start := time.Now()
			err := c21(m).SetFQDNProxy(fmt.Sprintf("fqdn%d", i), fmt.Sprintf("slow%d.example", i), []string{"http://10.0.0.1"}, false)
			results <- result{err, time.Since(start)}
		}
	}
	answer := func(name string, call func() error) {
		t.Helper()
		done := make(chan error, 1)
		start := time.Now()
		queue <- func() { done <- call() }
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			t.Logf("%s answered in %s", name, time.Since(start).Round(time.Microsecond))
		case <-time.After(200 * time.Millisecond):
			t.Fatalf("%s did not answer within 200ms while domain checks wait on a silent resolver", name)
		}
	}
	answer("List", func() error { _, err := c21(m).List(); return err })
	answer("DeleteNamedProxy", func() error { return c21(m).DeleteNamedProxy("named") })

	var busy, timedOut int
	for range sets {
		r := <-results
		switch {
		case errors.Is(r.err, ErrChecksBusy):
			busy++
			if r.took > 100*time.Millisecond {
				t.Errorf("a refused check took %s", r.took)
			}
			if !strings.Contains(r.err.Error(), "too many domain checks in flight, try again") {
				t.Errorf("err = %v", r.err)
			}
		case r.err != nil && strings.Contains(r.err.Error(), "checking the DNS records"):
			timedOut++
			if r.took > 3*time.Second {
				t.Errorf("a check took %s, longer than its timeout", r.took)
			}
		default:
			t.Errorf("unexpected result %v", r.err)
		}
	}
	if timedOut != workers-1 || busy != sets-(workers-1) {
		t.Fatalf("%d checks ran and %d were refused, want %d and %d", timedOut, busy, workers-1, sets-(workers-1))
	}
	if queries.Load() == 0 {
		t.Fatal("the silent resolver got no query")
	}
}

// TestLongPrefix guards the index: a name over 253 bytes would be written,
// then dropped at the next start while its file stays live.
func TestLongPrefix(t *testing.T) {
	long := strings.Repeat("d", 63) + "." + strings.Repeat("e", 63) + "." + strings.Repeat("f", 63) + ".example" // 199 bytes
	root := t.TempDir()
	m, _ := newModuleWith(t, root, func(c *Config) { c.Domain = long })
	fits := strings.Repeat("p", 253-1-len(long))
	if _, err := c21(m).SetNamedProxy("fits", fits, []string{"http://10.0.0.1"}, false); err != nil {
		t.Fatalf("a 253-byte name refused: %v", err)
	}
	_, err := c21(m).SetNamedProxy("over", fits+"q", []string{"http://10.0.0.1"}, false)
	if err == nil || !strings.Contains(err.Error(), "invalid prefix") || !strings.Contains(err.Error(), "253") {
		t.Fatalf("err = %v, want the prefix refused for the 253-byte limit", err)
	}
	if grouped(t, root)["over"] != nil {
		t.Fatal("refused route written")
	}
	m2, _ := newModuleWith(t, root, func(c *Config) { c.Domain = long })
	if list, _ := c21(m2).List(); len(list) != 1 || list[0].WorkloadID != "fits" {
		t.Fatalf("after a restart List = %v", list)
	}
}

// TestSetThatChangesNothingWritesNothing guards the boot storm: a node
// re-applies every workload when it boots, and each rewrite would cost
// Traefik a reload of every route.
func TestSetThatChangesNothingWritesNothing(t *testing.T) {
	root := t.TempDir()
	m, recs := newModule(t, root)
	recs.set("user.example", "198.51.100.7")
	file := func(id string) string { return filepath.Join(root, "proxy", traefik.GroupName(id)+".yaml") }
	inode := func(id string) uint64 {
		t.Helper()
		fi, err := os.Stat(file(id))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	set := func(m *Module) {
		t.Helper()
		if _, err := c21(m).SetNamedProxy("a", "App", []string{"http://10.0.0.1", "https://10.0.0.2:8443"}, false); err != nil {
			t.Fatal(err)
		}
		if _, err := c21(m).SetNamedProxy("b", "b", []string{"https://10.0.0.3:443"}, true); err != nil {
			t.Fatal(err)
		}
		if err := c21(m).SetFQDNProxy("c", "USER.example.", []string{"http://[2001:db8::1]:8080"}, false); err != nil {
			t.Fatal(err)
		}
	}
	set(m)
	before := map[string]uint64{"a": inode("a"), "b": inode("b"), "c": inode("c")}

	// The same calls, to the same module and to one that rebuilt its index
	// from the files after a restart: no file is written again. (Each
	// inode is of the route's group file.)
	set(m)
	m2, recs2 := newModule(t, root)
	recs2.set("user.example", "198.51.100.7")
	set(m2)
	for id, ino := range before {
		if got := inode(id); got != ino {
			t.Errorf("route %s was rewritten by a Set that changed nothing", id)
		}
	}

	// A change is written; so is a file removed by hand.
	if _, err := c21(m2).SetNamedProxy("a", "app", []string{"http://10.0.0.9"}, false); err != nil {
		t.Fatal(err)
	}
	if inode("a") == before["a"] {
		t.Error("a changed route was not written")
	}
	if err := os.Remove(file("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := c21(m2).SetNamedProxy("b", "b", []string{"https://10.0.0.3:443"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file("b")); err != nil {
		t.Errorf("a route removed by hand was not written again: %v", err)
	}
}
