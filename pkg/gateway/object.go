package gateway

import (
	"context"
	"fmt"

	"github.com/threefoldtech/gateway/pkg/gateway/contracts/zosbase"
)

// Object is the one object the module serves on zbus, as gateway@0.0.1 and
// manager@0.0.1. zos kept the name manager@0.0.1 and changed the
// signatures twice, and zbus finds a method by its name alone: so each method
// takes its arguments raw (zbus then accepts a call of any length), tells
// the generation of the call from their number and types, decodes them, and
// hands them to that generation's adapter:
//
//	SetNamedProxy(wlID, prefix string, backends, TLSPassthrough)          2021 (Contract2021)
//	SetNamedProxy(wlID, prefix string, backends, TLSPassthrough, twinID)  2022 (Contract2022)
//	SetNamedProxy(wlID, config GatewayNameProxy)                          zosbase (ContractZosbase)
//	SetFQDNProxy(wlID, fqdn string, backends, TLSPassthrough)             2021 and 2022
//	SetFQDNProxy(wlID, config GatewayFQDNProxy)                           zosbase
//
// A call that fits none of them is answered with an error naming the
// argument and what was expected; zbus would answer a call it rejects itself
// with no response, on which generated stubs panic.
type Object struct {
	// M is the module the calls go to.
	M *Module
}

// Adapter is what Serve and Register serve: the Module itself or any of its
// contract adapters (contract*.go). Whichever is given, the module behind it
// is served as Object, which answers every contract.
type Adapter interface {
	module() *Module
}

func (m *Module) module() *Module         { return m }
func (c Contract2021) module() *Module    { return c.M }
func (c Contract2022) module() *Module    { return c.M }
func (c ContractZosbase) module() *Module { return c.M }
func (o Object) module() *Module          { return o.M }

// Names of the arguments and types, as errors name them.
const (
	argWlID        = "wlID"
	argPrefix      = "prefix"
	argFQDN        = "fqdn"
	argBackends    = "backends"
	argPassthrough = "TLSPassthrough"
	argTwinID      = "twinID"
	argConfig      = "config"
	typeNameProxy  = "GatewayNameProxy"
	typeFQDNProxy  = "GatewayFQDNProxy"
)

// SetNamedProxy publishes backends at a name under the gateway domain and
// returns the domain, in any of the three forms.
func (o Object) SetNamedProxy(args ...Arg) (string, error) {
	c := call{method: "SetNamedProxy", args: args}
	const forms = "2 arguments (wlID, config), 4 (wlID, prefix, backends, TLSPassthrough) or 5 (wlID, prefix, backends, TLSPassthrough, twinID)"
	if len(args) < 2 {
		return "", c.countError(forms)
	}
	wlID, err := c.string(0, argWlID)
	if err != nil {
		return "", err
	}
	switch k := args[1].kind(); k {
	case kindString:
		if len(args) != 4 && len(args) != 5 {
			return "", c.formError(argPrefix, "4 arguments (wlID, prefix, backends, TLSPassthrough) or 5 (wlID, prefix, backends, TLSPassthrough, twinID)")
		}
		prefix, backends, passthrough, err := c.fourArgs(argPrefix)
		if err != nil {
			return "", err
		}
		if len(args) == 4 {
			return Contract2021{M: o.M}.SetNamedProxy(wlID, prefix, backends, passthrough)
		}
		twinID, err := c.uint32(4, argTwinID)
		if err != nil {
			return "", err
		}
		return Contract2022{M: o.M}.SetNamedProxy(wlID, prefix, backends, passthrough, twinID)
	case kindMap:
		if len(args) != 2 {
			return "", c.formError(typeNameProxy+" "+argConfig, "2 arguments (wlID, config)")
		}
		var config zosbase.GatewayNameProxy
		if err := c.config(1, typeNameProxy, &config.GatewayBase, "Name", &config.Name); err != nil {
			return "", err
		}
		return ContractZosbase{M: o.M}.SetNamedProxy(wlID, config)
	default:
		return "", c.argError(1, "", "expected a string prefix or a %s config, got %s", typeNameProxy, k)
	}
}

// SetFQDNProxy publishes backends at a domain the caller owns, in either
// form.
func (o Object) SetFQDNProxy(args ...Arg) error {
	c := call{method: "SetFQDNProxy", args: args}
	const forms = "2 arguments (wlID, config) or 4 (wlID, fqdn, backends, TLSPassthrough)"
	if len(args) < 2 {
		return c.countError(forms)
	}
	wlID, err := c.string(0, argWlID)
	if err != nil {
		return err
	}
	switch k := args[1].kind(); k {
	case kindString:
		if len(args) != 4 {
			return c.formError(argFQDN, "4 arguments (wlID, fqdn, backends, TLSPassthrough)")
		}
		fqdn, backends, passthrough, err := c.fourArgs(argFQDN)
		if err != nil {
			return err
		}
		// The 2021 and 2022 forms are one: the route records 2021.
		return Contract2021{M: o.M}.SetFQDNProxy(wlID, fqdn, backends, passthrough)
	case kindMap:
		if len(args) != 2 {
			return c.formError(typeFQDNProxy+" "+argConfig, "2 arguments (wlID, config)")
		}
		var config zosbase.GatewayFQDNProxy
		if err := c.config(1, typeFQDNProxy, &config.GatewayBase, "FQDN", &config.FQDN); err != nil {
			return err
		}
		return ContractZosbase{M: o.M}.SetFQDNProxy(wlID, config)
	default:
		return c.argError(1, "", "expected a string fqdn or a %s config, got %s", typeFQDNProxy, k)
	}
}

