// Command gatewayctl calls the gateway module over zbus, the way other node
// modules do through the generated stub. It is for operators and for trying
// a local node by hand.
//
//	gatewayctl [--broker URL] set-name WLID PREFIX BACKEND... [--passthrough]
//	gatewayctl [--broker URL] set-fqdn WLID FQDN BACKEND... [--passthrough]
//	gatewayctl [--broker URL] delete WLID
//	gatewayctl [--broker URL] list [--json]
//	gatewayctl [--metrics URL] metrics
//	gatewayctl [--broker URL] metrics --json
//
// list prints every route with its status (is Traefik serving it, its
// certificate, its backends' health) as a table, or with --json as the bus
// call returns it.
//
// metrics prints the byte totals of each workload as a table, read from the
// gateway's own Prometheus endpoint; with --json it makes the bus call
// Metrics, which hands out the last total of each workload deleted since
// the previous call: on a node, that is the billing's to take.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/threefoldtech/zbus"

	"github.com/threefoldtech/gateway/pkg/gateway"
	"github.com/threefoldtech/gateway/pkg/gateway/stubs"
)

func main() {
	broker := flag.String("broker", "unix:///var/run/redis.sock", "zbus broker")
	passthrough := flag.Bool("passthrough", false, "pass TLS through to the backends (set-name, set-fqdn)")
	timeout := flag.Duration("timeout", 30*time.Second, "how long to wait for the answer")
	metricsURL := flag.String("metrics", gateway.DefaultMetricsURL, "the gateway's Prometheus endpoint (metrics)")
	asJSON := flag.Bool("json", false, "list: print the routes as JSON; metrics: make the bus call and print its answer as JSON")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: gatewayctl [flags] set-name WLID PREFIX BACKEND... | set-fqdn WLID FQDN BACKEND... | delete WLID | list | metrics")
		flag.PrintDefaults()
	}
	args := parseInterspersed(flag.CommandLine, os.Args[1:])
	if len(args) == 1 && args[0] == "metrics" && !*asJSON {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		rows, err := scrapeWorkloadBytes(ctx, *metricsURL)
		if err == nil {
			err = printWorkloadBytes(os.Stdout, rows)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "gatewayctl:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*broker, *passthrough, *asJSON, *timeout, args); err != nil {
		fmt.Fprintln(os.Stderr, "gatewayctl:", err)
		os.Exit(1)
	}
}

func run(broker string, passthrough, asJSON bool, timeout time.Duration, args []string) (err error) {
	if len(args) == 0 {
		flag.Usage()
		return fmt.Errorf("no command")
	}
	client, err := zbus.NewRedisClient(broker)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", broker, err)
	}
	// The generated stub panics on transport errors.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("calling the gateway: %v", r)
		}
	}()
	gw := stubs.NewGatewayStub(client)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	switch cmd := args[0]; {
	case cmd == "set-name" && len(args) >= 4:
		fqdn, err := gw.SetNamedProxy(ctx, args[1], args[2], args[3:], passthrough)
		if err != nil {
			return err
		}
		fmt.Println(fqdn)
	case cmd == "set-fqdn" && len(args) >= 4:
		return gw.SetFQDNProxy(ctx, args[1], args[2], args[3:], passthrough)
	case cmd == "delete" && len(args) == 2:
		return gw.DeleteNamedProxy(ctx, args[1])
	case cmd == "list" && len(args) == 1:
		list, err := gw.List(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(list)
		}
		return printRoutes(os.Stdout, list, time.Now())
	case cmd == "metrics" && len(args) == 1:
		m, err := gw.Metrics(ctx)
		if err != nil {
			return err
		}
		return printJSON(m)
	default:
		flag.Usage()
		return fmt.Errorf("bad command line %q", args)
	}
	return nil
}

// parseInterspersed parses the flags of args wherever they are, before or
// after the command and its arguments, and returns the rest in order.
func parseInterspersed(fs *flag.FlagSet, args []string) []string {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			os.Exit(2) // the flag package said why
		}
		args = fs.Args()
		if len(args) == 0 {
			return rest
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
