package cluster

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/history"
	"github.com/switchboardhq/switchboard/internal/metricreg"
)

// Durable history on a cluster: the streams of the groups that keep history
// live in JetStream, one JetStream stream per history rule of a namespace.
// A group is one subject of its rule's stream:
//
//	sb.<ns>.hist.<rule>.<hub>.<group>
//
// where <rule> is the rule's hub key and index (streamToken), and <hub>
// (lower-case) and <group> are base64url, so that any group name ('.', '*',
// '>', spaces) is one subject token. Each stored message is the op envelope
// of its send (encodeOp), with its offset and epoch set.
//
// Offsets stay gapless per group whichever node accepts a send: a node
// publishes with Nats-Expected-Last-Subject-Sequence, the stream sequence of
// the group's last message as it knows it, and the offset after that
// message's; when another node stored one meanwhile, JetStream refuses it
// ("wrong last sequence"), and the node reads the group's last message and
// tries again. The epoch is random, chosen by the node that stores the
// first message of a group's run (none before it in the stream: a new
// stream, or every message trimmed away), and carried on by every later
// one; so, as with the local log, a client's offset of another epoch is not
// recoverable.
//
// Delivery: the accepting node does not publish a send on the ops subject;
// every node runs one ordered consumer per stream (from new messages on) and
// hands each stored message to its core node (core.Node.DeliverStored), in
// stream order, which is offset order within a group. An Idempotency-Key
// becomes the message's Nats-Msg-Id (hub and key), so that a retry through
// any node within the window is not stored (nor delivered) twice.
type History struct {
	c         *Cluster
	ns        string
	js        jetstream.JetStream
	policies  history.Policies
	replicas  int
	window    time.Duration
	maxReplay int
	timeout   time.Duration
	maxGroups int
	log       *slog.Logger
	m         historyMetrics

	d      atomic.Pointer[storedDeliverer]
	ready  atomic.Bool   // every stream exists and is consumed
	setup  error         // why not, guarded by mu
	stop   chan struct{} // closed by Close
	done   chan struct{} // closed when the setup goroutine returned
	once   sync.Once
	mu     sync.Mutex
	groups map[string]*groupState // by subject: what this node knows of each group's stream
	conses []jetstream.ConsumeContext
	// streams are the namespace's streams by name, and how far this node
	// delivered each; set before ready.
	streams  map[string]jetstream.Stream
	progress map[string]*progress

	top topCache // TopStreams
}

// topCache keeps TopStreams' answer for topCacheFor: the dashboard polls
// every 1.5 s per viewer, and each answer costs JetStream requests.
type topCache struct {
	mu  sync.Mutex
	at  time.Time
	n   int
	out []history.StreamStat
}

const (
	topCacheFor = 5 * time.Second
	// topMaxSubjects bounds the groups of a stream TopStreams lists the
	// counts of: a stream with more is not listed (its subjects' counts
	// would be pages of JetStream answers).
	topMaxSubjects = 1000
)

// progress is the stream sequence of the last message of a stream this node
// delivered, and the waits for it to reach a sequence.
type progress struct {
	mu      sync.Mutex
	seq     uint64
	waiters []progressWaiter
}

type progressWaiter struct {
	seq  uint64
	done chan struct{}
}

