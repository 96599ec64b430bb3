package outbox

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchboardhq/switchboard/internal/connector"
)

// Config configures a PostgreSQL outbox connector.
type Config struct {
	Name            string // the connector's name (logs, metrics, /admin/connectors)
	DSN             string // postgres://user:password@host:port/db
	Table           string // [schema.]table, made by Schema
	DeadLetterTable string // "": poison rows are logged, counted and deleted (or marked)
	// Partitions is the table's partition count; 0: read from the table's comment (Schema
	// writes it). Set, it must match the comment when there is one.
	Partitions   int
	PollInterval time.Duration // how often each held partition is read without a NOTIFY; default 1s
	// BatchSize bounds the rows of each partition a transaction locks and sends (its
	// worker's partitions together at most 10,000, shared equally); default 500.
	BatchSize int
	// Mark sets processed_at on a sent row instead of deleting it.
	Mark bool
	// OrderByTarget finishes (deletes or marks) a row once every earlier row to its target
	// (hub, kind, name) is, so that a target whose sends are refused holds back no other;
	// false: once every earlier row of its partition is. Either way every send of a batch is
	// in flight at once, in id order (connector.DeliverBatch).
	OrderByTarget bool
	// MaxTx bounds the sends of one transaction: past it the rows sent are committed and
	// the rest are read again in a new one; default 5s.
	MaxTx time.Duration
	// Rebalance is how often a node checks the partitions it holds against its share (and
	// the connection that holds their locks); default 1s.
	Rebalance time.Duration
	// StopGrace is how long a partition given up (or at shutdown) may take to finish its
	// transaction before it is cancelled; default 5s.
	StopGrace time.Duration
	// Workers is how many transactions this node runs at once: worker i sends the rows of
	// the partitions p held with p mod Workers = i, all of them in one transaction at a time.
	// Default 2; at most the table's partitions are used.
	Workers  int
	MaxConns int // connections of the pool the workers' transactions use; default Workers
	// MaxPayload bounds a row's payload (the REST send's body limit): a larger row is poison
	// (its payload is not read); default 1 MiB.
	MaxPayload int
	// MaxBatchBytes bounds the payload bytes of one batch held at once: a batch stops at the
	// row that crosses it, the rest waits for the next; default 16 MiB.
	MaxBatchBytes int

	Logger  *slog.Logger
	Metrics *Metrics // required: NewMetrics
}

// States of a connector.
const (
	StateStarting = "starting" // Run not called yet, or not connected yet
	StateRunning  = "running"  // holds partitions
	StateIdle     = "idle"     // connected, holds no partition (other nodes hold them all)
	StateRetrying = "retrying" // the database is unreachable or refused: reconnecting with backoff
	StateStopped  = "stopped"
)

// Connector is one PostgreSQL outbox connector: Run reads the table until its context ends.
type Connector struct {
	cfg                           Config
	log                           *slog.Logger
	deliver                       *connector.Deliverer
	metrics                       *Metrics
	name                          name
	lockKey                       int32 // the advisory locks' first key: a hash of the table name
	selectSQL, finishSQL, deadSQL string

	poolCfg *pgxpool.Config
	pool    *pgxpool.Pool // made by the first session (Run's goroutine), once the partitions are known

	mu         sync.Mutex         // guards the fields below
	held       map[int]*partition // the partitions this node holds, by number
	workers    map[int]*worker    // by slot (partition mod the slots), for the slots with partitions held
	partitions int                // the table's, once read
	nodes      int                // nodes sharing the outbox at the last rebalance
	state      string
	lastErr    string
	errAt      time.Time

	wg sync.WaitGroup // the workers
}

// memberKey is the second key of the shared advisory lock every node running the connector
// holds, so that each can count the nodes sharing the partitions.
const memberKey = 1<<31 - 1

