package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchboardhq/switchboard/internal/connector"
)

// worker sends the rows of one partition this node holds, in id order: it locks a batch of
// the oldest rows (SELECT … FOR UPDATE), sends them, and deletes (or marks) the ones whose
// sends were accepted in the same transaction. A NOTIFY of its partition, or the poll
// interval, wakes it; a full batch makes it read again at once.
type worker struct {
	c         *Connector
	partition int

	ctx    context.Context // the transactions': cancelled when a stop's grace is over
	cancel context.CancelFunc
	stop   chan struct{} // closed: finish the transaction in flight, then return
	once   sync.Once
	done   chan struct{}
	wake   chan struct{} // a NOTIFY of the partition

	lastID atomic.Int64
	oldest atomic.Int64 // unix nanoseconds of the oldest row known unsent; 0: none
	rows   atomic.Int64
}

func newWorker(c *Connector, p int) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	return &worker{c: c, partition: p, ctx: ctx, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1)}
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) stopAfterBatch() { w.once.Do(func() { close(w.stop) }) }

func (w *worker) status(now time.Time) PartitionStatus {
	s := PartitionStatus{Partition: w.partition, LastID: w.lastID.Load(), Rows: w.rows.Load()}
	if o := w.oldest.Load(); o != 0 {
		s.LagSeconds = max(0, now.Sub(time.Unix(0, o)).Seconds())
	}
	return s
}

func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	poll := time.NewTimer(0)
	defer poll.Stop()
	wait := 100 * time.Millisecond
	for {
		select {
		case <-w.stop:
			return
		case <-w.ctx.Done():
			return
		default:
		}
		more, err := w.batch()
		switch {
		case w.ctx.Err() != nil:
			return
		case err != nil:
			w.c.noteError("query", fmt.Errorf("partition %d: %w", w.partition, err))
			if !w.sleep(wait) {
				return
			}
			wait = min(2*wait, 5*time.Second)
			continue
		case more:
			wait = 100 * time.Millisecond
			continue
		}
		wait = 100 * time.Millisecond
		poll.Reset(w.c.cfg.PollInterval)
		select {
		case <-w.stop:
			return
		case <-w.ctx.Done():
			return
		case <-w.wake:
		case <-poll.C:
		}
	}
}

// sleep waits d; false when the worker stops meanwhile.
func (w *worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.stop:
		return false
	case <-w.ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// row is an outbox row read for sending.
// deliver sends placed and reports which were done (sent, replayed, or poison set aside).
// In id order, a run of rows to one target at a time (DeliverRun); with OrderByTarget, the
// rows to each target in id order, different targets concurrently on up to maxLanes
// goroutines. Either way a row is done only if every earlier row to its target is.
func (w *worker) deliver(ctx context.Context, placed []connector.Placed) []bool {
	c := w.c
	sent := make([]bool, len(placed))
	if !c.cfg.OrderByTarget {
		done := 0
		for done < len(placed) {
			n, err := c.deliver.DeliverRun(ctx, placed[done:done+connector.RunLength(placed[done:])])
			for i := done; i < done+n; i++ {
				sent[i] = true
			}
			done += n
			if err != nil {
				break
			}
		}
		return sent
	}
	// Lanes by target; poison rows each on a lane of their own.
	var lanes [][]int
	byTarget := map[string]int{}
	for i, p := range placed {
		if p.Err != nil {
			lanes = append(lanes, []int{i})
			continue
		}
		k := p.Send.TargetKey()
		l, ok := byTarget[k]
		if !ok {
			l = len(lanes)
			byTarget[k] = l
			lanes = append(lanes, nil)
		}
		lanes[l] = append(lanes[l], i)
	}
	next := make(chan []int)
	var wg sync.WaitGroup
	for range min(maxLanes, len(lanes)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lane := range next {
				run := make([]connector.Placed, len(lane))
				for j, i := range lane {
					run[j] = placed[i]
				}
				done := 0
				for done < len(run) {
					n, err := c.deliver.DeliverRun(ctx, run[done:done+connector.RunLength(run[done:])])
					for j := done; j < done+n; j++ {
						sent[lane[j]] = true
					}
					done += n
					if err != nil {
						break
					}
				}
			}
		}()
	}
	for _, lane := range lanes {
		next <- lane
	}
	close(next)
	wg.Wait()
	return sent
}

// maxLanes bounds the targets of a batch sent at once with OrderByTarget.
const maxLanes = 32

// txRef is a worker's transaction as its sends' context carries it: the lanes of
// OrderByTarget may write dead letters at once, one at a time.
type txRef struct {
	mu sync.Mutex
	tx pgx.Tx
}

type row struct {
	rec      connector.Record
	created  time.Time
	tooLarge int // the payload's size when over MaxPayload (not read); 0: read
}

