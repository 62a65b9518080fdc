package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Config{Dir: filepath.Join(dir, "state"), CAServer: "https://127.0.0.1:14000/dir"}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // in the error: the field at fault
	}{
		{"no dir", func(c *Config) { c.Dir = "" }, "Dir"},
		// A relative folder would move with the working directory.
		{"relative dir", func(c *Config) { c.Dir = "state" }, "Dir"},
		{"no CA server", func(c *Config) { c.CAServer = "" }, "CAServer"},
		// ACME over plain HTTP would hand the account key's signatures to
		// anyone on the path.
		{"plain http CA server", func(c *Config) { c.CAServer = "http://127.0.0.1:14000/dir" }, "CAServer"},
		{"relative CA file", func(c *Config) { c.CACertificates = []string{"ca.pem"} }, "CACertificates"},
		{"missing CA file", func(c *Config) { c.CACertificates = []string{filepath.Join(dir, "none.pem")} }, "CACertificates"},
		{"CA file without PEM", func(c *Config) { c.CACertificates = []string{notPEM} }, "CACertificates"},
		{"negative backoff", func(c *Config) { c.BackoffMin = -time.Second }, "BackoffMin"},
		{"max below min", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Hour, time.Minute }, "BackoffMax"},
		{"negative keep", func(c *Config) { c.KeepRetired = -time.Second }, "KeepRetired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			cfg.Logger = zerolog.Nop()
			tt.change(&cfg)
			m, err := New(cfg)
			if err == nil {
				m.Close()
				t.Fatalf("New accepted %+v", cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

// TestNewDefaults checks the defaults and the folder New makes.
func TestNewDefaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	m, err := New(Config{Dir: dir, CAServer: "https://127.0.0.1:14000/dir", Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.cfg.BackoffMin != DefaultBackoffMin || m.cfg.BackoffMax != DefaultBackoffMax || m.cfg.KeepRetired != DefaultKeepRetired {
		t.Errorf("defaults: %s %s %s", m.cfg.BackoffMin, m.cfg.BackoffMax, m.cfg.KeepRetired)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("Dir has mode %v, want 0700", fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(dir, accountDir, accountKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("account key has mode %v, want 0600", fi.Mode().Perm())
	}
}
