package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ConnectorGroup names group i of the connector scenario. The server's connector must map a
// record to the group named by its key (group: "{key}", content_type: text/plain).
func ConnectorGroup(i int) string { return fmt.Sprintf("conn%d", i) }

// connector produces records keyed by group into o.Topic on o.Brokers (where the server's
// Kafka connector reads them) and counts what o.Subscribers connections spread over o.Groups
// groups receive: records/s through the connector and the latency from produce to client.
// Each group is one stream (its key keeps it in one partition, so in order).
// With o.DSN set, it inserts rows into the PostgreSQL outbox o.Table instead (partition_key
// the group), where the server's postgres_outbox connector reads them.
func (r *runner) connector(ctx context.Context, res *RunResult) error {
	var produce func(key, value []byte)
	var wg sync.WaitGroup
	if r.o.DSN != "" {
		ob, err := newOutboxWriter(ctx, r, &wg)
		if err != nil {
			return err
		}
		defer ob.close()
		produce = ob.insert
	} else {
		if len(r.o.Brokers) == 0 {
			return errors.New("connector: --brokers (the Kafka the server's connector reads) or --dsn (its PostgreSQL outbox) is required")
		}
		codec, err := compression(r.o.Compression)
		if err != nil {
			return err
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(r.o.Brokers...), kgo.DefaultProduceTopic(r.o.Topic),
			kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(100_000), kgo.ProducerBatchCompression(codec))
		if err != nil {
			return err
		}
		defer cl.Close()
		acks := newAckLatency()
		defer acks.report(r.o.Progress)
		produce = func(key, value []byte) {
			wg.Add(1)
			at := time.Now()
			cl.Produce(ctx, &kgo.Record{Key: key, Value: value}, func(_ *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					r.countSendError(reason(err))
					return
				}
				acks.record(time.Since(at))
				r.sent.Add(1)
			})
		}
	}
	specs := make([]ConnSpec, r.o.Subscribers)
	for i := range specs {
		g := ConnectorGroup(i % r.o.Groups)
		specs[i] = ConnSpec{ID: i, Groups: []string{g}, Key: g}
	}
	if err := r.connect(ctx, specs, false, res); err != nil {
		return err
	}
	r.phase.Store("produce")
	keys := make([][]byte, r.o.Groups)
	for i := range keys {
		keys[i] = []byte(ConnectorGroup(i))
	}
	return r.measure(ctx, res, func() error {
		t, err := r.startMeasuring(ctx)
		if err != nil {
			return err
		}
		seqs := make([]uint64, r.o.Groups)
		var first atomic.Int64
		first.Store(math.MaxInt64)
		interval := time.Duration(0)
		if r.o.Rate > 0 {
			interval = time.Duration(float64(time.Second) / r.o.Rate)
		}
		next := time.Now()
		measured := make([]int, r.o.Groups)
		// The warm-up sends a tenth of the measured records per group at most: unpaced, the
		// producer would queue far more than the connector delivers in the warm-up.
		warm, warmMax := make([]int, r.o.Groups), max(1, r.o.Messages/10)
		for g := 0; ctx.Err() == nil; g = (g + 1) % r.o.Groups {
			if time.Now().Before(t) && warm[g] >= warmMax {
				if g == r.o.Groups-1 {
					time.Sleep(time.Until(t))
					next = t // pace from the measured phase on, with no burst to catch up
				}
				continue
			}
			if measured[g] >= r.o.Messages {
				done := true
				for _, m := range measured {
					done = done && m >= r.o.Messages
				}
				if done {
					break
				}
				continue
			}
			if interval > 0 {
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				}
				next = next.Add(interval)
			}
			now := time.Now()
			if now.Before(t) {
				warm[g]++
			} else {
				if measured[g] == 0 && first.Load() == math.MaxInt64 {
					first.Store(now.UnixNano())
				}
				measured[g]++
			}
			produce(keys[g], appendPayload(nil, uint32(g), seqs[g], now.UnixNano(), r.o.Size))
			seqs[g]++
		}
		wg.Wait()
		r.phase.Store("drain")
		expect := map[string]map[uint32]uint64{}
		for g, n := range seqs {
			expect[ConnectorGroup(g)] = map[uint32]uint64{uint32(g): n}
		}
		f := first.Load()
		if f == math.MaxInt64 {
			f = 0
		}
		return r.collect(ctx, expect, f, res)
	})
}

// compression is the producer's codec named by --compression.
func compression(name string) (kgo.CompressionCodec, error) {
	switch name {
	case "none":
		return kgo.NoCompression(), nil
	case "snappy":
		return kgo.SnappyCompression(), nil
	case "lz4":
		return kgo.Lz4Compression(), nil
	case "zstd":
		return kgo.ZstdCompression(), nil
	case "gzip":
		return kgo.GzipCompression(), nil
	}
	return kgo.CompressionCodec{}, fmt.Errorf("connector: --compression %q: none, snappy, lz4, zstd or gzip", name)
}

// ackLatency is how long the tool's producer took from a record's Produce call to the
// broker's acknowledgement (its linger, one produce request in flight per broker as an
// idempotent producer has, the broker's append): the part of the end-to-end latency spent
// before the connector can fetch the record.
type ackLatency struct {
	mu sync.Mutex
	h  *hdr.Histogram // µs
}

func newAckLatency() *ackLatency { return &ackLatency{h: hdr.New(1, 60_000_000, 3)} }

func (a *ackLatency) record(d time.Duration) {
	a.mu.Lock()
	_ = a.h.RecordValue(d.Microseconds())
	a.mu.Unlock()
}

// report prints the acknowledgements' p50, p99 and max to out (warm-up included).
func (a *ackLatency) report(out io.Writer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if out == nil || a.h.TotalCount() == 0 {
		return
	}
	q := func(p float64) float64 { return float64(a.h.ValueAtQuantile(p)) / 1000 }
	fmt.Fprintf(out, "kafka produce: %d records, produced to acknowledged p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
		a.h.TotalCount(), q(50), q(99), float64(a.h.Max())/1000)
}