// DeleteNamedProxy removes the route of wlID, whatever its kind: the same
// in every generation.
func (o Object) DeleteNamedProxy(args ...Arg) error {
	c := call{method: "DeleteNamedProxy", args: args}
	if len(args) != 1 {
		return c.countError("1 argument (wlID)")
	}
	wlID, err := c.string(0, argWlID)
	if err != nil {
		return err
	}
	return o.M.DeleteRoute(context.Background(), wlID)
}

// Metrics returns the bytes served per workload, under the names of every
// generation (GatewayMetrics): the call is the same in all of them.
func (o Object) Metrics(args ...Arg) (GatewayMetrics, error) {
	c := call{method: "Metrics", args: args}
	if len(args) != 0 {
		return GatewayMetrics{}, c.countError("no arguments")
	}
	return o.M.Metrics(context.Background())
}

// List returns every route the module holds (the gateway's own call).
func (o Object) List(args ...Arg) ([]Proxy, error) {
	c := call{method: "List", args: args}
	if len(args) != 0 {
		return nil, c.countError("no arguments")
	}
	return o.M.List(context.Background())
}

// call is the arguments of one call, decoded with errors that name them.
type call struct {
	method string
	args   []Arg
}

// countError refuses a call whose number of arguments fits no form.
func (c call) countError(forms string) error {
	return fmt.Errorf("%s takes %s, got %d", c.method, forms, len(c.args))
}

// formError refuses a call whose second argument chose a form that takes
// another number of arguments.
func (c call) formError(second, forms string) error {
	return fmt.Errorf("%s with a %s as argument 2 takes %s, got %d", c.method, second, forms, len(c.args))
}

// argError refuses argument i (from 0), named name.
func (c call) argError(i int, name, format string, a ...any) error {
	at := fmt.Sprintf("%s argument %d", c.method, i+1)
	if name != "" {
		at += " (" + name + ")"
	}
	return fmt.Errorf("%s: %s", at, fmt.Sprintf(format, a...))
}

func (c call) string(i int, name string) (string, error) {
	s, err := c.args[i].decodeString()
	if err != nil {
		return "", c.argError(i, name, "%s", err)
	}
	return s, nil
}

func (c call) uint32(i int, name string) (uint32, error) {
	n, err := c.args[i].decodeUint32()
	if err != nil {
		return 0, c.argError(i, name, "%s", err)
	}
	return n, nil
}

// fourArgs decodes the arguments 2 to 4 of the 2021 and 2022 forms: the
// domain (named domain), the backends and TLSPassthrough.
func (c call) fourArgs(domain string) (string, []string, bool, error) {
	d, err := c.string(1, domain)
	if err != nil {
		return "", nil, false, err
	}
	backends, err := c.args[2].decodeStrings()
	if err != nil {
		return "", nil, false, c.argError(2, argBackends, "%s", err)
	}
	passthrough, err := c.args[3].decodeBool()
	if err != nil {
		return "", nil, false, c.argError(3, argPassthrough, "%s", err)
	}
	return d, backends, passthrough, nil
}

// config decodes argument i, a zosbase config of type typ: its GatewayBase
// into base and its domain field, named domainField, into domain.
func (c call) config(i int, typ string, base *zosbase.GatewayBase, domainField string, domain *string) error {
	fields, err := c.args[i].decodeFields(typ, "TLSPassthrough", "Backends", "Network", domainField)
	if err != nil {
		return c.argError(i, argConfig, "%s", err)
	}
	fieldErr := func(field string, err error) error {
		return c.argError(i, argConfig, "%s.%s: %s", typ, field, err)
	}
	if a, ok := fields["TLSPassthrough"]; ok {
		if base.TLSPassthrough, err = a.decodeBool(); err != nil {
			return fieldErr("TLSPassthrough", err)
		}
	}
	if a, ok := fields["Backends"]; ok {
		backends, err := a.decodeStrings()
		if err != nil {
			return fieldErr("Backends", err)
		}
		for _, b := range backends {
			base.Backends = append(base.Backends, zosbase.Backend(b))
		}
	}
	if a, ok := fields["Network"]; ok && a.kind() != kindNil {
		network, err := a.decodeString()
		if err != nil {
			return fieldErr("Network", fmt.Errorf("%w (or nil)", err))
		}
		name := zosbase.Name(network)
		base.Network = &name
	}
	if a, ok := fields[domainField]; ok {
		if *domain, err = a.decodeString(); err != nil {
			return fieldErr(domainField, err)
		}
	}
	return nil
}
