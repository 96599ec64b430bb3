package bench

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/auth"
)

// ConnSpec describes one connection a worker opens.
type ConnSpec struct {
	ID     int      `json:"id"`               // global index: source address, and stream id when it publishes
	User   string   `json:"user,omitempty"`   // token "sub"
	Groups []string `json:"groups,omitempty"` // token "webpubsub.group": joined on connect
	Roles  []string `json:"roles,omitempty"`  // token "role"
	Key    string   `json:"key"`              // which expectation set applies (group or user name)
}

// Request is one command from the coordinator to a worker.
type Request struct {
	ID uint64 `json:"id"`
	Op string `json:"op"` // init, mint, connect, start, publish, collect, close, stats

	// init
	ConnString string `json:"connString,omitempty"`
	// init: the endpoints of the cluster's other nodes; connection i goes to node
	// i mod (1 + len(Nodes)), node 0 being ConnString's.
	Nodes     []string `json:"nodes,omitempty"`
	Hub       string   `json:"hub,omitempty"`
	SourceIPs int      `json:"sourceIPs,omitempty"`
	// init, SignalR scenarios: the SignalR endpoint's connection string, the hub protocol
	// (json, messagepack) and how often clients ping (0: DefaultSignalRPing). With
	// SignalRConnString set the worker's clients are SignalR clients.
	SignalRConnString string        `json:"signalrConnString,omitempty"`
	Protocol          string        `json:"protocol,omitempty"`
	PingInterval      time.Duration `json:"pingInterval,omitempty"`

	// connect
	Conns       []ConnSpec `json:"conns,omitempty"`
	Dialers     int        `json:"dialers,omitempty"`
	FreshTokens bool       `json:"freshTokens,omitempty"`

	// start: messages sent at or after MeasureFrom (unix nanos) are counted
	MeasureFrom int64 `json:"measureFrom,omitempty"`

	// publish: every connection sends Rate messages/s of Size bytes to its first group until Until
	Rate  float64 `json:"rate,omitempty"`
	Size  int     `json:"size,omitempty"`
	Until int64   `json:"until,omitempty"`

	// collect: key → stream → messages sent; wait at most Drain without progress
	Expect map[string]map[uint32]uint64 `json:"expect,omitempty"`
	Drain  time.Duration                `json:"drain,omitempty"`
}

// Response answers one Request.
type Response struct {
	ID  uint64 `json:"id"`
	Err string `json:"err,omitempty"`

	Connected     int64            `json:"connected,omitempty"`
	Sent          int64            `json:"sent,omitempty"`
	Received      int64            `json:"received,omitempty"`
	ConnectErrors map[string]int64 `json:"connectErrors,omitempty"`
	ConnectHist   []byte           `json:"connectHist,omitempty"`

	Streams map[uint32]uint64 `json:"streams,omitempty"` // publish: messages sent per stream

	Presence    int64            `json:"presence,omitempty"` // stats: presence messages received
	Counted     int64            `json:"counted,omitempty"`
	Hist        []byte           `json:"hist,omitempty"`
	FirstRecv   int64            `json:"firstRecv,omitempty"`
	LastRecv    int64            `json:"lastRecv,omitempty"`
	Acct        Accounting       `json:"acct"`
	Disconnects map[string]int64 `json:"disconnects,omitempty"`
	Errors      map[string]int64 `json:"errors,omitempty"`
}

const histShards = 16

// Histogram bounds: 1 µs to 10 minutes, 3 significant digits.
func newHist() *hdr.Histogram { return hdr.New(1, int64(10*time.Minute/time.Microsecond), 3) }

