package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestWorkloadBytesTable(t *testing.T) {
	scrape := `# TYPE gateway_workload_bytes_total counter
gateway_workload_bytes_total{direction="request",workload="b"} 1536
gateway_workload_bytes_total{direction="response",workload="b"} 10485760
gateway_workload_bytes_total{direction="request",workload="a"} 12
gateway_workload_bytes_total{direction="response",workload="a"} 0
# TYPE gateway_routes gauge
gateway_routes{kind="name",passthrough="false"} 2
`
	rows, err := parseWorkloadBytes(strings.NewReader(scrape))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printWorkloadBytes(&out, rows); err != nil {
		t.Fatal(err)
	}
	want := `
WORKLOAD           REQUEST             RESPONSE
a                12 (12 B)              0 (0 B)
b           1536 (1.5 KiB)  10485760 (10.0 MiB)
total of 2  1548 (1.5 KiB)  10485760 (10.0 MiB)
`
	if got := out.String(); got != strings.TrimPrefix(want, "\n") {
		t.Errorf("table:\n%s\nwant:\n%s", got, strings.TrimPrefix(want, "\n"))
	}
}