func (p *progress) advance(seq uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq <= p.seq {
		return
	}
	p.seq = seq
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if w.seq <= seq {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
}

// wait returns once the node delivered seq, or ctx's error.
func (p *progress) wait(ctx context.Context, seq uint64) error {
	p.mu.Lock()
	if p.seq >= seq {
		p.mu.Unlock()
		return nil
	}
	w := progressWaiter{seq: seq, done: make(chan struct{})}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		for i, x := range p.waiters {
			if x.done == w.done {
				p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		return ctx.Err()
	}
}

type storedDeliverer struct{ core.StoredDeliverer }

// groupState is what a node knows of a group's stream: the stream sequence,
// offset and epoch of its last message (seq 0: none), or nothing (known
// false). send is held by this node's send to the group in progress.
type groupState struct {
	send   chan struct{}
	refs   int
	known  bool
	seq    uint64
	offset uint64
	epoch  string
	// contended is when a store of this node to the group last lost the
	// race to another node's (see Store).
	contended time.Time
}

// HistoryConfig configures a namespace's clustered history.
type HistoryConfig struct {
	Policies history.Policies
	// Replicas is the number of NATS servers each stream is stored on
	// (1; 3 on a 3-server NATS cluster).
	Replicas int
	// DuplicateWindow is how long an Idempotency-Key is remembered (each
	// stream's duplicate window; at most the rule's max_age). Default 10m.
	DuplicateWindow time.Duration
	// MaxReplay bounds the messages a recovering join replays. Default 500.
	MaxReplay int
	// Timeout bounds each JetStream call (a store, a read). Default the
	// cluster's request timeout.
	Timeout time.Duration
	// MaxGroups bounds the groups whose last position a node caches.
	// Default 100,000.
	MaxGroups int
}

var _ core.DeliveringHistory = (*History)(nil)

// History returns the clustered history of namespace ns (a subject token).
// It creates or updates the streams of its rules (in the background: until
// they exist, sends to groups that keep history answer
// core.ErrHistoryUnavailable) and starts consuming them once Attach gives it
// a node. Close stops it; the cluster's Close does not.
func (c *Cluster) History(ns string, cfg HistoryConfig) (*History, error) {
	if !validNamespace.MatchString(ns) {
		return nil, fmt.Errorf("cluster: namespace %q: want letters, digits or '-'", ns)
	}
	if err := cfg.Policies.Validate(); err != nil {
		return nil, err
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.DuplicateWindow <= 0 {
		cfg.DuplicateWindow = 10 * time.Minute
	}
	if cfg.MaxReplay <= 0 {
		cfg.MaxReplay = 500
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = c.cfg.RequestTimeout
	}
	if cfg.MaxGroups <= 0 {
		cfg.MaxGroups = 100_000
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, fmt.Errorf("cluster: jetstream: %w", err)
	}
	m, err := newHistoryMetrics(c.cfg.Registerer, ns)
	if err != nil {
		return nil, err
	}
	h := &History{c: c, ns: ns, js: js, policies: cfg.Policies, replicas: cfg.Replicas, window: cfg.DuplicateWindow,
		maxReplay: cfg.MaxReplay, timeout: cfg.Timeout, maxGroups: cfg.MaxGroups, m: m,
		log: c.log.With("namespace", ns, "part", "history"), stop: make(chan struct{}), done: make(chan struct{}),
		groups: map[string]*groupState{}, setup: errors.New("the streams are not set up yet")}
	return h, nil
}

// Attach implements core.DeliveringHistory: it starts setting up and
// consuming the streams, delivering to d.
func (h *History) Attach(d core.StoredDeliverer) {
	h.d.Store(&storedDeliverer{d})
	go h.run()
}

// run sets the streams up, retrying every second until it succeeds or
// Close; then it waits for Close.
func (h *History) run() {
	defer close(h.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	logged := false
	for {
		err := h.setupStreams()
		if err == nil {
			break
		}
		h.mu.Lock()
		h.setup = err
		h.mu.Unlock()
		if !logged {
			h.log.Error("durable history: cannot set up the JetStream streams; sends to groups that keep history answer 503 until it can (is JetStream enabled on the NATS servers?)", "err", err)
			logged = true
		}
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
	}
	h.mu.Lock()
	h.setup = nil
	h.mu.Unlock()
	h.ready.Store(true)
	h.log.Info("durable history: JetStream streams ready", "streams", len(h.streamConfigs()))
	<-h.stop
}

// Close stops consuming. Later calls do nothing.
func (h *History) Close() {
	h.once.Do(func() {
		close(h.stop)
		if h.d.Load() != nil {
			<-h.done
		}
		h.mu.Lock()
		for _, cc := range h.conses {
			cc.Stop()
		}
		h.conses = nil
		h.mu.Unlock()
	})
}

// streamConfigs are the streams of the namespace's rules.
func (h *History) streamConfigs() []jetstream.StreamConfig {
	var cfgs []jetstream.StreamConfig
	keys := make([]string, 0, len(h.policies))
	for k := range h.policies {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for i, r := range h.policies[k] {
			tok := streamToken(k, i)
			dup := min(h.window, r.MaxAge)
			cfgs = append(cfgs, jetstream.StreamConfig{
				Name:              "SB_HIST_" + h.ns + "_" + tok,
				Description:       fmt.Sprintf("Switchboard durable history: namespace %s, hubs.%s.history[%d] (pattern %q)", h.ns, k, i, r.Pattern),
				Subjects:          []string{h.subjectPrefix(tok) + ">"},
				Retention:         jetstream.LimitsPolicy,
				MaxMsgsPerSubject: int64(r.MaxMessages),
				MaxAge:            r.MaxAge,
				Storage:           jetstream.FileStorage,
				Replicas:          h.replicas,
				Duplicates:        dup,
				Discard:           jetstream.DiscardOld,
			})
		}
	}
	return cfgs
}

// setupStreams creates each stream, or updates one whose configuration
// differs (a node with other history rules: said loudly, the last node
// started wins), and starts consuming them.
func (h *History) setupStreams() error {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	d := h.d.Load()
	var conses []jetstream.ConsumeContext
	streams, progs := map[string]jetstream.Stream{}, map[string]*progress{}
	defer func() {
		if len(conses) > 0 && h.streams == nil { // failed: stop what started, start over
			for _, cc := range conses {
				cc.Stop()
			}
		}
	}()
	for _, cfg := range h.streamConfigs() {
		s, err := h.js.Stream(ctx, cfg.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if s, err = h.js.CreateStream(ctx, cfg); err != nil {
				return fmt.Errorf("creating stream %s: %w", cfg.Name, err)
			}
		case err != nil:
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		default:
			have := s.CachedInfo().Config
			if diff := streamDiff(have, cfg); diff != "" {
				h.m.errors.WithLabelValues(h.ns, "config_mismatch").Inc()
				h.log.Error("durable history: the JetStream stream of a history rule differs from this node's configuration (the nodes of a cluster must share hubs.*.history and cluster.history_replicas); updating it to this node's",
					"stream", cfg.Name, "differences", diff)
				if s, err = h.js.UpdateStream(ctx, cfg); err != nil {
					return fmt.Errorf("updating stream %s: %w", cfg.Name, err)
				}
			}
		}
		// From the messages after the stream's last one now: the
		// progress starts there (see Top).
		info, err := s.Info(ctx)
		if err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		prog := &progress{seq: info.State.LastSeq}
		cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
			OptStartSeq: info.State.LastSeq + 1})
		if err != nil {
			return fmt.Errorf("consumer of stream %s: %w", cfg.Name, err)
		}
		cc, err := cons.Consume(func(msg jetstream.Msg) { h.dispatch(d, prog, msg) },
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				// The ordered consumer recreates itself from the last
				// message it delivered (a lost connection, missed
				// heartbeats): nothing is skipped.
				h.m.errors.WithLabelValues(h.ns, "consume").Inc()
				h.log.Warn("durable history: consuming a stream", "stream", cfg.Name, "err", err)
			}))
		if err != nil {
			return fmt.Errorf("consuming stream %s: %w", cfg.Name, err)
		}
		conses = append(conses, cc)
		streams[cfg.Name] = s
		progs[cfg.Name] = prog
	}
	h.mu.Lock()
	h.conses = conses
	h.mu.Unlock()
	h.streams, h.progress = streams, progs
	return nil
}