// Worker holds connections for the coordinator and measures what they receive.
type Worker struct {
	endpoint  string
	audience  string
	wsBase    string
	wsBases   []string // wsBase of every node: connection i dials wsBases[i%len]
	ring      *auth.KeyRing
	sourceIPs int
	sr        *signalR // nil: Web PubSub clients

	mu      sync.Mutex
	conns   []*client
	tokens  map[string]string
	minted  map[int]string // fresh tokens made ahead of a connect, by ConnSpec.ID
	counted [histShards]struct {
		mu sync.Mutex
		h  *hdr.Histogram
	}
	disconnects map[string]int64
	errors      map[string]int64

	measureFrom atomic.Int64
	connected   atomic.Int64
	sent        atomic.Int64
	received    atomic.Int64
	total       atomic.Int64 // deliveries since the worker started, for progress
	presence    atomic.Int64 // presence messages received (presence scenario)
	unique      atomic.Int64
	nCounted    atomic.Int64
	firstRecv   atomic.Int64
	lastRecv    atomic.Int64

	// The pinger of SignalR clients runs while connections are open (guarded by mu).
	pingStop chan struct{}
	pingDone chan struct{}
}

// NewWorker returns an idle worker; its first request must be init.
func NewWorker() *Worker {
	w := &Worker{tokens: map[string]string{}, minted: map[int]string{}, disconnects: map[string]int64{}, errors: map[string]int64{}}
	for i := range w.counted {
		w.counted[i].h = newHist()
	}
	w.measureFrom.Store(math.MaxInt64)
	return w
}

func (w *Worker) count(m *map[string]int64, reason string) {
	w.mu.Lock()
	(*m)[reason]++
	w.mu.Unlock()
}

func (w *Worker) record(id int, now, ts int64, isNew bool) {
	w.received.Add(1)
	w.total.Add(1)
	if isNew {
		w.unique.Add(1)
	}
	if ts < w.measureFrom.Load() {
		return
	}
	w.nCounted.Add(1)
	lat := (now - ts) / 1000
	sh := &w.counted[id%histShards]
	sh.mu.Lock()
	sh.h.RecordValue(max(lat, 1))
	sh.mu.Unlock()
	for {
		f := w.firstRecv.Load()
		if (f != 0 && f <= now) || w.firstRecv.CompareAndSwap(f, now) {
			break
		}
	}
	for {
		l := w.lastRecv.Load()
		if l >= now || w.lastRecv.CompareAndSwap(l, now) {
			break
		}
	}
}

func (w *Worker) token(spec ConnSpec, fresh bool) (string, error) {
	if fresh {
		w.mu.Lock()
		t, ok := w.minted[spec.ID]
		delete(w.minted, spec.ID)
		w.mu.Unlock()
		if ok {
			return t, nil
		}
	}
	key := spec.User + "\x00" + strings.Join(spec.Groups, ",") + "\x00" + strings.Join(spec.Roles, ",")
	if !fresh {
		w.mu.Lock()
		t, ok := w.tokens[key]
		w.mu.Unlock()
		if ok {
			return t, nil
		}
	}
	t, err := w.mintClientToken(spec)
	if err != nil {
		return "", err
	}
	if !fresh {
		w.mu.Lock()
		w.tokens[key] = t
		w.mu.Unlock()
	}
	return t, nil
}

// Handle executes one request. It is safe to call concurrently (stats while connect runs).
func (w *Worker) Handle(ctx context.Context, req Request) Response {
	resp, err := w.handle(ctx, req)
	resp.ID = req.ID
	if err != nil {
		resp.Err = err.Error()
	}
	return resp
}

func (w *Worker) handle(ctx context.Context, req Request) (Response, error) {
	switch req.Op {
	case "init":
		return Response{}, w.init(req)
	case "mint":
		return Response{}, w.mint(req)
	case "connect":
		return w.connect(ctx, req), nil
	case "start":
		w.measureFrom.Store(req.MeasureFrom)
		return Response{}, nil
	case "publish":
		return w.publish(ctx, req), nil
	case "collect":
		return w.collect(ctx, req), nil
	case "close":
		return w.closeAll(), nil
	case "stats":
		return Response{Connected: w.connected.Load(), Sent: w.sent.Load(), Received: w.total.Load(), Presence: w.presence.Load()}, nil
	}
	return Response{}, fmt.Errorf("unknown op %q", req.Op)
}

