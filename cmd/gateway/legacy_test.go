package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/threefoldtech/gateway/internal/testcert"
	"github.com/threefoldtech/gateway/pkg/certs"
)

// An upgraded node keeps the certificates Traefik's former HTTP-01 resolver
// obtained: they are imported once, served as soon as their domain is
// routed, without an order, and the old storage is renamed so that nothing
// renews it.
func TestImportLegacyCertificates(t *testing.T) {
	root := t.TempDir()
	stateDir := filepath.Join(root, "traefik")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := selfSigned(t, "app.user.test")
	storage, err := json.Marshal(map[string]any{"resolver": map[string]any{
		"Account": map[string]any{"Email": "ops@example.com"},
		"Certificates": []map[string]any{{
			"domain":      map[string]any{"main": "app.user.test"},
			"certificate": certPEM,
			"key":         keyPEM,
			"Store":       "default",
		}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	legacy := filepath.Join(stateDir, "acme-http.json")
	if err := os.WriteFile(legacy, storage, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := certs.New(certs.Config{Dir: filepath.Join(root, certs.DirName), CAServer: "https://127.0.0.1:1/dir", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	importLegacyCertificates(stateDir, m, zerolog.Nop())
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Errorf("the old storage is still there: %v", err)
	}
	if _, err := os.Stat(legacy + ".imported"); err != nil {
		t.Errorf("the old storage was not kept as .imported: %v", err)
	}
	if len(m.Certificates()) != 0 {
		t.Errorf("a certificate is served before its domain is routed: %+v", m.Certificates())
	}
	m.Want("7", "app.user.test")
	got := m.Certificates()
	if len(got) != 1 || got[0].Domain != "app.user.test" {
		t.Fatalf("after Want: %+v, want the imported certificate", got)
	}
	if b, err := os.ReadFile(got[0].CertFile); err != nil || string(b) != string(certPEM) {
		t.Errorf("served certificate file %s: %v", got[0].CertFile, err)
	}

	// Imported once: a second start finds nothing to import.
	importLegacyCertificates(stateDir, m, zerolog.Nop())
	if _, err := os.Stat(legacy + ".imported"); err != nil {
		t.Errorf("the renamed storage went: %v", err)
	}
}

func selfSigned(t testing.TB, name string) (certPEM, keyPEM []byte) {
	t.Helper()
	return testcert.SelfSigned(t, []string{name}, time.Now().Add(-time.Hour), time.Now().Add(60*24*time.Hour))
}