func streamDiff(have, want jetstream.StreamConfig) string {
	var d []string
	if !slices.Equal(have.Subjects, want.Subjects) {
		d = append(d, fmt.Sprintf("subjects %v, want %v", have.Subjects, want.Subjects))
	}
	if have.MaxMsgsPerSubject != want.MaxMsgsPerSubject {
		d = append(d, fmt.Sprintf("max_messages %d, want %d", have.MaxMsgsPerSubject, want.MaxMsgsPerSubject))
	}
	if have.MaxAge != want.MaxAge {
		d = append(d, fmt.Sprintf("max_age %s, want %s", have.MaxAge, want.MaxAge))
	}
	if have.Replicas != want.Replicas {
		d = append(d, fmt.Sprintf("replicas %d, want %d", have.Replicas, want.Replicas))
	}
	if have.Duplicates != want.Duplicates {
		d = append(d, fmt.Sprintf("duplicate window %s, want %s", have.Duplicates, want.Duplicates))
	}
	return strings.Join(d, "; ")
}

var tokenSafe = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// streamToken names rule i of the rules keyed key: in stream names and
// subjects, so only [A-Za-z0-9_-].
func streamToken(key string, i int) string {
	if !tokenSafe.MatchString(key) {
		key = "x" + strings.ReplaceAll(base64.RawURLEncoding.EncodeToString([]byte(key)), "-", "_")
	}
	return fmt.Sprintf("%s-%d", key, i)
}

func (h *History) subjectPrefix(tok string) string { return "sb." + h.ns + ".hist." + tok + "." }

// subject is the subject of group of hub and the name of its rule's
// stream; ok is false when the group keeps no history.
func (h *History) subject(hub, group string) (subj, stream string, ok bool) {
	key, i, _, ok := h.policies.RuleOf(hub, group)
	if !ok {
		return "", "", false
	}
	tok := streamToken(key, i)
	return h.subjectPrefix(tok) + base64.RawURLEncoding.EncodeToString([]byte(strings.ToLower(hub))) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(group)), "SB_HIST_" + h.ns + "_" + tok, true
}

// unavailable wraps core.ErrHistoryUnavailable and history.ErrClusterStore
// around cause, and counts it.
func (h *History) unavailable(kind string, cause error) error {
	h.m.errors.WithLabelValues(h.ns, kind).Inc()
	return fmt.Errorf("cluster: durable history: %w: %w: %w", core.ErrHistoryUnavailable, history.ErrClusterStore, cause)
}

// Unavailable returns why sends to groups that keep history are refused,
// nil when they are accepted.
func (h *History) Unavailable() error {
	if !h.c.nc.IsConnected() {
		return fmt.Errorf("%w: %w: NATS connection %s", core.ErrHistoryUnavailable, history.ErrClusterStore, strings.ToLower(h.c.nc.Status().String()))
	}
	if !h.ready.Load() {
		h.mu.Lock()
		err := h.setup
		h.mu.Unlock()
		return fmt.Errorf("%w: %w: %w", core.ErrHistoryUnavailable, history.ErrClusterStore, err)
	}
	return nil
}

// Keeps implements core.History.
func (h *History) Keeps(hub, group string) bool {
	_, ok := h.policies.Lookup(hub, group)
	return ok
}

// Append implements core.History; it is not used (core calls Store on a
// DeliveringHistory).
func (h *History) Append(context.Context, string, string, *core.Message) (func() error, error) {
	return nil, errors.New("cluster: durable history: Append is not used; core calls Store")
}

// maxStoreAttempts bounds the tries of a store that lost the race for the
// group's next offset to other nodes.
const maxStoreAttempts = 64

// contendedFor is how long after a lost race a node reads the group's last
// message before each store instead of trusting what it knows (see Store).
const contendedFor = time.Second