// New checks cfg and prepares the connector; nothing connects before Run. deliver makes the
// connector's Deliverer, given its dead-letter function (nil without a dead-letter table).
func New(cfg Config, deliver func(dead connector.DeadLetter) (*connector.Deliverer, error)) (*Connector, error) {
	if cfg.Metrics == nil {
		return nil, errors.New("outbox: Config.Metrics is required")
	}
	if cfg.DSN == "" {
		return nil, fmt.Errorf("outbox connector %s: dsn is required", cfg.Name)
	}
	if !ValidTable(cfg.Table) {
		return nil, fmt.Errorf("outbox connector %s: table %q: lower-case letters, digits and '_', optionally schema.table", cfg.Name, cfg.Table)
	}
	if cfg.DeadLetterTable != "" && (!ValidTable(cfg.DeadLetterTable) || cfg.DeadLetterTable == cfg.Table) {
		return nil, fmt.Errorf("outbox connector %s: dead-letter table %q: another table, lower-case letters, digits and '_'", cfg.Name, cfg.DeadLetterTable)
	}
	if cfg.Partitions < 0 || cfg.Partitions > MaxPartitions {
		return nil, fmt.Errorf("outbox connector %s: partitions %d: 0 (the table's) to %d", cfg.Name, cfg.Partitions, MaxPartitions)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&cfg.PollInterval, time.Second)
	setDefault(&cfg.BatchSize, 500)
	setDefault(&cfg.Workers, 2)
	setDefault(&cfg.MaxTx, 5*time.Second)
	setDefault(&cfg.Rebalance, time.Second)
	setDefault(&cfg.StopGrace, 5*time.Second)
	setDefault(&cfg.MaxPayload, 1<<20)
	setDefault(&cfg.MaxBatchBytes, 16<<20)
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("outbox connector %s: dsn: %w", cfg.Name, redactErr(err))
	}
	h := fnv.New32a()
	h.Write([]byte(cfg.Table))
	c := &Connector{cfg: cfg, log: cfg.Logger.With("connector", cfg.Name), metrics: cfg.Metrics, name: parseName(cfg.Table),
		lockKey: int32(h.Sum32() & 0x7fffffff), held: map[int]*partition{}, workers: map[int]*worker{}, state: StateStarting}
	t := c.name.ident("")
	// Up to $2 of the oldest rows of each partition of $1, each partition's with its index.
	c.selectSQL = `SELECT o.* FROM unnest($1::integer[]) AS q(p) CROSS JOIN LATERAL (
		SELECT id, partition, partition_key, hub, target_kind, target, content_type,
		CASE WHEN octet_length(payload) <= $3 THEN payload END, octet_length(payload), idempotency_key, excluded, headers::text, created_at FROM ` +
		t + ` WHERE partition = q.p AND processed_at IS NULL ORDER BY id LIMIT $2 FOR UPDATE) o`
	if cfg.Mark {
		c.finishSQL = `UPDATE ` + t + ` SET processed_at = clock_timestamp() WHERE id = ANY($1)`
	} else {
		c.finishSQL = `DELETE FROM ` + t + ` WHERE id = ANY($1)`
	}
	var dead connector.DeadLetter
	if cfg.DeadLetterTable != "" {
		c.deadSQL = `INSERT INTO ` + parseName(cfg.DeadLetterTable).ident("") + ` (id, partition_key, partition, hub, target_kind, target,
			content_type, payload, idempotency_key, excluded, headers, created_at, connector, reason, error)
			SELECT id, partition_key, partition, hub, target_kind, target, content_type, payload, idempotency_key, excluded,
			headers, created_at, $2, $3, $4 FROM ` + t + ` WHERE id = $1 ON CONFLICT (id) DO NOTHING`
		dead = c.deadLetter
	}
	if c.deliver, err = deliver(dead); err != nil {
		return nil, err
	}
	pcfg.MinConns = 0
	c.poolCfg = pcfg
	return c, nil
}

// ensurePool makes the workers' pool once the table's partition count is known (each worker
// in a transaction at a time): MaxConns, else the workers used.
func (c *Connector) ensurePool() error {
	if c.pool != nil {
		return nil
	}
	n := c.cfg.MaxConns
	if n <= 0 {
		n = c.slots()
	}
	c.poolCfg.MaxConns = int32(max(n, 1))
	pool, err := pgxpool.NewWithConfig(context.Background(), c.poolCfg) // connects lazily
	if err != nil {
		return fmt.Errorf("pool: %w", redactErr(err))
	}
	c.pool = pool
	return nil
}

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// redactErr drops what a DSN parse error quotes (the password may be in it).
func redactErr(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("the DSN does not parse (a postgres:// URL or key=value pairs)")
	}
	return err
}

// Name returns the connector's name.
func (c *Connector) Name() string { return c.cfg.Name }