// batch sends one batch of the partition's oldest rows; more reports rows left to read at
// once (a full batch, or one whose sends stopped part way).
func (w *worker) batch() (more bool, err error) {
	c := w.c
	tx, err := c.pool.Begin(w.ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.Background()) // after Commit: nothing
	rows, full, err := w.read(tx)
	if err != nil {
		return false, err
	}
	if len(rows) == 0 {
		w.oldest.Store(0)
		return false, tx.Commit(w.ctx)
	}
	w.oldest.Store(rows[0].created.UnixNano())
	placed := make([]connector.Placed, len(rows))
	for i := range rows {
		if rows[i].tooLarge > 0 {
			placed[i] = connector.Placed{Record: &rows[i].rec, Err: &connector.Poison{Reason: connector.ReasonData,
				Err: fmt.Errorf("the payload's %d bytes are over the limit of %d (limits.max_body_bytes)", rows[i].tooLarge, c.cfg.MaxPayload)}}
			continue
		}
		s, err := c.deliver.Place(&rows[i].rec)
		placed[i] = connector.Placed{Record: &rows[i].rec, Send: s, Err: err}
	}
	// The sends run in the transaction's context: a dead letter writes in it; past MaxTx
	// what was sent is committed and the rest read again in a new transaction.
	dctx, cancel := context.WithTimeout(context.WithValue(w.ctx, txKey{}, &txRef{tx: tx}), c.cfg.MaxTx)
	sent := w.deliver(dctx, placed)
	cancel()
	var ids []int64
	firstLeft := -1
	for i, ok := range sent {
		if ok {
			ids = append(ids, rows[i].rec.Offset)
		} else if firstLeft < 0 {
			firstLeft = i
		}
	}
	done := len(ids)
	if done == 0 {
		return true, nil // refused until MaxTx: roll back, read again (the rows stay)
	}
	// The sends were accepted: finish them even when the partition is being taken away (a
	// row left would be sent again, a replay for history groups but not for the others).
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if _, err := tx.Exec(fctx, c.finishSQL, ids); err != nil {
		return false, fmt.Errorf("finish rows: %w", err)
	}
	if err := tx.Commit(fctx); err != nil {
		c.metrics.errors.WithLabelValues(c.cfg.Name, "commit").Inc()
		return false, fmt.Errorf("commit: %w", err)
	}
	c.metrics.rows.WithLabelValues(c.cfg.Name).Add(float64(done))
	w.rows.Add(int64(done))
	w.lastID.Store(ids[done-1])
	if firstLeft >= 0 {
		w.oldest.Store(rows[firstLeft].created.UnixNano())
		return true, nil
	}
	if len(rows) == c.cfg.BatchSize || full {
		return true, nil
	}
	w.oldest.Store(0)
	return false, nil
}

// read locks and reads the partition's oldest rows, up to MaxBatchBytes of payloads (full:
// it stopped there; the rows after are read by the next batch).
func (w *worker) read(tx pgx.Tx) (_ []row, full bool, _ error) {
	rs, err := tx.Query(w.ctx, w.c.selectSQL, w.partition, w.c.cfg.BatchSize, w.c.cfg.MaxPayload)
	if err != nil {
		return nil, false, fmt.Errorf("read rows: %w", err)
	}
	defer rs.Close()
	var out []row
	bytes := 0
	for rs.Next() {
		var (
			id                                           int64
			key, hub, kind, target, ctype, idem, headers *string
			payload                                      []byte
			size                                         int
			excluded                                     []string
			created                                      time.Time
		)
		if err := rs.Scan(&id, &key, &hub, &kind, &target, &ctype, &payload, &size, &idem, &excluded, &headers, &created); err != nil {
			return nil, false, fmt.Errorf("read rows: %w", err)
		}
		if len(out) > 0 && bytes+len(payload) > w.c.cfg.MaxBatchBytes {
			return out, true, nil // the rest of the result is read and dropped by Close
		}
		bytes += len(payload)
		r := row{created: created, rec: connector.Record{Topic: w.c.cfg.Table, Partition: int32(w.partition), Offset: id, Value: payload}}
		if payload == nil && size > w.c.cfg.MaxPayload {
			r.tooLarge = size
		}
		if key != nil {
			r.rec.Key = []byte(*key)
		}
		r.rec.Headers = recordHeaders(headers, hub, kind, target, ctype, idem, excluded)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, false, fmt.Errorf("read rows: %w", err)
	}
	return out, false, nil
}

// recordHeaders turns a row's columns into the mapping's headers: the headers object first,
// then the columns (the last of a repeated header wins, so a column beats the object).
func recordHeaders(headers, hub, kind, target, ctype, idem *string, excluded []string) []connector.Header {
	var hs []connector.Header
	if headers != nil {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(*headers), &obj); err == nil {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				v := obj[k]
				var s string
				if json.Unmarshal(v, &s) != nil {
					s = string(v) // a number or boolean: its JSON text
				}
				hs = append(hs, connector.Header{Key: k, Value: []byte(s)})
			}
		}
	}
	add := func(k string, v *string) {
		if v != nil {
			hs = append(hs, connector.Header{Key: k, Value: []byte(*v)})
		}
	}
	add(connector.HeaderHub, hub)
	if kind != nil {
		switch *kind {
		case "all":
			hs = append(hs, connector.Header{Key: connector.HeaderAll, Value: []byte("true")})
		case "group", "user", "connection":
			t := ""
			if target != nil {
				t = *target
			}
			hs = append(hs, connector.Header{Key: "switchboard-" + *kind, Value: []byte(t)})
		}
	}
	add(connector.HeaderContentType, ctype)
	add(connector.HeaderIdempotencyKey, idem)
	if excluded != nil {
		hs = append(hs, connector.Header{Key: connector.HeaderExcluded, Value: []byte(strings.Join(excluded, ","))})
	}
	return hs
}