// Store implements core.DeliveringHistory.
func (h *History) Store(ctx context.Context, op *core.Op) (err error) {
	m := op.Message
	defer func() {
		if err != nil { // not stored (or a duplicate): no place of its own
			m.Offset, m.Epoch = 0, ""
		}
	}()
	subj, _, ok := h.subject(op.Hub, op.Target.Name)
	if !ok {
		return fmt.Errorf("cluster: durable history: %s/%s: %w", op.Hub, op.Target.Name, history.ErrNotKept)
	}
	if err := h.Unavailable(); err != nil {
		h.m.errors.WithLabelValues(h.ns, "unavailable").Inc()
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	g := h.acquire(subj)
	defer h.releaseGroup(subj, g)
	select {
	case g.send <- struct{}{}:
	case <-ctx.Done():
		return h.unavailable("timeout", ctx.Err())
	}
	defer func() { <-g.send }()
	msgID := ""
	if m.IdempotencyKey != "" {
		msgID = strings.ToLower(op.Hub) + " " + m.IdempotencyKey
	}
	for attempt := 0; attempt < maxStoreAttempts; attempt++ {
		h.mu.Lock()
		known, seq, offset, epoch := g.known, g.seq, g.offset, g.epoch
		// Fairness: a node that just stored knows the group's last
		// message from its own ack and could go again at once, while one
		// that lost must read it first; under contention the winners
		// would keep winning. So while the group is contended every store
		// reads the last message first, and nodes race on equal terms.
		contended := time.Since(g.contended) < contendedFor
		h.mu.Unlock()
		if attempt > 0 {
			// Spread the retries of the nodes that lost.
			t := time.NewTimer(time.Duration(mathrand.Int64N(int64(min(attempt, 8)) * int64(200*time.Microsecond))))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return h.unavailable("timeout", ctx.Err())
			}
		}
		if !known || contended {
			last, err := h.last(ctx, subj)
			if err != nil {
				return h.unavailable("read", err)
			}
			h.learn(g, last.seq, last.offset, last.epoch)
			seq, offset, epoch = last.seq, last.offset, last.epoch
		}
		if seq == 0 {
			epoch = newEpoch() // the first message of the group's run
		}
		m.Offset, m.Epoch = offset+1, epoch
		msg := &nats.Msg{Subject: subj, Data: encodeOp(nil, h.c.cfg.NodeID, op), Header: nats.Header{}}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(seq)}
		if msgID != "" {
			opts = append(opts, jetstream.WithMsgID(msgID))
		}
		ack, err := h.js.PublishMsg(ctx, msg, opts...)
		var apiErr *jetstream.APIError
		switch {
		case err == nil && ack.Duplicate:
			return h.duplicate(ctx, op, ack.Sequence)
		case err == nil:
			h.learn(g, ack.Sequence, offset+1, epoch)
			h.m.stored.WithLabelValues(h.ns).Inc()
			return nil
		case errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
			// Another node stored the group's next offset first.
			h.m.conflicts.WithLabelValues(h.ns).Inc()
			h.mu.Lock()
			g.known, g.contended = false, time.Now()
			h.mu.Unlock()
		default:
			h.forget(g) // a store that timed out may have happened
			return h.unavailable("store", err)
		}
	}
	return h.unavailable("contention", fmt.Errorf("the group's next offset was taken by other nodes %d times in a row", maxStoreAttempts))
}

// duplicate answers a store JetStream found a duplicate of (same
// Nats-Msg-Id within the window): the first message's offset and epoch, or
// history.ErrKeyReused when it was another request.
func (h *History) duplicate(ctx context.Context, op *core.Op, seq uint64) error {
	h.m.duplicates.WithLabelValues(h.ns).Inc()
	_, st, err := h.streamOf(ctx, op.Hub, op.Target.Name)
	if err != nil {
		return h.unavailable("read", err)
	}
	raw, err := st.GetMsg(ctx, seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// Stored, and trimmed by retention since: its place is gone, the
		// answer is still that it was sent.
		return &core.DuplicateError{}
	case err != nil:
		return h.unavailable("read", fmt.Errorf("reading the first send of an idempotency key: %w", err))
	}
	first, _, err := decodeOp(raw.Data)
	if err != nil {
		return h.unavailable("decode", err)
	}
	m, fm := op.Message, first.Message
	if subj, _, _ := h.subject(op.Hub, op.Target.Name); fm == nil || raw.Subject != subj || fm.Type != m.Type || string(fm.Data) != string(m.Data) {
		return fmt.Errorf("cluster: durable history: %w", history.ErrKeyReused)
	}
	return &core.DuplicateError{Offset: fm.Offset, Epoch: fm.Epoch}
}

// acquire returns the state of subj, held (refs) until releaseGroup.
func (h *History) acquire(subj string) *groupState {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.groups[subj]
	if g == nil {
		if len(h.groups) >= h.maxGroups {
			for k, o := range h.groups { // drop idle entries: they are read again when needed
				if o.refs == 0 {
					delete(h.groups, k)
				}
				if len(h.groups) < h.maxGroups/2 {
					break
				}
			}
		}
		g = &groupState{send: make(chan struct{}, 1)}
		h.groups[subj] = g
	}
	g.refs++
	return g
}

