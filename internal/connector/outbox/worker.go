package outbox

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboardhq/switchboard/internal/connector"
)

// worker sends the rows of the partitions of one slot that this node holds (a fixed set: a
// change of the node's partitions replaces the slot's worker), each partition in id order: a
// transaction locks a batch of each partition's oldest rows (SELECT … FOR UPDATE), sends them,
// and deletes (or marks) the ones whose sends were accepted. A NOTIFY of one of its partitions,
// or the poll interval, wakes it; a partition with rows left makes it read again at once.
//
// One transaction serves all the slot's partitions, so the connector's transactions (each a
// commit, and round trips, on the database; a fsync of the history shared by its sends) do not
// grow with the table's partitions: Config.Workers of them run at once.
type worker struct {
	c     *Connector
	parts []*partition // sorted by number
	ids   []int32      // their numbers, rotated by each batch (the first ones read first)

	ctx    context.Context // the transactions': cancelled when a stop's grace is over
	cancel context.CancelFunc
	stop   chan struct{} // closed: finish the transaction in flight, then return
	once   sync.Once
	done   chan struct{}
	wake   chan struct{} // a NOTIFY of one of its partitions
}

// partition is a partition this node holds: its lock is held, a worker sends its rows.
type partition struct {
	n      int
	lastID atomic.Int64
	oldest atomic.Int64 // unix nanoseconds of the oldest row known unsent; 0: none
	rows   atomic.Int64
}

func newWorker(c *Connector, parts []*partition) *worker {
	ctx, cancel := context.WithCancel(context.Background())
	w := &worker{c: c, parts: parts, ctx: ctx, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1)}
	for _, p := range parts {
		w.ids = append(w.ids, int32(p.n))
	}
	return w
}

// part returns the worker's partition n.
func (w *worker) part(n int32) *partition {
	i, _ := slices.BinarySearchFunc(w.parts, n, func(p *partition, n int32) int { return cmp.Compare(int32(p.n), n) })
	return w.parts[i]
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) stopAfterBatch() { w.once.Do(func() { close(w.stop) }) }

func (p *partition) status(now time.Time) PartitionStatus {
	s := PartitionStatus{Partition: p.n, LastID: p.lastID.Load(), Rows: p.rows.Load()}
	if o := p.oldest.Load(); o != 0 {
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
			w.c.noteError("query", fmt.Errorf("partitions %v: %w", w.ids, err))
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

// txRef is the transaction a worker's sends run in, as their context carries it (a dead
// letter writes in it): the worker's connection, in the transaction its batch began.
type txRef struct {
	conn *pgxpool.Conn
}

// row is an outbox row read for sending.
type row struct {
	rec      connector.Record
	created  time.Time
	tooLarge int // the payload's size when over MaxPayload (not read); 0: read
}

// batch sends one batch of the oldest rows of each of the worker's partitions; more reports
// rows left to read at once (a partition that filled its limit, a batch cut at MaxBatchBytes,
// or sends that stopped part way).
//
// Its transaction takes two round trips to PostgreSQL: BEGIN with the SELECT … FOR UPDATE
// that locks the rows, and, once their sends were accepted, the DELETE (or UPDATE) with the
// COMMIT, each pair sent as one pipelined batch. A batch that fails part way leaves the
// transaction aborted: it is rolled back, and a connection that cannot even do that is closed
// by the pool rather than reused.
func (w *worker) batch() (more bool, err error) {
	c := w.c
	conn, err := c.pool.Acquire(w.ctx)
	if err != nil {
		return false, err
	}
	defer endTx(conn)
	// BatchSize rows of each partition, within maxBatchRows in all.
	limit := min(c.cfg.BatchSize, max(1, maxBatchRows/len(w.ids)))
	rows, full, err := w.read(conn, limit)
	if err != nil {
		return false, err
	}
	// Sent in id order: the order of each partition, and of each target across them.
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a.rec.Offset, b.rec.Offset) })
	seen := map[int32]bool{}
	for i := range rows { // the oldest row of each partition read: its first
		if p := rows[i].rec.Partition; !seen[p] {
			seen[p] = true
			w.part(p).oldest.Store(rows[i].created.UnixNano())
		}
	}
	for _, p := range w.parts {
		if !seen[int32(p.n)] && !full {
			p.oldest.Store(0) // none unsent
		}
	}
	if len(rows) == 0 {
		return full, nil // endTx ends the transaction, which changed nothing
	}
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
	order := connector.OrderPartition
	if c.cfg.OrderByTarget {
		order = connector.OrderTarget
	}
	dctx, cancel := context.WithTimeout(context.WithValue(w.ctx, txKey{}, &txRef{conn: conn}), c.cfg.MaxTx)
	sent := c.deliver.DeliverBatch(dctx, placed, order)
	cancel()
	var ids []int64
	tallies := map[int32]*tally{}
	for i := range rows {
		r := &rows[i]
		t := tallies[r.rec.Partition]
		if t == nil {
			t = &tally{}
			tallies[r.rec.Partition] = t
		}
		t.read++
		switch {
		case sent[i]:
			ids = append(ids, r.rec.Offset)
			t.finished++
			t.last = r.rec.Offset
		case t.left == nil:
			t.left = r
		}
	}
	if len(ids) == 0 {
		return true, nil // refused until MaxTx: roll back, read again (the rows stay)
	}
	// The sends were accepted: finish them even when the partitions are being taken away (a
	// row left would be sent again, a replay for history groups but not for the others).
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := finish(fctx, conn, c.finishSQL, ids); err != nil {
		c.metrics.errors.WithLabelValues(c.cfg.Name, "commit").Inc()
		return false, err
	}
	c.metrics.rows.WithLabelValues(c.cfg.Name).Add(float64(len(ids)))
	c.metrics.txs.WithLabelValues(c.cfg.Name).Inc()
	more = full
	for _, p := range w.parts {
		t := tallies[int32(p.n)]
		if t == nil {
			continue
		}
		if t.finished > 0 {
			p.rows.Add(int64(t.finished))
			p.lastID.Store(t.last)
		}
		switch {
		case t.left != nil: // stopped part way: the rest is read again at once
			p.oldest.Store(t.left.created.UnixNano())
			more = true
		case t.read == limit: // rows may be left
			more = true
		case !full:
			p.oldest.Store(0)
		}
	}
	return more, nil
}