// mintClientToken makes a client token for spec: a Web PubSub token with the spec's user,
// groups and roles, or a SignalR token with its user (SignalR clients join groups through
// the REST API). Client tokens are checked only at connect: the default hour is plenty.
func (w *Worker) mintClientToken(spec ConnSpec) (string, error) {
	if w.sr != nil {
		return w.sr.ring.MintSignalRClientToken(w.sr.audience, spec.User, 0)
	}
	return w.ring.MintClientToken(w.audience, auth.MintOptions{UserID: spec.User, Groups: spec.Groups, Roles: spec.Roles})
}

func (w *Worker) init(req Request) error {
	w.sourceIPs = req.SourceIPs
	if req.SignalRConnString != "" {
		sr, err := newSignalR(req.SignalRConnString, req.Hub, req.Protocol, req.PingInterval, req.Dialers)
		if err != nil {
			return err
		}
		w.sr = sr
		return nil
	}
	endpoint, key, err := auth.ParseConnectionString(req.ConnString)
	if err != nil {
		return err
	}
	ring, err := auth.NewKeyRing(key)
	if err != nil {
		return err
	}
	w.wsBases = w.wsBases[:0]
	for _, ep := range append([]string{endpoint}, req.Nodes...) {
		u, err := url.Parse(strings.TrimRight(ep, "/"))
		if err != nil {
			return err
		}
		switch u.Scheme {
		case "http":
			u.Scheme = "ws"
		case "https":
			u.Scheme = "wss"
		}
		w.wsBases = append(w.wsBases, u.String()+"/client/hubs/"+url.PathEscape(req.Hub))
	}
	w.endpoint = endpoint
	w.ring = ring
	// Tokens are checked on the audience's path: one is good on every node.
	w.audience = auth.ClientAudience(endpoint, req.Hub)
	w.wsBase = w.wsBases[0]
	return nil
}

// mint makes a fresh token for every connection of req ahead of the connect,
// so that the tool's own token signing is not part of the measured handshakes
// (the server still verifies one distinct token per connection).
func (w *Worker) mint(req Request) error {
	for _, spec := range req.Conns {
		t, err := w.mintClientToken(spec)
		if err != nil {
			return err
		}
		w.mu.Lock()
		w.minted[spec.ID] = t
		w.mu.Unlock()
	}
	return nil
}

func (w *Worker) connect(ctx context.Context, req Request) Response {
	dialers := max(1, min(req.Dialers, len(req.Conns)))
	next := atomic.Int64{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := map[string]int64{}
	hist := newHist()
	var ok int64
	w.startPinger()
	for range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(req.Conns) || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				dial := w.dial
				if w.sr != nil {
					dial = w.dialSignalR
				}
				c, err := dial(ctx, req.Conns[i], req.FreshTokens)
				el := time.Since(t0)
				mu.Lock()
				if err != nil {
					errs[reason(err)]++
					mu.Unlock()
					continue
				}
				hist.RecordValue(max(el.Microseconds(), 1))
				ok++
				mu.Unlock()
				w.mu.Lock()
				w.conns = append(w.conns, c)
				w.mu.Unlock()
				w.connected.Add(1)
				go c.readLoop()
			}
		}()
	}
	wg.Wait()
	enc, _ := hist.Encode(hdr.V2CompressedEncodingCookieBase)
	return Response{Connected: ok, ConnectErrors: errs, ConnectHist: enc}
}