// Run reads the outbox until ctx ends: it takes its share of the partitions (advisory locks
// held on a connection of its own, which also LISTENs for the table's NOTIFY), runs a
// worker per partition held, and reconnects with backoff when the database is unreachable.
// At the end the workers finish their transactions (within StopGrace) and the locks are
// released.
func (c *Connector) Run(ctx context.Context) error {
	c.metrics.add(c)
	defer c.metrics.remove(c)
	defer func() {
		if c.pool != nil {
			c.pool.Close()
		}
	}()
	c.log.Info("postgres outbox connector started", "table", c.cfg.Table, "dead_letter_table", c.cfg.DeadLetterTable)
	wait := 250 * time.Millisecond
	for ctx.Err() == nil {
		held, err := c.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if held {
			wait = 250 * time.Millisecond
		}
		c.setState(StateRetrying)
		c.noteError("connect", err)
		pause(ctx, wait+rand.N(wait/2))
		wait = min(2*wait, 5*time.Second)
	}
	c.setState(StateStopped)
	c.log.Info("postgres outbox connector stopped")
	return nil
}

// session connects the locking connection and keeps this node's share of the partitions
// until ctx ends or the connection fails; it reports whether it got that far.
func (c *Connector) session(ctx context.Context) (connected bool, err error) {
	ccfg, err := pgx.ParseConfig(c.cfg.DSN)
	if err != nil {
		return false, redactErr(err)
	}
	ccfg.OnNotification = func(_ *pgconn.PgConn, n *pgconn.Notification) { c.notified(n.Payload) }
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.ConnectConfig(cctx, ccfg)
	cancel()
	if err != nil {
		return false, err
	}
	defer func() {
		c.stopWorkers(c.takeWorkers(), err == nil) // a broken connection lost the locks: cancel at once
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx) // releases the locks
	}()
	if err := c.prepare(ctx, conn); err != nil {
		return false, err
	}
	if err := c.ensurePool(); err != nil {
		return false, err
	}
	c.mu.Lock()
	c.state = c.stateLocked() // idle until a partition is taken
	c.mu.Unlock()
	c.log.Info("postgres outbox connected", "partitions", c.partitionCount())
	last := time.Time{}
	for {
		if time.Since(last) >= c.cfg.Rebalance {
			if err := c.rebalance(ctx, conn); err != nil {
				return true, err
			}
			last = time.Now()
		}
		wctx, cancel := context.WithTimeout(ctx, c.cfg.Rebalance)
		err := conn.PgConn().WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, nil
		case err != nil && !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err):
			return true, fmt.Errorf("listen: %w", err)
		case conn.IsClosed():
			return true, errors.New("the locking connection closed")
		}
	}
}

