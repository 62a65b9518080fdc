package acmedns

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/rs/zerolog"
)

func TestNewValidates(t *testing.T) {
	store := newTestStore(t, nil)
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // "" for success
	}{
		{name: "valid config", cfg: Config{Domain: "gw.example", Store: store}},
		{name: "trailing dot and upper case are fine", cfg: Config{Domain: "GW.Example.", Store: store}},
		{name: "empty domain is refused", cfg: Config{Store: store}, wantErr: "domain is empty"},
		{name: "single label is refused", cfg: Config{Domain: "localhost", Store: store}, wantErr: "two labels"},
		{name: "wildcard is refused", cfg: Config{Domain: "*.gw.example", Store: store}, wantErr: `holds "*"`},
		{name: "underscore is refused", cfg: Config{Domain: "g_w.example", Store: store}, wantErr: `holds "_"`},
		{name: "hyphen at label edge is refused", cfg: Config{Domain: "-gw.example", Store: store}, wantErr: "hyphen"},
		{name: "empty label is refused", cfg: Config{Domain: "gw..example", Store: store}, wantErr: "empty label"},
		// Only one trailing dot is dropped; a second one is an empty label.
		{name: "two trailing dots are refused", cfg: Config{Domain: "gw.example..", Store: store}, wantErr: "empty label"},
		{name: "long label is refused", cfg: Config{Domain: strings.Repeat("a", 64) + ".example", Store: store}, wantErr: "longer than 63"},
		{name: "long domain is refused", cfg: Config{Domain: strings.Repeat("abcdefghi.", 25) + "example", Store: store}, wantErr: "too long"},
		{name: "missing store is refused", cfg: Config{Domain: "gw.example"}, wantErr: "store is required"},
		{name: "address without port is refused", cfg: Config{Domain: "gw.example", Store: store, Address: "127.0.0.1"}, wantErr: "missing port"},
		{name: "tcp limits are accepted", cfg: Config{Domain: "gw.example", Store: store, MaxTCPConns: 10, MaxTCPConnsPerSource: 2}},
		{name: "negative tcp limit is refused", cfg: Config{Domain: "gw.example", Store: store, MaxTCPConns: -1}, wantErr: "max tcp connections -1 is negative"},
		{name: "negative tcp limit per source is refused", cfg: Config{Domain: "gw.example", Store: store, MaxTCPConnsPerSource: -1}, wantErr: "per source -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("New: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("New error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestServerLifecycle(t *testing.T) {
	newServer := func(t *testing.T, address string) *Server {
		t.Helper()
		srv, err := New(Config{Domain: testDomain, Address: address, Store: newTestStore(t, nil), Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	runAsync := func(ctx context.Context, srv *Server) <-chan error {
		errs := make(chan error, 1)
		go func() { errs <- srv.Run(ctx) }()
		return errs
	}

	t.Run("UDP and TCP share the port", func(t *testing.T) {
		srv := startServer(t, newTestStore(t, nil))
		for _, network := range []string{"udp", "tcp"} {
			resp := exchange(t, network, srv.Addr(), question(testZone, dns.TypeSOA))
			if resp.Rcode != dns.RcodeSuccess {
				t.Errorf("%s: rcode %s", network, dns.RcodeToString[resp.Rcode])
			}
		}
	})
	t.Run("ending the context stops Run", func(t *testing.T) {
		// An address no other test binds: see privateLoopback.
		srv := newServer(t, net.JoinHostPort(privateLoopback(), "0"))
		ctx, cancel := context.WithCancel(context.Background())
		errs := runAsync(ctx, srv)
		<-srv.Ready()
		addr := srv.Addr()
		cancel()
		if err := waitRun(t, errs); err != nil {
			t.Errorf("Run: %v", err)
		}
		// The port is free again.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("tcp port not released: %v", err)
		} else {
			l.Close()
		}
	})
	t.Run("Close stops Run and is idempotent", func(t *testing.T) {
		srv := newServer(t, "127.0.0.1:0")
		errs := runAsync(context.Background(), srv)
		<-srv.Ready()
		for range 2 {
			if err := srv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		}
		if err := waitRun(t, errs); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Run("Close before Run makes Run return at once", func(t *testing.T) {
		srv := newServer(t, "127.0.0.1:0")
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
		if err := waitRun(t, runAsync(context.Background(), srv)); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Run("a second Run fails", func(t *testing.T) {
		srv := newServer(t, "127.0.0.1:0")
		errs := runAsync(context.Background(), srv)
		<-srv.Ready()
		t.Cleanup(func() { srv.Close(); <-errs })
		if err := srv.Run(context.Background()); err == nil {
			t.Error("second Run succeeded")
		}
	})
	t.Run("a taken TCP port fails Run", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		srv := newServer(t, l.Addr().String())
		err = waitRun(t, runAsync(context.Background(), srv))
		if err == nil || !strings.Contains(err.Error(), "listening on tcp") {
			t.Errorf("Run error %v, want a tcp listen error", err)
		}
		select {
		case <-srv.Ready():
			t.Error("Ready closed though Run failed")
		default:
		}
		if err := srv.Close(); err != nil {
			t.Errorf("Close after failed Run: %v", err)
		}
	})
}

// TestListen guards that UDP and TCP end up on one port, which the NS
// delegation and clients falling back to TCP rely on.
func TestListen(t *testing.T) {
	pc, l, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close(); l.Close() })
	udpPort := pc.LocalAddr().(*net.UDPAddr).Port
	tcpPort := l.Addr().(*net.TCPAddr).Port
	if udpPort != tcpPort {
		t.Errorf("udp port %d, tcp port %d; want the same", udpPort, tcpPort)
	}
	// A fixed port is not retried elsewhere.
	if pc2, l2, err := listen("127.0.0.1:" + strconv.Itoa(tcpPort)); err == nil {
		pc2.Close()
		l2.Close()
		t.Error("listen on a taken port succeeded")
	}
}
