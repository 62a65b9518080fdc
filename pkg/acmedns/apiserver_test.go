package acmedns

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// startAPIServer runs an APIServer with h on 127.0.0.1:0 until the test
// ends.
func startAPIServer(tb testing.TB, h http.Handler) *APIServer {
	tb.Helper()
	srv, err := NewAPIServer(APIConfig{Address: "127.0.0.1:0", Handler: h, Logger: zerolog.Nop()})
	if err != nil {
		tb.Fatalf("NewAPIServer: %v", err)
	}
	runUntilCleanup(tb, "api server", srv)
	return srv
}

func TestNewAPIServerAddress(t *testing.T) {
	h := http.NotFoundHandler()
	tests := []struct {
		name    string
		address string
		wantErr string // "" for success
	}{
		{name: "IPv4 loopback", address: "127.0.0.1:0"},
		{name: "other IPv4 loopback", address: "127.0.0.53:8080"},
		{name: "IPv6 loopback", address: "[::1]:0"},
		{name: "all interfaces are refused", address: ":8080", wantErr: "not an IP address"},
		{name: "unspecified IPv4 is refused", address: "0.0.0.0:8080", wantErr: "not a loopback address"},
		{name: "public address is refused", address: "198.51.100.7:8080", wantErr: "not a loopback address"},
		{name: "unspecified IPv6 is refused", address: "[::]:8080", wantErr: "not a loopback address"},
		// A name may resolve to anything.
		{name: "localhost by name is refused", address: "localhost:8080", wantErr: "not an IP address"},
		{name: "missing port is refused", address: "127.0.0.1", wantErr: "not host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewAPIServer(APIConfig{Address: tt.address, Handler: h})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("NewAPIServer(%q): %v", tt.address, err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("NewAPIServer(%q) error %v, want one containing %q", tt.address, err, tt.wantErr)
			}
		})
	}
	if _, err := NewAPIServer(APIConfig{Address: "127.0.0.1:0"}); err == nil {
		t.Error("NewAPIServer without handler succeeded")
	}
}

func TestAPIServerLifecycle(t *testing.T) {
	srv, err := NewAPIServer(APIConfig{Address: "127.0.0.1:0", Handler: http.NotFoundHandler(), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 1)
	go func() { errs <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-errs:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("not ready")
	}
	cancel()
	select {
	case err := <-errs:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
	for range 2 {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}