func (h *History) releaseGroup(subj string, g *groupState) {
	h.mu.Lock()
	g.refs--
	h.mu.Unlock()
}

// learn records that the group's last message is at seq, unless a later one
// is known already.
func (h *History) learn(g *groupState, seq, offset uint64, epoch string) {
	h.mu.Lock()
	if !g.known || seq >= g.seq {
		g.known, g.seq, g.offset, g.epoch = true, seq, offset, epoch
	}
	h.mu.Unlock()
}

func (h *History) forget(g *groupState) {
	h.mu.Lock()
	g.known = false
	h.mu.Unlock()
}

// dispatch delivers a stored message to the node and keeps this node's
// knowledge of its group's last message fresh. The consumer calls it for
// one stream on one goroutine, in stream order.
func (h *History) dispatch(d *storedDeliverer, prog *progress, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err == nil {
		defer prog.advance(meta.Sequence.Stream)
	}
	data := msg.Data()
	op, _, err := decodeOp(data)
	if err != nil || op.Message == nil || op.Kind != core.OpSend || op.Target.Kind != core.ToGroup {
		h.m.errors.WithLabelValues(h.ns, "decode").Inc()
		h.log.Error("durable history: dropped a stored message that is not a group send", "subject", msg.Subject(), "bytes", len(data), "err", err)
		return
	}
	if meta != nil {
		h.mu.Lock()
		g := h.groups[msg.Subject()]
		h.mu.Unlock()
		if g != nil {
			h.learn(g, meta.Sequence.Stream, op.Message.Offset, op.Message.Epoch)
		}
	}
	op.Message.Group, op.Message.From = op.Target.Name, core.FromGroup
	// The delivery latency counts from the arrival from the stream (as the
	// broker's does from NATS): no other node's clock is compared.
	op.Message.Accepted = time.Now().UnixNano()
	h.m.delivered.WithLabelValues(h.ns).Inc()
	if d != nil {
		d.DeliverStored(op)
	}
}

// position is a stored message's place: stream sequence, offset, epoch.
type position struct {
	seq    uint64
	offset uint64
	epoch  string
}

func (h *History) streamOf(ctx context.Context, hub, group string) (string, jetstream.Stream, error) {
	subj, name, ok := h.subject(hub, group)
	if !ok {
		return "", nil, history.ErrNotKept
	}
	if !h.ready.Load() {
		return "", nil, h.Unavailable()
	}
	st := h.streams[name]
	if st == nil {
		return "", nil, fmt.Errorf("cluster: durable history: no stream %s", name)
	}
	return subj, st, nil
}

// last returns the position of subj's last message; seq 0 when it has none.
func (h *History) last(ctx context.Context, subj string) (position, error) {
	if !h.ready.Load() {
		return position{}, h.Unavailable()
	}
	st := h.streams[h.streamName(subj)]
	if st == nil {
		return position{}, fmt.Errorf("cluster: durable history: no stream for %s", subj)
	}
	raw, err := st.GetLastMsgForSubject(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return position{}, nil
	case err != nil:
		return position{}, err
	}
	return rawPosition(raw)
}

// streamName is the stream of subj: SB_HIST_<ns>_<rule token>.
func (h *History) streamName(subj string) string {
	rest := strings.TrimPrefix(subj, "sb."+h.ns+".hist.")
	tok, _, _ := strings.Cut(rest, ".")
	return "SB_HIST_" + h.ns + "_" + tok
}

func rawPosition(raw *jetstream.RawStreamMsg) (position, error) {
	off, epoch, err := storedPosition(raw.Data)
	if err != nil {
		return position{}, err
	}
	return position{seq: raw.Sequence, offset: off, epoch: epoch}, nil
}

// storedPosition reads the offset and epoch of a stored message's envelope.
func storedPosition(b []byte) (uint64, string, error) {
	op, _, err := decodeOp(b)
	if err != nil {
		return 0, "", err
	}
	if op.Message == nil || op.Message.Offset == 0 || op.Message.Epoch == "" {
		return 0, "", fmt.Errorf("%w: a stored message without offset or epoch", errEnvelope)
	}
	return op.Message.Offset, op.Message.Epoch, nil
}

func newEpoch() string {
	var b [8]byte
	for {
		rand.Read(b[:])
		if e := binary.LittleEndian.Uint64(b[:]); e != 0 {
			return history.FormatEpoch(e)
		}
	}
}

