package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// outboxShards is how many connections insert outbox rows at once; the rows of one key always
// go through the same one, in order, so their ids follow their sequence.
const outboxShards = 4

// outboxWriter inserts the connector scenario's rows into a PostgreSQL outbox: each shard
// gathers what was queued while its last INSERT ran and inserts it in one statement.
type outboxWriter struct {
	r      *runner
	pool   *pgxpool.Pool
	sql    string
	shards [outboxShards]chan outboxRow
	wg     *sync.WaitGroup // a row queued and not yet inserted
	done   sync.WaitGroup  // the shards' goroutines

	mu      sync.Mutex
	inserts *hdr.Histogram // µs from a row queued to its INSERT's commit returned
}

type outboxRow struct {
	key, value []byte
	queued     time.Time
}

func newOutboxWriter(ctx context.Context, r *runner, wg *sync.WaitGroup) (*outboxWriter, error) {
	pool, err := pgxpool.New(ctx, r.o.DSN)
	if err != nil {
		return nil, fmt.Errorf("connector: --dsn: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connector: --dsn: %w", err)
	}
	w := &outboxWriter{r: r, pool: pool, wg: wg, inserts: hdr.New(1, 60_000_000, 3), sql: `INSERT INTO ` + pgx.Identifier{r.o.Table}.Sanitize() +
		` (partition_key, payload) SELECT k, p FROM unnest($1::text[], $2::bytea[]) WITH ORDINALITY AS r(k, p, n) ORDER BY n`}
	for i := range w.shards {
		w.shards[i] = make(chan outboxRow, 10_000)
		w.done.Add(1)
		go func() { defer w.done.Done(); w.run(w.shards[i]) }()
	}
	return w, nil
}

// insert queues a row (the producer's goroutine).
func (w *outboxWriter) insert(key, value []byte) {
	h := fnv.New32a()
	h.Write(key)
	w.wg.Add(1)
	w.shards[h.Sum32()%outboxShards] <- outboxRow{key: key, value: value, queued: time.Now()}
}

func (w *outboxWriter) run(ch chan outboxRow) {
	var keys []string
	var values [][]byte
	var queued []time.Time
	for first := range ch {
		keys, values = append(keys[:0], string(first.key)), append(values[:0], first.value)
		queued = append(queued[:0], first.queued)
	gather:
		for len(keys) < 2000 {
			select {
			case row, ok := <-ch:
				if !ok {
					break gather
				}
				keys, values = append(keys, string(row.key)), append(values, row.value)
				queued = append(queued, row.queued)
			default:
				break gather
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := w.pool.Exec(ctx, w.sql, keys, values)
		cancel()
		if err != nil {
			for range keys {
				w.r.countSendError("outbox insert")
			}
		} else {
			w.r.sent.Add(int64(len(keys)))
			now := time.Now()
			w.mu.Lock()
			for _, q := range queued {
				_ = w.inserts.RecordValue(now.Sub(q).Microseconds())
			}
			w.mu.Unlock()
		}
		for range keys {
			w.wg.Done()
		}
	}
}

func (w *outboxWriter) close() {
	for _, ch := range w.shards {
		close(ch)
	}
	w.done.Wait()
	w.pool.Close()
	if out := w.r.o.Progress; out != nil && w.inserts.TotalCount() > 0 {
		// The part of the end-to-end latency spent before the connector can see a row (its
		// queue in the tool and the INSERT's commit), warm-up included.
		q := func(p float64) float64 { return float64(w.inserts.ValueAtQuantile(p)) / 1000 }
		fmt.Fprintf(out, "outbox inserts: %d rows, queued to committed p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			w.inserts.TotalCount(), q(50), q(99), float64(w.inserts.Max())/1000)
	}
}
