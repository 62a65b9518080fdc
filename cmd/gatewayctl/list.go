package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/threefoldtech/gateway/pkg/gateway"
)

// printRoutes writes routes as a table: one line per route, with its status
// as the gateway last read it from Traefik.
func printRoutes(w io.Writer, routes []gateway.Proxy, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WLID\tFQDN\tKIND\tLIVE\tCERTIFICATE\tBACKENDS\tPROBLEMS")
	for _, p := range routes {
		kind := string(p.Kind)
		if p.TLSPassthrough {
			kind += ", passthrough"
		}
		live, cert, problems := "?", "-", "-"
		backends := strings.Join(p.Backends, " ")
		if st := p.Status; st != nil {
			switch {
			case st.CheckedAt.IsZero():
				// Only the certificate's side is known yet.
			case st.Live:
				live = "yes"
			default:
				live = "no"
			}
			switch c := st.Certificate; {
			case p.TLSPassthrough:
				cert = "backend's own"
			case c == nil && st.ACME != nil && st.ACME.Failures > 0:
				cert = fmt.Sprintf("failing (%d in a row)", st.ACME.Failures)
				if !st.ACME.NextAttempt.IsZero() {
					cert += ", next try " + st.ACME.NextAttempt.Local().Format(time.DateTime)
				}
			case c == nil:
				cert = "none yet"
			default:
				cert = fmt.Sprintf("%s, expires %s", c.Issuer, c.NotAfter.Format(time.DateOnly))
				if now.After(c.NotAfter) {
					cert = fmt.Sprintf("%s, EXPIRED %s", c.Issuer, c.NotAfter.Format(time.DateOnly))
				}
			}
			if len(st.Backends) > 0 {
				var parts []string
				for _, b := range slices.Sorted(maps.Keys(st.Backends)) {
					parts = append(parts, b+" "+st.Backends[b])
				}
				backends = strings.Join(parts, ", ")
			}
			ps := slices.Clone(st.Problems)
			if a := st.ACME; a != nil && a.LastError != "" {
				ps = append(ps, "certificate: "+a.LastError)
			}
			if len(ps) > 0 {
				problems = strings.Join(ps, "; ")
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.WorkloadID, p.FQDN, kind, live, cert, backends, problems)
	}
	return tw.Flush()
}
