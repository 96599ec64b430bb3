// Package latency is switchboard_delivery_latency_seconds: the time from a
// message being accepted (core stamps Message.Accepted when a send starts,
// or when an operation arrives from another node) to its being written to a
// recipient's socket. The writers that observe it are hot paths, so each
// owns a Shard of plain per-bucket counters (no lock, no cache line shared
// with another writer), and the Prometheus histogram is summed from the
// shards only when it is gathered.
package latency

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Buckets are the histogram's upper bounds in seconds: 100 µs to 10 s.
var Buckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// bounds are Buckets in nanoseconds.
var bounds = func() [16]int64 {
	var b [16]int64
	for i, s := range Buckets {
		b[i] = int64(s * 1e9)
	}
	return b
}()

// Histogram is the delivery latency, by transport. Register it with
// metricreg.Register (two servers on one registry share it) and give each
// writer its own Shard.
type Histogram struct {
	desc   *prometheus.Desc
	mu     sync.Mutex
	shards map[string][]*Shard // by transport
	shared map[string]*Shard   // Shared's, by transport
}

// New returns the histogram, with no shard yet.
func New() *Histogram {
	return &Histogram{
		desc: prometheus.NewDesc("switchboard_delivery_latency_seconds",
			"Time from a send being accepted (REST, client or connector send; on other nodes, the operation's arrival over NATS) to the write of the message to a recipient's socket. One observation per socket write that carries sends: that of the oldest send in the write.",
			[]string{"transport"}, nil),
		shards: map[string][]*Shard{},
		shared: map[string]*Shard{},
	}
}

// Shard returns a new shard of transport's series, for one writer.
func (h *Histogram) Shard(transport string) *Shard {
	s := new(Shard)
	h.mu.Lock()
	h.shards[transport] = append(h.shards[transport], s)
	h.mu.Unlock()
	return s
}

// Shared returns transport's one shared shard, for writers that come and
// go (a stream or a poll each): Shard would keep one per writer forever.
func (h *Histogram) Shared(transport string) *Shard {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.shared[transport]
	if s == nil {
		s = new(Shard)
		h.shared[transport] = s
		h.shards[transport] = append(h.shards[transport], s)
	}
	return s
}

// Describe implements prometheus.Collector.
func (h *Histogram) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

// Collect implements prometheus.Collector: one histogram per transport, the
// sum of its shards.
func (h *Histogram) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for transport, shards := range h.shards {
		var counts [len(bounds) + 1]uint64
		var sum uint64
		for _, s := range shards {
			for i := range s.counts {
				counts[i] += s.counts[i].Load()
			}
			sum += s.sum.Load()
		}
		cum := make(map[float64]uint64, len(Buckets))
		total := uint64(0)
		for i, le := range Buckets {
			total += counts[i]
			cum[le] = total
		}
		total += counts[len(bounds)]
		ch <- prometheus.MustNewConstHistogram(h.desc, total, float64(sum)/1e9, cum, transport)
	}
}

// Shard is one writer's counts. Observe may be called from any goroutine,
// but is cheapest from one.
type Shard struct {
	counts [len(bounds) + 1]atomic.Uint64 // the last: above 10 s
	sum    atomic.Uint64                  // nanoseconds
	_      [64]byte                       // no false sharing with the next shard
}

// Observe records the latency of a message accepted at accepted (Unix
// nanoseconds) and written at now. A zero accepted (a message that is not a
// send: a reply, a replay) is not observed, nor a negative latency.
func (s *Shard) Observe(accepted int64, now time.Time) {
	if accepted == 0 {
		return
	}
	d := now.UnixNano() - accepted
	if d < 0 {
		return
	}
	i := 0
	for i < len(bounds) && d > bounds[i] {
		i++
	}
	s.counts[i].Add(1)
	s.sum.Add(uint64(d))
}