// publish makes every connection send req.Rate messages/s to its first group, paced on a
// 5 ms tick, until req.Until.
func (w *Worker) publish(ctx context.Context, req Request) Response {
	w.mu.Lock()
	conns := append([]*client(nil), w.conns...)
	w.mu.Unlock()
	start := time.Now()
	until := time.Unix(0, req.Until)
	total := uint64(math.Round(req.Rate * until.Sub(start).Seconds()))
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var frame []byte
	failed := map[*client]bool{}
	for {
		now := time.Now()
		e := req.Rate * now.Sub(start).Seconds()
		done := true
		for i, c := range conns {
			if failed[c] || len(c.spec.Groups) == 0 {
				continue
			}
			// Message k of connection i is due at (k + i/len(conns)) / rate: the
			// connections' sends are spread evenly, not fired together.
			target := uint64(0)
			if ph := float64(i) / float64(len(conns)); e >= ph {
				target = min(uint64(e-ph)+1, total)
			}
			if target < total {
				done = false
			}
			for c.sent < target {
				frame = append(frame[:0], `{"type":"sendToGroup","group":`...)
				frame = appendJSONString(frame, c.spec.Groups[0])
				frame = append(frame, `,"noEcho":false,"dataType":"text","data":"`...)
				frame = appendPayload(frame, uint32(c.spec.ID), c.sent, time.Now().UnixNano(), req.Size)
				frame = append(frame, `"}`...)
				if err := c.write(ws.OpText, frame); err != nil {
					w.count(&w.errors, "publish: "+reason(err))
					failed[c] = true
					break
				}
				c.sent++
				w.sent.Add(1)
			}
		}
		if done || ctx.Err() != nil {
			break
		}
		<-tick.C
	}
	streams := map[uint32]uint64{}
	for _, c := range conns {
		if c.sent > 0 {
			streams[uint32(c.spec.ID)] = c.sent
		}
	}
	return Response{Streams: streams}
}

// collect waits until every expected message arrived (or nothing arrived for req.Drain),
// then reports and resets the measurement.
func (w *Worker) collect(ctx context.Context, req Request) Response {
	w.mu.Lock()
	conns := append([]*client(nil), w.conns...)
	w.mu.Unlock()
	var want int64
	for _, c := range conns {
		for _, n := range req.Expect[c.spec.Key] {
			want += int64(n)
		}
	}
	drain := req.Drain
	if drain <= 0 {
		drain = 5 * time.Second
	}
	last, lastChange := w.unique.Load(), time.Now()
	for w.unique.Load() < want && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		if u := w.unique.Load(); u != last {
			last, lastChange = u, time.Now()
		} else if time.Since(lastChange) > drain {
			break
		}
	}
	var r Response
	for _, c := range conns {
		c.mu.Lock()
		r.Acct.add(account(c.tracks, req.Expect[c.spec.Key]))
		c.tracks = map[uint32]*seqTrack{}
		c.mu.Unlock()
	}
	h := newHist()
	for i := range w.counted {
		sh := &w.counted[i]
		sh.mu.Lock()
		h.Merge(sh.h)
		sh.h.Reset()
		sh.mu.Unlock()
	}
	r.Hist, _ = h.Encode(hdr.V2CompressedEncodingCookieBase)
	r.Received = w.received.Swap(0)
	r.Counted = w.nCounted.Swap(0)
	r.FirstRecv = w.firstRecv.Swap(0)
	r.LastRecv = w.lastRecv.Swap(0)
	w.unique.Store(0)
	w.measureFrom.Store(math.MaxInt64)
	w.mu.Lock()
	r.Disconnects, w.disconnects = w.disconnects, map[string]int64{}
	r.Errors, w.errors = w.errors, map[string]int64{}
	w.mu.Unlock()
	return r
}

// closeAll closes every connection, waits for their readers, and reports disconnects
// that happened before.
func (w *Worker) closeAll() Response {
	w.stopPinger()
	if w.sr != nil {
		defer w.sr.http.CloseIdleConnections()
	}
	w.mu.Lock()
	conns := w.conns
	w.conns = nil
	w.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, c := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			c.close()
			<-sem
		}()
	}
	wg.Wait()
	for _, c := range conns {
		<-c.done
	}
	w.connected.Add(-int64(len(conns)))
	w.mu.Lock()
	r := Response{Disconnects: w.disconnects, Errors: w.errors}
	w.disconnects, w.errors = map[string]int64{}, map[string]int64{}
	w.mu.Unlock()
	return r
}

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"' || ch == '\\':
			b = append(b, '\\', ch)
		case ch < 0x20:
			b = append(b, fmt.Sprintf(`\u%04x`, ch)...)
		default:
			b = append(b, ch)
		}
	}
	return append(b, '"')
}