// Top implements core.History: it reads the group's last message from
// JetStream (the stream's leader: a message any node delivered is there),
// and returns once this node delivered it too. So a recovering join (core's
// joinStored) that replays up to top gets no message up to top live again:
// those were delivered before it joins, and the later ones reach it once.
// When this node does not deliver it within the timeout (or the read
// fails), it returns 0 and "": the join is then not recovered.
func (h *History) Top(hub, group string) (uint64, string) {
	subj, name, ok := h.subject(hub, group)
	if !ok {
		return 0, ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	p, err := h.last(ctx, subj)
	if err != nil {
		h.m.errors.WithLabelValues(h.ns, "read").Inc()
		h.log.Warn("durable history: reading a group's last offset", "hub", hub, "err", err)
		return 0, ""
	}
	if p.seq > 0 {
		if err := h.progress[name].wait(ctx, p.seq); err != nil {
			h.m.errors.WithLabelValues(h.ns, "timeout").Inc()
			h.log.Warn("durable history: this node did not deliver a group's last message in time", "hub", hub, "seq", p.seq, "err", err)
			return 0, ""
		}
	}
	return p.offset, p.epoch
}

// Replay implements core.History.
func (h *History) Replay(hub, group string, from core.StreamPosition, upTo uint64) ([]*core.Message, bool) {
	fail := func(reason string) ([]*core.Message, bool) {
		h.m.unrecoverable.WithLabelValues(h.ns, reason).Inc()
		return nil, false
	}
	switch {
	case from.Offset > upTo:
		return fail("ahead")
	case upTo-from.Offset > uint64(h.maxReplay):
		return fail("too_many")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*h.timeout)
	defer cancel()
	if from.Offset == upTo { // nothing to replay; the epoch must still be the stream's
		subj, _, _ := h.subject(hub, group)
		p, err := h.last(ctx, subj)
		switch {
		case err != nil:
			return fail("error")
		case from.Epoch != "" && from.Epoch != p.epoch:
			return fail("epoch")
		}
		return nil, true
	}
	page, err := h.read(ctx, hub, group, from.Offset, upTo, h.maxReplay)
	switch {
	case err != nil && !errors.Is(err, history.ErrOffsetGone) && !errors.Is(err, history.ErrOffsetAhead):
		return fail("error")
	case from.Epoch != "" && from.Epoch != page.Epoch:
		return fail("epoch")
	case errors.Is(err, history.ErrOffsetGone):
		return fail("gone")
	case err != nil:
		return fail("ahead")
	case uint64(len(page.Records)) != upTo-from.Offset:
		return fail("incomplete")
	}
	msgs := make([]*core.Message, len(page.Records))
	for i := range page.Records {
		msgs[i] = page.Message(group, i)
	}
	h.m.replayed.WithLabelValues(h.ns).Add(float64(len(msgs)))
	return msgs, true
}

// CatchUp is history.Service.CatchUp on the cluster's streams (the
// catch-up API and fetchHistory): the same errors, positions and pages.
func (h *History) CatchUp(hub, group string, after uint64, epoch string, limit int) (history.Messages, error) {
	if !h.Keeps(hub, group) {
		return history.Messages{}, history.ErrNotKept
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*h.timeout)
	defer cancel()
	page, err := h.read(ctx, hub, group, after, 0, limit)
	if epoch != "" && epoch != page.Epoch {
		h.m.unrecoverable.WithLabelValues(h.ns, "epoch").Inc()
		return history.Messages{Epoch: page.Epoch, Offset: page.Offset, Oldest: page.Oldest}, history.ErrEpochChanged
	}
	switch {
	case errors.Is(err, history.ErrOffsetGone), errors.Is(err, history.ErrOffsetAhead):
		if errors.Is(err, history.ErrOffsetGone) {
			h.m.unrecoverable.WithLabelValues(h.ns, "gone").Inc()
		}
		page.Records = nil
		return page, err
	case err != nil:
		return history.Messages{}, h.unavailable("read", err)
	}
	h.m.replayed.WithLabelValues(h.ns).Add(float64(len(page.Records)))
	return page, nil
}

// IdempotentReplay counts a send answered from the idempotency index.
func (h *History) IdempotentReplay(string) { h.m.idemReplays.WithLabelValues(h.ns).Inc() }

// read returns up to limit (0: no limit but upTo) messages of the group
// after offset after, up to offset upTo (0: the last), with the stream's
// position; ErrOffsetGone and ErrOffsetAhead as the local log's Read.
func (h *History) read(ctx context.Context, hub, group string, after, upTo uint64, limit int) (history.Messages, error) {
	subj, st, err := h.streamOf(ctx, hub, group)
	if err != nil {
		return history.Messages{}, err
	}
	lastRaw, err := st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		if after > 0 {
			return history.Messages{Oldest: 1}, history.ErrOffsetAhead
		}
		return history.Messages{Oldest: 1}, nil
	}
	if err != nil {
		return history.Messages{}, err
	}
	last, err := rawPosition(lastRaw)
	if err != nil {
		return history.Messages{}, err
	}
	firstRaw, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(subj))
	if err != nil {
		return history.Messages{}, fmt.Errorf("reading the group's oldest message: %w", err)
	}
	first, err := rawPosition(firstRaw)
	if err != nil {
		return history.Messages{}, err
	}
	page := history.Messages{Epoch: last.epoch, Offset: last.offset, Oldest: first.offset}
	if first.epoch != last.epoch { // cannot be: a new run starts only when no message is left
		page.Oldest = last.offset
		first = last
	}
	if upTo == 0 || upTo > last.offset {
		upTo = last.offset
	}
	switch {
	case after+1 < page.Oldest:
		return page, history.ErrOffsetGone
	case after > last.offset:
		return page, history.ErrOffsetAhead
	case after >= upTo:
		return page, nil
	}
	n := int(upTo - after)
	if limit > 0 && n > limit {
		n = limit
	}
	// The stream sequence of offset after+1: offsets grow with sequences
	// within a subject, so a binary search over [first.seq, last.seq].
	want := after + 1
	seq := first.seq
	if want == last.offset {
		seq = last.seq
	} else if want != first.offset {
		lo, hi := first.seq, last.seq
		for lo < hi {
			mid := lo + (hi-lo)/2
			raw, err := st.GetMsg(ctx, mid, jetstream.WithGetMsgSubject(subj))
			if err != nil {
				return page, fmt.Errorf("searching offset %d: %w", want, err)
			}
			p, err := rawPosition(raw)
			if err != nil {
				return page, err
			}
			switch {
			case p.offset == want:
				lo, hi = p.seq, p.seq
			case p.offset > want:
				hi = mid - 1
			default:
				lo = p.seq + 1
			}
		}
		seq = lo
	}
	page.Records = make([]history.Record, 0, n)
	err = h.fetch(ctx, st, subj, seq, n, func(seq uint64, at time.Time, data []byte) bool {
		op, _, err := decodeOp(data)
		if err != nil || op.Message == nil {
			h.m.errors.WithLabelValues(h.ns, "decode").Inc()
			return false
		}
		m := op.Message
		if m.Offset != want+uint64(len(page.Records)) || m.Epoch != page.Epoch {
			return false
		}
		page.Records = append(page.Records, history.Record{Hub: hub, Group: group, Offset: m.Offset, Time: at.UnixNano(),
			Type: uint8(m.Type), FromUserID: m.FromUserID, Data: m.Data})
		return true
	})
	if err != nil {
		return page, err
	}
	if len(page.Records) == 0 && n > 0 {
		return page, history.ErrOffsetGone // trimmed meanwhile
	}
	if len(page.Records) > 0 {
		page.More = page.Records[len(page.Records)-1].Offset < last.offset
	}
	return page, nil
}

