package gateway

import "context"

// Contract2021 is the bus contract of zos in 2021, served as gateway@0.0.1
// and manager@0.0.1 (api.go's Gateway): four arguments per Set. It only
// turns its arguments into the module's requests.
type Contract2021 struct {
	// M is the module the calls go to.
	M *Module
}

var _ Gateway = Contract2021{}

// contract2021 names the contract in the records of the routes it sets.
const contract2021 = "2021"

// SetNamedProxy publishes backends at prefix.<gateway domain> and returns
// that name.
func (c Contract2021) SetNamedProxy(wlID string, prefix string, backends []string, TLSPassthrough bool) (string, error) {
	return c.M.SetRoute(context.Background(), RouteRequest{
		WorkloadID: wlID, Kind: KindName, Name: prefix, Backends: backends, TLSPassthrough: TLSPassthrough, Contract: contract2021,
	})
}

// SetFQDNProxy publishes backends at fqdn.
func (c Contract2021) SetFQDNProxy(wlID string, fqdn string, backends []string, TLSPassthrough bool) error {
	_, err := c.M.SetRoute(context.Background(), RouteRequest{
		WorkloadID: wlID, Kind: KindFQDN, FQDN: fqdn, Backends: backends, TLSPassthrough: TLSPassthrough, Contract: contract2021,
	})
	return err
}

// DeleteNamedProxy removes the route of wlID, whatever its kind.
func (c Contract2021) DeleteNamedProxy(wlID string) error {
	return c.M.DeleteRoute(context.Background(), wlID)
}

// Metrics returns the bytes served per workload.
func (c Contract2021) Metrics() (GatewayMetrics, error) {
	return c.M.Metrics(context.Background())
}

// List returns every route the module holds.
func (c Contract2021) List() ([]Proxy, error) {
	return c.M.List(context.Background())
}
