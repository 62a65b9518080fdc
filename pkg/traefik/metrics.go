package traefik

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Traefik's per-service byte counters (metrics.prometheus.addServicesLabels),
// labelled code, method, protocol and service.
const (
	metricServiceRequestsBytes  = "traefik_service_requests_bytes_total"
	metricServiceResponsesBytes = "traefik_service_responses_bytes_total"
	labelService                = "service"
)

// maxScrapeBytes bounds a scrape; Traefik's for thousands of services is a few
// megabytes.
const maxScrapeBytes = 64 << 20

// ServiceBytes are the bytes Traefik counted per route since Traefik
// started, keyed by route ID (Routes names services after their route); each
// count is summed over every other label (code, method, protocol).
type ServiceBytes struct {
	// Requests are the bytes of request bodies received from clients.
	Requests map[string]float64
	// Responses are the bytes of response bodies sent to clients.
	Responses map[string]float64
}

// ParseServiceBytes reads a Prometheus text-format scrape of Traefik and
// returns its per-service byte counters. Services of other providers
// (@internal and the like) are left out. A scrape without the counters (no
// request went through yet) gives empty maps.
func ParseServiceBytes(r io.Reader) (ServiceBytes, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return ServiceBytes{}, fmt.Errorf("parsing metrics: %w", err)
	}
	requests, err := sumByFileService(families[metricServiceRequestsBytes])
	if err != nil {
		return ServiceBytes{}, err
	}
	responses, err := sumByFileService(families[metricServiceResponsesBytes])
	if err != nil {
		return ServiceBytes{}, err
	}
	return ServiceBytes{Requests: requests, Responses: responses}, nil
}

// sumByFileService sums the samples of a counter family per route.
func sumByFileService(mf *dto.MetricFamily) (map[string]float64, error) {
	sums := make(map[string]float64)
	if mf == nil {
		return sums, nil
	}
	name := mf.GetName()
	seen := make(map[string]struct{}, len(mf.GetMetric()))
	for _, m := range mf.GetMetric() {
		var value float64
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			value = m.GetCounter().GetValue()
		case dto.MetricType_UNTYPED:
			value = m.GetUntyped().GetValue()
		default:
			return nil, fmt.Errorf("metric %s: type %s, want counter", name, mf.GetType())
		}

		service := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == labelService {
				service = l.GetValue()
			}
		}
		// The parser keeps repeated series; summing them would count
		// their bytes twice.
		sig := seriesSignature(m)
		if _, dup := seen[sig]; dup {
			return nil, fmt.Errorf("metric %s: series {%s} appears twice", name, sig)
		}
		seen[sig] = struct{}{}

		if math.IsNaN(value) || math.IsInf(value, 0) || value < 0 {
			return nil, fmt.Errorf("metric %s of service %q: value %v is not a byte count", name, service, value)
		}
		id, ok := routeOfService(service)
		if !ok {
			continue
		}
		sums[id] += value
	}
	return sums, nil
}

// seriesSignature is the sorted label set of m, as text.
func seriesSignature(m *dto.Metric) string {
	pairs := make([]string, 0, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		pairs = append(pairs, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(pairs)
	return strings.Join(pairs, ",")
}

// ScrapeServiceBytes fetches url (Traefik's /metrics) and parses its
// per-service byte counters.
func ScrapeServiceBytes(ctx context.Context, client *http.Client, url string) (ServiceBytes, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ServiceBytes{}, fmt.Errorf("scraping %q: %w", url, err)
	}
	// The text format is the one ParseServiceBytes reads; Traefik would
	// otherwise be free to answer in another one.
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return ServiceBytes{}, fmt.Errorf("scraping %q: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return ServiceBytes{}, fmt.Errorf("scraping %q: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxScrapeBytes+1))
	if err != nil {
		return ServiceBytes{}, fmt.Errorf("scraping %q: reading body: %w", url, err)
	}
	if len(body) > maxScrapeBytes {
		return ServiceBytes{}, fmt.Errorf("scraping %q: body larger than %d bytes", url, maxScrapeBytes)
	}
	sb, err := ParseServiceBytes(bytes.NewReader(body))
	if err != nil {
		return ServiceBytes{}, fmt.Errorf("scraping %q: %w", url, err)
	}
	return sb, nil
}

// MetricsURL is where Traefik serves its Prometheus metrics when its metrics
// entry point listens on address (StaticOptions.MetricsAddress).
func MetricsURL(address string) string {
	return "http://" + address + "/metrics"
}