// fetch reads up to n messages of subj from stream sequence seq on, in
// order, handing each to f until it returns false: through an ephemeral
// consumer of the subject (one request to create it, the messages streamed
// in one batch, one to delete it) rather than one request per message.
func (h *History) fetch(ctx context.Context, st jetstream.Stream, subj string, seq uint64, n int, f func(seq uint64, at time.Time, data []byte) bool) error {
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject: subj, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: seq,
		AckPolicy: jetstream.AckNonePolicy, MemoryStorage: true, Replicas: 1,
		InactiveThreshold: 30 * time.Second, // removed by the server if the delete below is lost
	})
	if err != nil {
		return fmt.Errorf("reading the group's messages: %w", err)
	}
	name := cons.CachedInfo().Name
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.timeout)
		defer cancel()
		if err := st.DeleteConsumer(dctx, name); err != nil {
			h.log.Debug("durable history: deleting a read's consumer", "consumer", name, "err", err)
		}
	}()
	deadline, _ := ctx.Deadline()
	wait := time.Until(deadline)
	if wait <= 0 || wait > h.timeout {
		wait = h.timeout
	}
	got := 0
	for got < n {
		batch, err := cons.Fetch(n-got, jetstream.FetchMaxWait(wait))
		if err != nil {
			return fmt.Errorf("reading the group's messages: %w", err)
		}
		before := got
		for msg := range batch.Messages() {
			meta, err := msg.Metadata()
			if err != nil {
				continue
			}
			if got < n && f(meta.Sequence.Stream, meta.Timestamp, msg.Data()) {
				got++
				continue
			}
			got = n // the run ended: drain the batch
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("reading the group's messages: %w", err)
		}
		if got == before {
			break // nothing more within the wait: trimmed meanwhile
		}
	}
	return nil
}

type historyMetrics struct {
	stored, conflicts, duplicates, delivered, replayed, idemReplays *prometheus.CounterVec
	errors, unrecoverable                                           *prometheus.CounterVec
}

func newHistoryMetrics(reg prometheus.Registerer, ns string) (historyMetrics, error) {
	cv := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "switchboard", Subsystem: "cluster_history", Name: name, Help: help}, labels)
	}
	m := historyMetrics{
		stored:      cv("stored_total", "Messages this node stored in the JetStream streams of groups that keep history, by namespace.", "namespace"),
		conflicts:   cv("offset_conflicts_total", "Stores retried because another node took the group's next offset first, by namespace.", "namespace"),
		duplicates:  cv("duplicates_total", "Stores JetStream found to be retries of an Idempotency-Key within the window (nothing stored again), by namespace.", "namespace"),
		delivered:   cv("delivered_total", "Stored messages this node received from the streams and delivered to its members, by namespace.", "namespace"),
		replayed:    cv("replayed_messages_total", "Messages read from the streams for recovering joins and catch-up reads, by namespace.", "namespace"),
		idemReplays: cv("idempotent_replays_total", "REST sends answered as retries of an earlier send with the same Idempotency-Key, by namespace.", "namespace"),
		errors: cv("errors_total", "Durable-history errors by namespace and kind: unavailable (NATS down or the streams not set up: 503), store (a store failed or timed out: 503), timeout, contention (the next offset was taken by other nodes too often: 503), read (a read of the stream failed), decode (a stored message that is not a group send), consume (the stream's consumer lost its connection or heartbeats: it resumes after the last message it delivered), config_mismatch (a stream's limits differed from this node's history rules at start: updated to this node's).",
			"namespace", "kind"),
		unrecoverable: cv("unrecoverable_replays_total", "Recoveries and catch-up reads that could not be served, by namespace and reason (epoch, gone, too_many, ahead, incomplete, error).", "namespace", "reason"),
	}
	for _, v := range []**prometheus.CounterVec{&m.stored, &m.conflicts, &m.duplicates, &m.delivered, &m.replayed, &m.idemReplays, &m.errors, &m.unrecoverable} {
		var err error
		if *v, err = metricreg.Register(reg, "cluster", *v); err != nil {
			return historyMetrics{}, err
		}
	}
	for _, k := range []string{"unavailable", "store", "timeout", "contention", "read", "decode", "consume", "config_mismatch"} {
		m.errors.WithLabelValues(ns, k)
	}
	return m, nil
}

