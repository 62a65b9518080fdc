//go:build e2e

package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/threefoldtech/gateway/pkg/traefik"
	"github.com/threefoldtech/gateway/test/harness"
)

// TestUpgradeImportsEveryLayout guards the upgrade of a node: a root written
// by earlier versions of the gateway (group files, one file per route with
// the resolvers on the routers) and by zos's own gateway (router
// <wlID>-route, service <wlID>) is imported at the first start with a
// store. Every route is served through Traefik, its domain is reserved, and
// every original file's bytes are kept under proxy-imported/.
func TestUpgradeImportsEveryLayout(t *testing.T) {
	t.Parallel()
	group := harness.StartHTTPBackend(t, "group")
	legacyName := harness.StartHTTPBackend(t, "legacy-name")
	legacyFQDN := harness.StartHTTPBackend(t, "legacy-fqdn")
	zosName := harness.StartHTTPBackend(t, "zos-name")
	zosFQDN := harness.StartHTTPBackend(t, "zos-fqdn")
	zosTLS := harness.StartTLSBackend(t, "zos-tls", "ztls.gw.test")

	files := map[string]string{
		// The group file of the release before the store.
		traefik.GroupName("wl-group") + traefik.FileExt: "http:\n  routers:\n    wl-group:\n      entryPoints:\n        - websecure\n      rule: Host(`grp.gw.test`)\n      service: wl-group\n      tls: {}\n  services:\n    wl-group:\n      loadBalancer:\n        servers:\n          - url: " + group.URL() + "\n",
		// One file per route, the resolvers on the routers.
		"wl-legacy-name.yaml": "http:\n  routers:\n    wl-legacy-name:\n      entryPoints:\n        - websecure\n      rule: Host(`old.gw.test`)\n      service: wl-legacy-name\n      tls:\n        certResolver: dnsresolver\n        domains:\n          - main: gw.test\n            sans:\n              - '*.gw.test'\n  services:\n    wl-legacy-name:\n      loadBalancer:\n        servers:\n          - url: " + legacyName.URL() + "\n",
		"wl-legacy-fqdn.yaml": "http:\n  routers:\n    wl-legacy-fqdn:\n      entryPoints:\n        - websecure\n      rule: Host(`www.user.test`)\n      service: wl-legacy-fqdn\n      tls:\n        certResolver: resolver\n        domains:\n          - main: www.user.test\n  services:\n    wl-legacy-fqdn:\n      loadBalancer:\n        servers:\n          - url: " + legacyFQDN.URL() + "\n",
		// zos's gateway, as yaml.v2 wrote its structs.
		"zos-name.yaml": "http:\n  routers:\n    zos-name-route:\n      rule: Host(`zname.gw.test`)\n      service: zos-name\n      tls:\n        certResolver: dnsresolver\n        domains:\n        - sans:\n          - '*.gw.test'\n  services:\n    zos-name:\n      loadbalancer:\n        servers:\n        - url: " + zosName.URL() + "\n",
		"zos-fqdn.yaml": "http:\n  routers:\n    zos-fqdn-route:\n      rule: Host(`shop.user.test`)\n      service: zos-fqdn\n      tls:\n        certResolver: resolver\n        domains:\n        - main: shop.user.test\n  services:\n    zos-fqdn:\n      loadbalancer:\n        servers:\n        - url: " + zosFQDN.URL() + "\n",
		"zos-tls.yaml":  "tcp:\n  routers:\n    zos-tls-route:\n      rule: HostSNI(`ztls.gw.test`)\n      service: zos-tls\n      tls:\n        passthrough: \"true\"\n  services:\n    zos-tls:\n      loadbalancer:\n        servers:\n        - address: " + zosTLS.Addr + "\n",
	}
	root := t.TempDir()
	proxy := filepath.Join(root, traefik.RoutesDirName)
	if err := os.MkdirAll(proxy, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(proxy, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	e := newEnvWith(t, harness.GatewayOptions{Root: root})
	for host, backend := range map[string]string{
		"grp.gw.test":    "group",
		"old.gw.test":    "legacy-name",
		"www.user.test":  "legacy-fqdn",
		"zname.gw.test":  "zos-name",
		"shop.user.test": "zos-fqdn",
	} {
		e.waitHTTP(t, host, backend)
	}
	e.waitPassthrough(t, "ztls.gw.test", "zos-tls")

	list, err := e.gw.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(files) {
		t.Fatalf("List holds %d routes, want %d: %+v", len(list), len(files), list)
	}
	// Every domain is reserved.
	for _, prefix := range []string{"grp", "old", "zname", "ztls"} {
		if _, err := e.gw.Stub.SetNamedProxy(t.Context(), "thief", prefix, []string{group.URL()}, false); err == nil || !strings.Contains(err.Error(), "already registered") {
			t.Errorf("name %s not reserved: %v", prefix, err)
		}
	}
	for name, data := range files {
		kept, err := os.ReadFile(filepath.Join(root, traefik.ImportedDirName, name))
		if err != nil || string(kept) != data {
			t.Errorf("%s not kept with its bytes in %s: %v", name, traefik.ImportedDirName, err)
		}
		if strings.HasPrefix(name, "routes~") {
			continue
		}
		if _, err := os.Stat(filepath.Join(proxy, name)); !os.IsNotExist(err) {
			t.Errorf("%s still in %s: %v", name, traefik.RoutesDirName, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(root, traefik.QuarantineDirName)); len(entries) != 0 {
		t.Errorf("quarantine holds %d entries", len(entries))
	}
}

// TestSecondGatewayRefused guards one root against two gateways: a second
// gateway started on the root of a running one exits at once with an error
// that says why, and the first one goes on serving.
func TestSecondGatewayRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := harness.StartHTTPBackend(t, "first")
	host := e.gw.SetNamedProxy(t, "wl-first", "first", []string{b.URL()}, false)
	e.waitHTTP(t, host, "first")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, harness.GatewayBinary(t), e.gw.Args()...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the second gateway did not exit: %s", out)
	}
	if err == nil || !strings.Contains(string(out), "another gateway holds the store") {
		t.Fatalf("second gateway: %v\n%s", err, out)
	}
	if err := e.gw.Ping(); err != nil {
		t.Fatalf("the first gateway after the second one's try: %v", err)
	}
	e.waitHTTP(t, host, "first")
}
