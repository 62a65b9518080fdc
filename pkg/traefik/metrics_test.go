package traefik

import (
	"context"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// traefikScrape is hand-written in Traefik v3.6's exposition format: several
// label sets per service, services of other providers (@internal ones appear
// with metrics.addInternals, which the gateway leaves off), and other
// counters of the same name pattern.
const traefikScrape = `# HELP traefik_entrypoint_requests_bytes_total The total size of requests in bytes handled by an entrypoint, partitioned by status code, protocol, and method.
# TYPE traefik_entrypoint_requests_bytes_total counter
traefik_entrypoint_requests_bytes_total{code="200",entrypoint="web",method="GET",protocol="http"} 777
# HELP traefik_service_requests_bytes_total The total size of requests in bytes received by a service, partitioned by status code, protocol, and method.
# TYPE traefik_service_requests_bytes_total counter
traefik_service_requests_bytes_total{code="200",method="GET",protocol="http",service="app@file"} 0
traefik_service_requests_bytes_total{code="200",method="POST",protocol="http",service="app@file"} 1500
traefik_service_requests_bytes_total{code="404",method="POST",protocol="http",service="app@file"} 20
traefik_service_requests_bytes_total{code="101",method="GET",protocol="websocket",service="chat@file"} 0
traefik_service_requests_bytes_total{code="200",method="GET",protocol="http",service="ping@internal"} 0
traefik_service_requests_bytes_total{code="200",method="GET",protocol="http",service="app@docker"} 99
# HELP traefik_service_responses_bytes_total The total size of responses in bytes returned by a service, partitioned by status code, protocol, and method.
# TYPE traefik_service_responses_bytes_total counter
traefik_service_responses_bytes_total{code="200",method="GET",protocol="http",service="app@file"} 3000
traefik_service_responses_bytes_total{code="200",method="POST",protocol="http",service="app@file"} 1.5e+06
traefik_service_responses_bytes_total{code="404",method="POST",protocol="http",service="app@file"} 9
traefik_service_responses_bytes_total{code="101",method="GET",protocol="websocket",service="chat@file"} 4096
traefik_service_responses_bytes_total{code="200",method="GET",protocol="http",service="ping@internal"} 2
traefik_service_responses_bytes_total{code="200",method="GET",protocol="http",service="prometheus@internal"} 123456
# HELP traefik_service_requests_total How many HTTP requests processed on a service, partitioned by status code, protocol, and method.
# TYPE traefik_service_requests_total counter
traefik_service_requests_total{code="200",method="GET",protocol="http",service="app@file"} 3
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 42
`

func TestParseServiceBytes(t *testing.T) {
	got, err := ParseServiceBytes(strings.NewReader(traefikScrape))
	if err != nil {
		t.Fatalf("ParseServiceBytes: %v", err)
	}
	wantReq := map[string]float64{"app": 1520, "chat": 0}
	wantResp := map[string]float64{"app": 1503009, "chat": 4096}
	if !maps.Equal(got.Requests, wantReq) {
		t.Errorf("Requests = %v, want %v", got.Requests, wantReq)
	}
	if !maps.Equal(got.Responses, wantResp) {
		t.Errorf("Responses = %v, want %v", got.Responses, wantResp)
	}
}

// TestParseServiceBytesCapture reads a whole scrape of the real Traefik
// v3.6.12, captured by TestTraefikCountsServiceBytes with -update.
func TestParseServiceBytesCapture(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "metrics.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ParseServiceBytes(f)
	if err != nil {
		t.Fatalf("ParseServiceBytes: %v", err)
	}
	if !maps.Equal(got.Requests, captureRequests) {
		t.Errorf("Requests = %v, want %v", got.Requests, captureRequests)
	}
	if !maps.Equal(got.Responses, captureResponses) {
		t.Errorf("Responses = %v, want %v", got.Responses, captureResponses)
	}
}

func TestParseServiceBytesEmpty(t *testing.T) {
	tests := []struct {
		name, scrape string
	}{
		{"empty scrape", ""},
		// A fresh Traefik has no service counters until a request went
		// through.
		{"no service counters", "# HELP go_goroutines Number.\n# TYPE go_goroutines gauge\ngo_goroutines 7\n"},
		{"only internal services", `# TYPE traefik_service_requests_bytes_total counter
traefik_service_requests_bytes_total{code="200",method="GET",protocol="http",service="ping@internal"} 0
`},
		// "@file" alone names no service of ours.
		{"empty service name", `# TYPE traefik_service_requests_bytes_total counter
traefik_service_requests_bytes_total{code="200",method="GET",protocol="http",service="@file"} 10
traefik_service_requests_bytes_total{code="200",method="GET",protocol="http"} 10
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseServiceBytes(strings.NewReader(tt.scrape))
			if err != nil {
				t.Fatalf("ParseServiceBytes: %v", err)
			}
			if got.Requests == nil || got.Responses == nil {
				t.Fatalf("nil maps: %+v", got)
			}
			if len(got.Requests) != 0 || len(got.Responses) != 0 {
				t.Errorf("got %+v, want empty maps", got)
			}
		})
	}
}

func TestParseServiceBytesRejects(t *testing.T) {
	const typ = "# TYPE traefik_service_responses_bytes_total counter\n"
	tests := []struct {
		name, scrape string
	}{
		{"unterminated label set", typ + `traefik_service_responses_bytes_total{service="a@file" 1` + "\n"},
		{"value not a number", typ + `traefik_service_responses_bytes_total{service="a@file"} lots` + "\n"},
		{"truncated line", typ + `traefik_service_responses_bytes_total{service="a@fi`},
		{"unknown type", "# TYPE traefik_service_responses_bytes_total countr\n"},
		// Summing a repeated series would count its bytes twice.
		{"repeated series", typ + `traefik_service_responses_bytes_total{code="200",service="a@file"} 1
traefik_service_responses_bytes_total{code="200",service="a@file"} 1
`},
		{"negative counter", typ + `traefik_service_responses_bytes_total{service="a@file"} -1` + "\n"},
		{"NaN counter", typ + `traefik_service_responses_bytes_total{service="a@file"} NaN` + "\n"},
		{"infinite counter", typ + `traefik_service_responses_bytes_total{service="a@file"} +Inf` + "\n"},
		{"not a counter", "# TYPE traefik_service_responses_bytes_total gauge\n" +
			`traefik_service_responses_bytes_total{service="a@file"} 1` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseServiceBytes(strings.NewReader(tt.scrape))
			if err == nil {
				t.Fatalf("ParseServiceBytes accepted it: %+v", got)
			}
		})
	}
}

func TestScrapeServiceBytes(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(traefikScrape))
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "oops", http.StatusInternalServerError)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	got, err := ScrapeServiceBytes(context.Background(), srv.Client(), srv.URL+"/metrics")
	if err != nil {
		t.Fatalf("ScrapeServiceBytes: %v", err)
	}
	if got.Responses["app"] != 1503009 {
		t.Errorf("Responses[app] = %v, want 1503009", got.Responses["app"])
	}

	_, err = ScrapeServiceBytes(context.Background(), srv.Client(), srv.URL+"/broken")
	if err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("error %v does not name the status 500", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ScrapeServiceBytes(ctx, srv.Client(), srv.URL+"/metrics"); err == nil {
		t.Errorf("ScrapeServiceBytes with a cancelled context succeeded")
	}
}

func FuzzParseServiceBytes(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "metrics.txt")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(traefikScrape))
	f.Add([]byte(""))
	f.Add([]byte("# TYPE traefik_service_responses_bytes_total counter\ntraefik_service_responses_bytes_total{service=\"a@file\"} 1e308\ntraefik_service_responses_bytes_total{service=\"a@file\",code=\"1\"} 1e308\n"))
	f.Add([]byte("traefik_service_requests_bytes_total{service=\"\\\"@file\\n\"} 1 1700000000000\n"))
	f.Add([]byte("{\"traefik_service_requests_bytes_total\",service=\"x@file\"} 3\n"))
	f.Add([]byte("# TYPE traefik_service_requests_bytes_total histogram\ntraefik_service_requests_bytes_total_bucket{le=\"+Inf\"} 1\n"))
	f.Add([]byte("\x00\xff{}}\"\n# HELP\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseServiceBytes(strings.NewReader(string(b)))
		if err != nil {
			return
		}
		for _, m := range []map[string]float64{got.Requests, got.Responses} {
			if m == nil {
				t.Fatal("nil map without error")
			}
			for k, v := range m {
				if k == "" || v < 0 || v != v {
					t.Fatalf("service %q has %v bytes", k, v)
				}
			}
		}
	})
}

// The byte counts in testdata/metrics.txt: app took 3 GET of 1000 bytes, a
// POST of 500 bytes answered with 1000 and a POST of 20 bytes answered with a
// 19-byte 404; probe answered one poll with "ok".
var (
	captureRequests  = map[string]float64{"app": 520, "probe": 0}
	captureResponses = map[string]float64{"app": 4019, "probe": 2}
)
