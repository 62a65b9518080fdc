package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// metricWorkloadBytes is the gateway's per-workload byte counter, labelled
// workload and direction (request, response).
const metricWorkloadBytes = "gateway_workload_bytes_total"

// maxScrapeBytes bounds a scrape: 10,000 workloads are about 2 MB.
const maxScrapeBytes = 64 << 20

// workloadBytes is one row of the metrics table.
type workloadBytes struct {
	id                string
	request, response uint64
}

// scrapeWorkloadBytes reads the gateway's own Prometheus endpoint. It is not
// the bus's Metrics call: that one hands each deleted workload's total out
// one last time, to the node's billing, and an operator looking must not
// take it.
func scrapeWorkloadBytes(ctx context.Context, url string) ([]workloadBytes, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reading the gateway's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("reading the gateway's metrics at %s: %s", url, resp.Status)
	}
	return parseWorkloadBytes(io.LimitReader(resp.Body, maxScrapeBytes))
}

// parseWorkloadBytes returns the rows of a scrape, sorted by workload.
func parseWorkloadBytes(r io.Reader) ([]workloadBytes, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing the gateway's metrics: %w", err)
	}
	rows := map[string]*workloadBytes{}
	if f := families[metricWorkloadBytes]; f != nil {
		for _, m := range f.GetMetric() {
			var id, dir string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "workload":
					id = l.GetValue()
				case "direction":
					dir = l.GetValue()
				}
			}
			row := rows[id]
			if row == nil {
				row = &workloadBytes{id: id}
				rows[id] = row
			}
			v := uint64(m.GetCounter().GetValue())
			switch dir {
			case "request":
				row.request = v
			case "response":
				row.response = v
			}
		}
	}
	out := make([]workloadBytes, 0, len(rows))
	for _, r := range rows {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b workloadBytes) int { return strings.Compare(a.id, b.id) })
	return out, nil
}

// printWorkloadBytes writes rows as a table: the workload on the left, each
// direction's exact byte count and readable size on the right.
func printWorkloadBytes(w io.Writer, rows []workloadBytes) error {
	cell := func(n uint64) string { return fmt.Sprintf("%d (%s)", n, humanBytes(n)) }
	var req, resp uint64
	table := [][3]string{{"WORKLOAD", "REQUEST", "RESPONSE"}}
	for _, r := range rows {
		table = append(table, [3]string{r.id, cell(r.request), cell(r.response)})
		req += r.request
		resp += r.response
	}
	table = append(table, [3]string{"total of " + strconv.Itoa(len(rows)), cell(req), cell(resp)})
	var width [3]int
	for _, row := range table {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	var b strings.Builder
	for _, row := range table {
		fmt.Fprintf(&b, "%-*s  %*s  %*s\n", width[0], row[0], width[1], row[1], width[2], row[2])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// humanBytes writes n in binary units, "1.5 MiB".
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