// TopStreams returns the n groups with the most retained messages in the
// namespace's streams (their bytes are not known per group: -1), with the
// last offset and epoch read from each one's last message, and their
// rule's retention. It costs two JetStream requests per stream and one per
// group listed, at most once every topCacheFor; the groups of a stream
// with more than topMaxSubjects are not listed.
func (h *History) TopStreams(ctx context.Context, n int) []history.StreamStat {
	out := []history.StreamStat{}
	if n <= 0 || !h.ready.Load() {
		return out
	}
	h.top.mu.Lock()
	defer h.top.mu.Unlock()
	if h.top.n == n && time.Since(h.top.at) < topCacheFor {
		return h.top.out
	}
	type cand struct {
		subj  string
		count uint64
		cfg   jetstream.StreamConfig
	}
	var top []cand
	for _, cfg := range h.streamConfigs() {
		st := h.streams[cfg.Name]
		if st == nil {
			continue
		}
		info, err := st.Info(ctx)
		if err != nil || info.State.NumSubjects == 0 || info.State.NumSubjects > topMaxSubjects {
			continue
		}
		info, err = st.Info(ctx, jetstream.WithSubjectFilter(cfg.Subjects[0]))
		if err != nil {
			h.m.errors.WithLabelValues(h.ns, "read").Inc()
			continue
		}
		for subj, count := range info.State.Subjects {
			top = append(top, cand{subj: subj, count: count, cfg: cfg})
		}
	}
	slices.SortFunc(top, func(a, b cand) int { return cmp.Or(cmp.Compare(b.count, a.count), strings.Compare(a.subj, b.subj)) })
	top = top[:min(n, len(top))]
	for _, c := range top {
		hub, group, ok := h.groupOf(c.subj)
		if !ok {
			continue
		}
		ss := history.StreamStat{Hub: hub, Group: group, Bytes: -1, Messages: int(c.count),
			MaxMessages: int(c.cfg.MaxMsgsPerSubject), MaxAge: c.cfg.MaxAge.String()}
		if p, err := h.last(ctx, c.subj); err == nil && p.offset > 0 {
			// Offsets are gapless within a group: the retained ones are
			// the last count.
			ss.Last, ss.Epoch = p.offset, p.epoch
			ss.First = p.offset - min(c.count, p.offset) + 1
		} else if err != nil {
			h.m.errors.WithLabelValues(h.ns, "read").Inc()
		}
		out = append(out, ss)
	}
	h.top.at, h.top.n, h.top.out = time.Now(), n, out
	return out
}

// groupOf is the hub and group of a group's subject (subject's inverse).
func (h *History) groupOf(subj string) (hub, group string, ok bool) {
	rest, ok := strings.CutPrefix(subj, "sb."+h.ns+".hist.")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	gb, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil {
		return "", "", false
	}
	return string(hb), string(gb), true
}

// HistorySummary is what GET /admin/history shows on a cluster.
type HistorySummary struct {
	Policies map[string][]history.RuleView `json:"policies"`
	Store    string                        `json:"store"` // "jetstream"
	Streams  []string                      `json:"streams"`
	Replicas int                           `json:"replicas"`
	// Unavailable says why sends to history groups are refused; "" when
	// they are not.
	Unavailable string `json:"unavailable,omitempty"`
}

// Summary describes the rules and their streams.
func (h *History) Summary() HistorySummary {
	sum := HistorySummary{Policies: map[string][]history.RuleView{}, Store: "jetstream", Replicas: h.replicas, Streams: []string{}}
	for _, c := range h.streamConfigs() {
		sum.Streams = append(sum.Streams, c.Name)
	}
	for hub, rules := range h.policies {
		for _, r := range rules {
			sum.Policies[hub] = append(sum.Policies[hub], history.RuleView{Pattern: r.Pattern, MaxMessages: r.MaxMessages, MaxAge: r.MaxAge.String()})
		}
	}
	if err := h.Unavailable(); err != nil {
		sum.Unavailable = err.Error()
	}
	return sum
}
