//go:build integration

package integration

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/threefoldtech/zbus"
)

// noop is an object whose method does nothing: the cost of zbus itself.
type noop struct{}

func (noop) Nothing(s string) error { return nil }

// BenchmarkZbus compares a SetNamedProxy call through zbus with a no-op call
// on the same broker. The ratio of the two is the cost of the module's own
// work: validation, rendering, the synced write.
func BenchmarkZbus(b *testing.B) {
	n := startNode(b, defaults())
	server, err := zbus.NewRedisServer("bench", n.redis.URL(), 4)
	if err != nil {
		b.Fatal(err)
	}
	id := zbus.ObjectID{Name: "noop", Version: "0.0.1"}
	if err := server.Register(id, noop{}); err != nil {
		b.Fatal(err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = server.Run(sctx) }()
	b.Cleanup(func() { cancel(); <-done })
	c := context.Background()

	b.Run("noop", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			res, err := n.client.RequestContext(c, "bench", id, "Nothing", "x")
			if err != nil {
				b.Fatal(err)
			}
			if err := res.CallError(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SetNamedProxy", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			// Every call changes its route (a Set that changes nothing
			// writes nothing, and is no measure of the real call).
			name := fmt.Sprintf("b%d", i%1000)
			backend := fmt.Sprintf("http://10.0.0.1:%d", 1+i%60000)
			if _, err := n.stub.SetNamedProxy(c, name, name, []string{backend}, false); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkZbusConcurrentSets times new routes set by 8 callers at once
// through zbus, 4 workers serving.
func BenchmarkZbusConcurrentSets(b *testing.B) {
	n := startNode(b, defaults())
	c := context.Background()
	var next atomic.Int64
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			name := fmt.Sprintf("c%d", i)
			if _, err := n.stub.SetNamedProxy(c, name, name, []string{"http://10.0.0.1"}, false); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
