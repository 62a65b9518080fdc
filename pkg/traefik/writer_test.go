package traefik

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDirWriteReplaceRemove(t *testing.T) {
	d, err := OpenDir(filepath.Join(t.TempDir(), "proxy"))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Write("a", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := d.Write("a", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Read("a"); string(got) != "two" {
		t.Fatalf("content %q", got)
	}
	info, err := os.Stat(d.File("a"))
	if err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, %v", info.Mode(), err)
	}
	// Nothing but the file itself is left in the folder.
	entries, _ := os.ReadDir(d.Path())
	if len(entries) != 1 || entries[0].Name() != "a.yaml" {
		t.Fatalf("folder holds %v", entries)
	}
	if err := d.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove("a"); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
}

func TestOpenDirRemovesInterruptedWrites(t *testing.T) {
	dir := t.TempDir()
	staging := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+"-staging")
	if err := os.Mkdir(staging, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{".a.123.tmp": "half", "a.yaml": "whole", "b.yml": "other", ".hidden.yaml": "h",
		filepath.Join(staging, "a.456.tmp"): "half"} {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(dir, ".a.123.tmp"), filepath.Join(staging, "a.456.tmp")} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Fatalf("temporary file %s left: %v", f, err)
		}
	}
	// Everything else is left: quarantining is the business of Routes.
	for _, f := range []string{"a.yaml", "b.yml", ".hidden.yaml", "sub.yaml"} {
		if _, err := os.Lstat(filepath.Join(d.Path(), f)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
}

func TestDirRefusesPaths(t *testing.T) {
	d, err := OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", ".", "..", "../x", "a/b", ".hidden", "a\x00b", `a\b`} {
		if err := d.Write(name, []byte("x")); err == nil {
			t.Errorf("Write(%q) accepted", name)
		}
		if err := d.Remove(name); err == nil {
			t.Errorf("Remove(%q) accepted", name)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	cfg := &Configuration{TCP: &TCPConfiguration{
		Routers:  map[string]*TCPRouter{"r": {EntryPoints: []string{"websecure"}, Rule: "HostSNI(`a.b`)", Service: "r", TLS: &RouterTCPTLSConfig{Passthrough: true}}},
		Services: map[string]*TCPService{"r": {LoadBalancer: &TCPServersLoadBalancer{Servers: []TCPServer{{Address: "[::1]:443"}}}}},
	}}
	data, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Marshal(back)
	if string(again) != string(data) {
		t.Fatalf("round trip changed the file:\n%s\n%s", data, again)
	}
	if _, err := Unmarshal([]byte("http:\n  routers:\n    r:\n      rule: x\n      service: r\n      observability: {}\n")); err == nil {
		t.Fatal("unknown keys accepted")
	}
}

func BenchmarkDirWrite(b *testing.B) {
	d, err := OpenDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	data := []byte("http: {}\n")
	for b.Loop() {
		if err := d.Write("bench", data); err != nil {
			b.Fatal(err)
		}
	}
}
