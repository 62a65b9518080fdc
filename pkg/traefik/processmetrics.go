package traefik

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the supervision of Traefik, on ProcessConfig.Registry.
const (
	// metricStarts counts the Traefiks the supervisor took charge of,
	// labelled how: started or adopted.
	metricStarts = "gateway_traefik_starts_total"
	// metricExits counts the Traefiks it saw exit, labelled reason:
	// stopped, replaced or crashed.
	metricExits = "gateway_traefik_exits_total"
)

// startHow is the value of the label how of metricStarts.
type startHow int

const (
	// startStarted: a Traefik started as our child.
	startStarted startHow = iota
	// startAdopted: a Traefik left running by an earlier gateway, adopted.
	startAdopted
	numStartHow
)

var startHowNames = [numStartHow]string{startStarted: "started", startAdopted: "adopted"}

// exitReason is the value of the label reason of metricExits.
type exitReason int

const (
	// exitStopped: Stop ended it.
	exitStopped exitReason = iota
	// exitReplaced: the supervisor ended it to run another Traefik (the
	// static configuration, Env or binary changed; a stray running our
	// configuration; one whose pidfile could not be written).
	exitReplaced
	// exitCrashed: it exited without the supervisor asking, on its own or
	// killed by someone else.
	exitCrashed
	numExitReason
)

var exitReasonNames = [numExitReason]string{exitStopped: "stopped", exitReplaced: "replaced", exitCrashed: "crashed"}

// processMetrics are the counters of one Process, every series created up
// front.
type processMetrics struct {
	starts [numStartHow]prometheus.Counter
	exits  [numExitReason]prometheus.Counter
}

// newProcessMetrics creates the counters and registers them on reg, unless
// reg is nil.
func newProcessMetrics(reg prometheus.Registerer) (*processMetrics, error) {
	starts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricStarts,
		Help: "Traefik processes the gateway took charge of: started as its child, or adopted from an earlier gateway.",
	}, []string{"how"})
	exits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: metricExits,
		Help: "Traefik processes seen to exit: stopped (by Stop), replaced (by the supervisor, to run another), crashed (without the supervisor asking).",
	}, []string{"reason"})
	m := &processMetrics{}
	for i, name := range startHowNames {
		m.starts[i] = starts.WithLabelValues(name)
	}
	for i, name := range exitReasonNames {
		m.exits[i] = exits.WithLabelValues(name)
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range []prometheus.Collector{starts, exits} {
		if err := reg.Register(c); err != nil {
			if i > 0 {
				reg.Unregister(starts)
			}
			return nil, fmt.Errorf("registering traefik process metrics: %w", err)
		}
	}
	return m, nil
}