// maxBatchRows bounds the rows of a worker's batch, whatever its partitions (the most
// batch_size allows for one partition): each partition's share is then smaller.
const maxBatchRows = 10_000

// tally is what a batch did with the rows of one partition.
type tally struct {
	read, finished int
	last           int64 // the id of its last row finished (ids grow: the batch's last)
	left           *row  // its first row not finished
}

// finish deletes (or marks) the rows ids and commits, in one round trip.
func finish(ctx context.Context, conn *pgxpool.Conn, finishSQL string, ids []int64) error {
	b := &pgx.Batch{}
	b.Queue(finishSQL, ids)
	b.Queue("commit")
	br := conn.SendBatch(ctx, b)
	_, err := br.Exec()
	if err != nil {
		err = fmt.Errorf("finish rows: %w", err)
	} else if tag, cerr := br.Exec(); cerr != nil {
		err = fmt.Errorf("commit: %w", cerr)
	} else if tag.String() != "COMMIT" {
		err = fmt.Errorf("commit: the transaction was rolled back (%s)", tag)
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("commit: %w", cerr)
	}
	return err
}

// endTx rolls back what is left of the transaction on conn (nothing after a commit) and
// returns conn to the pool, which closes it instead if even the rollback failed.
func endTx(conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() != 'I' {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn.Exec(ctx, "rollback")
		cancel()
	}
	conn.Release()
}

// read begins the transaction and locks and reads up to limit of the oldest rows of each of
// the worker's partitions, up to MaxBatchBytes of payloads (full: it stopped there; the rows
// after are read by the next batch), in one round trip. The partitions are read in an order
// that rotates batch by batch, so that a batch cut at MaxBatchBytes does not always leave
// out the same ones.
func (w *worker) read(conn *pgxpool.Conn, limit int) (_ []row, full bool, err error) {
	if len(w.ids) > 1 {
		w.ids = append(w.ids[1:], w.ids[0])
	}
	b := &pgx.Batch{}
	b.Queue("begin")
	b.Queue(w.c.selectSQL, w.ids, limit, w.c.cfg.MaxPayload)
	br := conn.SendBatch(w.ctx, b)
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("read rows: %w", cerr)
		}
	}()
	if _, err := br.Exec(); err != nil {
		return nil, false, fmt.Errorf("begin: %w", err)
	}
	rs, err := br.Query()
	if err != nil {
		return nil, false, fmt.Errorf("read rows: %w", err)
	}
	defer rs.Close()
	var out []row
	bytes := 0
	for rs.Next() {
		var (
			id                                           int64
			part                                         int32
			key, hub, kind, target, ctype, idem, headers *string
			payload                                      []byte
			size                                         int
			excluded                                     []string
			created                                      time.Time
		)
		if err := rs.Scan(&id, &part, &key, &hub, &kind, &target, &ctype, &payload, &size, &idem, &excluded, &headers, &created); err != nil {
			return nil, false, fmt.Errorf("read rows: %w", err)
		}
		if len(out) > 0 && bytes+len(payload) > w.c.cfg.MaxBatchBytes {
			return out, true, nil // the rest of the result is read and dropped by Close
		}
		bytes += len(payload)
		r := row{created: created, rec: connector.Record{Topic: w.c.cfg.Table, Partition: part, Offset: id, Value: payload}}
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
