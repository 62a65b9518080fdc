package traefik

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAPIRouterServed(t *testing.T) {
	tests := []struct {
		name     string
		router   string
		tcp      bool
		status   int
		body     string
		wantPath string // as sent, escaped
		want     bool
		wantErr  bool
	}{
		{name: "enabled http router", router: "wl-1", status: 200, body: `{"name":"wl-1@file","status":"enabled"}`,
			wantPath: "/api/http/routers/wl-1@file", want: true},
		{name: "enabled tcp router", router: "wl-1", tcp: true, status: 200, body: `{"status":"enabled"}`,
			wantPath: "/api/tcp/routers/wl-1@file", want: true},
		// A router Traefik could not build is known to the API, not served.
		{name: "disabled router", router: "wl-1", status: 200, body: `{"status":"disabled","error":["bad rule"]}`,
			wantPath: "/api/http/routers/wl-1@file"},
		{name: "router with warnings", router: "wl-1", status: 200, body: `{"status":"warning"}`,
			wantPath: "/api/http/routers/wl-1@file"},
		{name: "unknown router", router: "wl-1", status: 404, body: `{"message":"router not found: wl-1@file"}`,
			wantPath: "/api/http/routers/wl-1@file"},
		// One path segment whatever the name holds: Traefik unescapes it.
		{name: "name escaped", router: "a/b?c d", status: 404, wantPath: "/api/http/routers/a%2Fb%3Fc%20d@file"},
		{name: "server error", router: "wl-1", status: 500, wantPath: "/api/http/routers/wl-1@file", wantErr: true},
		{name: "not json", router: "wl-1", status: 200, body: `<html>`, wantPath: "/api/http/routers/wl-1@file", wantErr: true},
		{name: "no status", router: "wl-1", status: 200, body: `{}`, wantPath: "/api/http/routers/wl-1@file", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotPath string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotPath = r.URL.EscapedPath()
				if r.Method != http.MethodGet {
					t.Errorf("method %s, want GET", r.Method)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			t.Cleanup(srv.Close)
			api := API{Base: srv.URL + "/api", Client: srv.Client()}
			got, err := api.RouterServed(context.Background(), tt.router, tt.tcp)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("RouterServed = %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), tt.router) {
				t.Errorf("error %q does not name the router", err)
			}
			if gotPath != tt.wantPath {
				t.Errorf("asked %s, want %s", gotPath, tt.wantPath)
			}
		})
	}
}

func TestAPIRouterServedUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	base := APIURL(srv.Listener.Addr().String())
	srv.Close()
	if got, err := (API{Base: base}).RouterServed(context.Background(), "wl-1", false); err == nil || got {
		t.Errorf("RouterServed of a closed port = %v, %v; want an error", got, err)
	}

	// ctx bounds the call.
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hang) })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := (API{Base: slow.URL + "/api/"}).RouterServed(ctx, "wl-1", false); err == nil {
		t.Error("RouterServed returned without error after its context ended")
	}
}

func TestAPIURL(t *testing.T) {
	if got := APIURL("127.0.0.1:8082"); got != "http://127.0.0.1:8082/api" {
		t.Errorf("APIURL = %q", got)
	}
}