// prepare reads the partition count, LISTENs and joins the nodes sharing the outbox.
func (c *Connector) prepare(ctx context.Context, conn *pgx.Conn) error {
	var comment *string
	if err := conn.QueryRow(ctx, `SELECT obj_description(to_regclass($1), 'pg_class')`, c.cfg.Table).Scan(&comment); err != nil {
		return fmt.Errorf("read the table: %w", err)
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, c.cfg.Table).Scan(&exists); err != nil {
		return fmt.Errorf("read the table: %w", err)
	}
	if !exists {
		return fmt.Errorf("table %s does not exist (switchboard connectors schema postgres prints its DDL)", c.cfg.Table)
	}
	n := c.cfg.Partitions
	if comment != nil {
		if tn, ok := partitionsOf(*comment); ok {
			if n != 0 && n != tn {
				return fmt.Errorf("partitions is %d but table %s has %d (its comment, written by its DDL)", n, c.cfg.Table, tn)
			}
			n = tn
		}
	}
	if n == 0 {
		return fmt.Errorf("table %s has no partition count: set partitions, or make it with switchboard connectors schema postgres", c.cfg.Table)
	}
	c.mu.Lock()
	c.partitions = n
	c.mu.Unlock()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{c.name.channel()}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock_shared($1, $2)`, c.lockKey, int32(memberKey)); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	return nil
}

// rebalance counts the nodes sharing the outbox, gives up the partitions held past this
// node's share and tries to take the ones missing from it. It also proves the connection
// holding the locks alive.
func (c *Connector) rebalance(ctx context.Context, conn *pgx.Conn) error {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var nodes int
	if err := conn.QueryRow(qctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2`, c.lockKey, int64(memberKey)).Scan(&nodes); err != nil {
		return fmt.Errorf("count the nodes: %w", err)
	}
	nodes = max(nodes, 1)
	c.mu.Lock()
	total := c.partitions
	c.nodes = nodes
	held := make([]int, 0, len(c.held))
	for p := range c.held {
		held = append(held, p)
	}
	c.mu.Unlock()
	share := (total + nodes - 1) / nodes
	sort.Ints(held)
	var drop, take []int
	for len(held) > share { // give up the last ones: another node takes them at its next rebalance
		drop = append(drop, held[len(held)-1])
		held = held[:len(held)-1]
	}
	if len(held) < share {
		have := map[int]bool{}
		for _, p := range held {
			have[p] = true
		}
		start := rand.N(total) // nodes starting together try different partitions first
		for i := 0; i < total && len(held)+len(take) < share; i++ {
			p := (start + i) % total
			if have[p] {
				continue
			}
			var ok bool
			if err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1, $2)`, c.lockKey, int32(p)).Scan(&ok); err != nil {
				c.regroup(qctx, conn, drop, take) // what is locked is held
				return fmt.Errorf("lock partition %d: %w", p, err)
			}
			if ok {
				take = append(take, p)
			}
		}
	}
	c.regroup(qctx, conn, drop, take)
	return nil
}

// regroup gives up the partitions drop and adds take (locked already): the workers of the
// slots concerned finish their transactions and stop (so that no row of drop is in flight any
// more when its lock is released), and new ones start over the slots' partitions now held.
func (c *Connector) regroup(ctx context.Context, conn *pgx.Conn, drop, take []int) {
	if len(drop)+len(take) == 0 {
		return
	}
	slots := map[int]bool{}
	var old []*worker
	c.mu.Lock()
	for _, p := range drop {
		delete(c.held, p)
		slots[p%c.slotsLocked()] = true
	}
	for _, p := range take {
		c.held[p] = &partition{n: p}
		slots[p%c.slotsLocked()] = true
	}
	for s := range slots {
		if w := c.workers[s]; w != nil {
			old = append(old, w)
			delete(c.workers, s)
		}
	}
	c.mu.Unlock()
	c.stopWorkers(old, true)
	for _, p := range drop {
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, c.lockKey, int32(p)); err != nil {
			c.noteError("lock", fmt.Errorf("unlock partition %d: %w", p, err))
		}
		c.log.Info("postgres outbox partition released", "partition", p)
	}
	for _, p := range take {
		c.log.Info("postgres outbox partition taken", "partition", p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range slots {
		var parts []*partition
		for p, st := range c.held {
			if p%c.slotsLocked() == s {
				parts = append(parts, st)
			}
		}
		if len(parts) == 0 {
			continue
		}
		sort.Slice(parts, func(i, j int) bool { return parts[i].n < parts[j].n })
		w := newWorker(c, parts)
		c.workers[s] = w
		c.wg.Add(1)
		go func() { defer c.wg.Done(); w.run() }()
	}
	c.state = c.stateLocked()
}

// slots is how many workers the connector runs at most: Workers, at most the partitions.
func (c *Connector) slots() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.slotsLocked()
}

func (c *Connector) slotsLocked() int { return max(1, min(c.cfg.Workers, c.partitions)) }

// takeWorkers gives up every partition and removes every worker, and returns them.
func (c *Connector) takeWorkers() []*worker {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := make([]*worker, 0, len(c.workers))
	for s, w := range c.workers {
		ws = append(ws, w)
		delete(c.workers, s)
	}
	clear(c.held)
	c.state = c.stateLocked()
	return ws
}

// stopWorkers stops ws: gracefully (each finishes its transaction, within StopGrace), or at
// once; it returns when they have.
func (c *Connector) stopWorkers(ws []*worker, graceful bool) {
	for _, w := range ws {
		w.stopAfterBatch()
		if !graceful {
			w.cancel()
		}
	}
	grace := time.NewTimer(c.cfg.StopGrace)
	defer grace.Stop()
	for _, w := range ws {
		select {
		case <-w.done:
		case <-grace.C:
			for _, w := range ws {
				w.cancel()
			}
			<-w.done
		}
	}
}

// notified wakes the worker of the partition a NOTIFY names (the locking connection's
// goroutine).
func (c *Connector) notified(payload string) {
	p, err := strconv.Atoi(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil { // a NOTIFY of the application's own: wake them all
		for _, w := range c.workers {
			w.poke()
		}
		return
	}
	if w := c.workers[p%c.slotsLocked()]; w != nil {
		w.poke()
	}
}

func (c *Connector) partitionCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.partitions
}

func (c *Connector) stateLocked() string {
	if c.state == StateStopped {
		return StateStopped
	}
	if len(c.held) > 0 {
		return StateRunning
	}
	return StateIdle
}

func (c *Connector) setState(s string) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

func (c *Connector) noteError(kind string, err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	c.metrics.errors.WithLabelValues(c.cfg.Name, kind).Inc()
	c.mu.Lock()
	first := c.lastErr == "" || time.Since(c.errAt) > 10*time.Second
	c.lastErr, c.errAt = err.Error(), time.Now()
	c.mu.Unlock()
	if first { // at most one line every 10 s while the database is unreachable
		c.log.Warn("postgres outbox error; retrying", "kind", kind, "err", err)
	}
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// txKey is the context key of the transaction a worker's sends run in (the dead letter
// writes in it).
type txKey struct{}

// deadLetter copies a poison row to the dead-letter table, in the transaction that deletes
// (or marks) it, within a savepoint so that a failure leaves the transaction usable. It runs
// on the worker's goroutine (DeliverBatch), the only user of the transaction's connection.
func (c *Connector) deadLetter(ctx context.Context, r *connector.Record, p *connector.Poison) error {
	ref, ok := ctx.Value(txKey{}).(*txRef)
	if !ok {
		return errors.New("outbox: dead letter outside a transaction")
	}
	if _, err := ref.conn.Exec(ctx, "savepoint dead_letter"); err != nil {
		return err
	}
	if _, err := ref.conn.Exec(ctx, c.deadSQL, r.Offset, c.cfg.Name, p.Reason, p.Err.Error()); err != nil {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ref.conn.Exec(rctx, "rollback to savepoint dead_letter") // failing, the transaction fails its commit
		cancel()
		return fmt.Errorf("dead-letter table: %w", err)
	}
	_, err := ref.conn.Exec(ctx, "release savepoint dead_letter")
	return err
}

// Status is what GET /admin/connectors shows of an outbox connector.
type Status struct {
	Name            string            `json:"name"`
	Type            string            `json:"type"`
	State           string            `json:"state"`
	Table           string            `json:"table"`
	DeadLetterTable string            `json:"dead_letter_table,omitempty"`
	Partitions      int               `json:"partitions"` // the table's; 0 before it was read
	Nodes           int               `json:"nodes"`      // nodes sharing the outbox at the last rebalance
	Held            []PartitionStatus `json:"held"`       // the partitions this node holds
	LagSeconds      float64           `json:"lag_seconds"`
	Records         connector.Counts  `json:"records"` // since the start
	LastError       string            `json:"last_error,omitempty"`
	LastErrorAt     *time.Time        `json:"last_error_at,omitempty"`
}

// PartitionStatus is one partition held.
type PartitionStatus struct {
	Partition int `json:"partition"`
	// LastID is the id of the last row sent; 0 before the first.
	LastID int64 `json:"last_id"`
	// LagSeconds is the age of the oldest row known unsent (0: the last read found all sent).
	LagSeconds float64 `json:"lag_seconds"`
	Rows       int64   `json:"rows"` // rows finished (sent or set aside) since it was taken
}

// Status returns the connector's state, partitions held and lag.
func (c *Connector) Status() Status {
	c.mu.Lock()
	s := Status{Name: c.cfg.Name, Type: "postgres_outbox", State: c.state, Table: c.cfg.Table, DeadLetterTable: c.cfg.DeadLetterTable,
		Partitions: c.partitions, Nodes: c.nodes, LastError: c.lastErr, Records: c.deliver.Counts(), Held: []PartitionStatus{}}
	if !c.errAt.IsZero() {
		at := c.errAt
		s.LastErrorAt = &at
	}
	held := make([]*partition, 0, len(c.held))
	for _, p := range c.held {
		held = append(held, p)
	}
	c.mu.Unlock()
	now := time.Now()
	for _, p := range held {
		st := p.status(now)
		s.LagSeconds = max(s.LagSeconds, st.LagSeconds)
		s.Held = append(s.Held, st)
	}
	sort.Slice(s.Held, func(i, j int) bool { return s.Held[i].Partition < s.Held[j].Partition })
	return s
}
