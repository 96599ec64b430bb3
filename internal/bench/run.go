package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/hubproto"
)

// Scenarios the tool runs.
var Scenarios = []string{"fanout", "durable", "rooms", "users", "idle", "connect", "signalr-fanout", "signalr-connect", "connector", "presence"}

// Options configure a run. Zero values get the defaults of [Options.withDefaults].
type Options struct {
	Scenario   string `json:"scenario"`
	ConnString string `json:"-"`
	Hub        string `json:"hub"`
	// Nodes are the endpoints (http://host:port) of the other nodes of the cluster the
	// connection string's server is in (they share its access key): the Web PubSub
	// scenarios spread connections and REST publishers over all of them, round-robin.
	Nodes []string `json:"nodes,omitempty"`

	// SignalRConnString is the SignalR endpoint's connection string, required by the
	// signalr-* scenarios (ConnString is then optional: it only helps observe the server).
	SignalRConnString string `json:"-"`
	// Protocol is the hub protocol of the SignalR clients: json (default) or messagepack.
	Protocol string `json:"protocol,omitempty"`

	// Brokers and Topic are the Kafka the server's connector reads (connector scenario).
	Brokers []string `json:"brokers,omitempty"`
	Topic   string   `json:"topic,omitempty"`
	// Compression is the producer's batch compression: none (the default, as Kafka's own
	// producer), snappy, lz4, zstd or gzip.
	Compression string `json:"compression,omitempty"`
	// DSN and Table, when DSN is set, make the connector scenario insert rows into the
	// PostgreSQL outbox the server's connector reads instead (Brokers unused).
	DSN   string `json:"-"`
	Table string `json:"table,omitempty"`

	Subscribers int           `json:"subscribers,omitempty"` // fanout: connections in the group
	Publishers  int           `json:"publishers,omitempty"`  // fanout, users: REST publishers
	Messages    int           `json:"messages,omitempty"`    // fanout, users: measured messages per publisher
	Size        int           `json:"size,omitempty"`        // payload bytes
	Rate        float64       `json:"rate,omitempty"`        // fanout, users: total msgs/s (0: max); rooms: per member
	Groups      int           `json:"groups,omitempty"`      // rooms: groups; idle: groups the connections spread over
	Members     int           `json:"members,omitempty"`     // rooms: members per group
	Conns       int           `json:"conns,omitempty"`       // users, idle, connect: connections
	Users       int           `json:"users,omitempty"`       // users: distinct user ids
	Duration    time.Duration `json:"duration,omitempty"`    // rooms: measured publishing time
	Hold        time.Duration `json:"hold,omitempty"`        // idle: how long connections sit idle
	Dialers     int           `json:"dialers,omitempty"`     // concurrent dialers (all workers together)
	Workers     int           `json:"workers"`               // worker processes; 0: goroutines of this process; -1: auto
	Threads     int           `json:"threads"`               // GOMAXPROCS of each worker process; 0: all CPUs
	SourceIPs   int           `json:"sourceIPs"`             // local addresses 127.0.0.1..; 0: let the kernel pick; -1: auto
	Warmup      time.Duration `json:"warmup"`                // messages sent this long before measuring are not counted
	Runs        int           `json:"runs"`
	Drain       time.Duration `json:"drain"` // how long to wait without progress for missing messages
	ServerPID   int           `json:"serverPid,omitempty"`

	// Progress receives a live line once per second (nil: none); ProgressCR rewrites one line.
	Progress   io.Writer `json:"-"`
	ProgressCR bool      `json:"-"`

	pingInterval time.Duration // SignalR clients' Ping (0: DefaultSignalRPing); tests shorten it
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.Hub == "" {
		o.Hub = "bench"
	}
	def(&o.Subscribers, 100)
	def(&o.Publishers, 1)
	def(&o.Messages, 1000)
	def(&o.Size, 64)
	def(&o.Members, 10)
	def(&o.Users, 100)
	def(&o.Runs, 3)
	def(&o.Dialers, 64)
	if o.Groups <= 0 {
		o.Groups = map[bool]int{true: 10, false: 1}[o.Scenario == "rooms" || o.Scenario == "connector" || o.Scenario == "presence"]
	}
	if o.Topic == "" {
		o.Topic = "bench-connector"
	}
	if o.Compression == "" {
		o.Compression = "none"
	}
	if o.Table == "" {
		o.Table = "switchboard_outbox"
	}
	if o.Conns <= 0 {
		o.Conns = map[string]int{"users": 1000, "idle": 1000, "connect": 1000, "signalr-connect": 1000, "presence": 1000}[o.Scenario]
	}
	if o.Scenario == "rooms" && o.Rate <= 0 {
		o.Rate = 1
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	if o.Hold <= 0 {
		o.Hold = 30 * time.Second
	}
	if o.Drain <= 0 {
		o.Drain = 5 * time.Second
	}
	if o.Warmup < 0 {
		o.Warmup = 0
	}
	n := o.connections()
	if o.Workers < 0 {
		o.Workers = defaultWorkers(n, runtime.NumCPU())
	}
	if o.SourceIPs < 0 {
		o.SourceIPs = 0
		if ep, _, err := auth.ParseConnectionString(o.clientConnString()); err == nil {
			if u, err := url.Parse(ep); err == nil && isLocalHost(u.Hostname()) {
				o.SourceIPs = 8
			}
		}
	}
	if isSignalR(o.Scenario) && o.Protocol == "" {
		o.Protocol = "json"
	}
	return o
}

// clientConnString is the connection string of the endpoint the scenario's clients use.
func (o Options) clientConnString() string {
	if isSignalR(o.Scenario) {
		return o.SignalRConnString
	}
	return o.ConnString
}

// connections is how many connections the scenario holds at once.
func (o Options) connections() int {
	switch o.Scenario {
	case "fanout", "durable", "signalr-fanout", "connector":
		return o.Subscribers
	case "rooms":
		return o.Groups * o.Members
	}
	return o.Conns
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	P999  float64 `json:"p999Ms"`
	Max   float64 `json:"maxMs"`
}

func latencyOf(h *hdr.Histogram) Latency {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return Latency{Count: h.TotalCount(), P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)),
		P99: ms(h.ValueAtQuantile(99)), P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max())}
}

// ServerFigures are the server's memory and CPU during a run.
type ServerFigures struct {
	RSSBefore  int64   `json:"rssBeforeBytes"`  // before the first run's connections
	RSSLoaded  int64   `json:"rssLoadedBytes"`  // with every connection open, at the end of the measured phase
	RSSPerConn float64 `json:"rssPerConnBytes"` // (loaded − before) / connections
	CPUSeconds float64 `json:"cpuSeconds"`      // during the measured phase
	CPUPercent float64 `json:"cpuPercent"`      // of one core
	Phase      float64 `json:"phaseSeconds"`    // length of the measured phase
}

// RunResult is one run's figures.
type RunResult struct {
	Run int `json:"run"`

	Connections      int64            `json:"connections"`
	ConnectErrors    map[string]int64 `json:"connectErrors,omitempty"`
	ConnectSeconds   float64          `json:"connectSeconds"`
	HandshakesPerSec float64          `json:"handshakesPerSec"`
	ConnectLatency   Latency          `json:"connectLatency"`

	Sent             int64   `json:"sent"`     // messages accepted (REST 202 or written by a client), warm-up included
	Received         int64   `json:"received"` // deliveries, warm-up included
	Counted          int64   `json:"counted"`  // deliveries of measured messages
	Duration         float64 `json:"durationSeconds"`
	DeliveriesPerSec float64 `json:"deliveriesPerSec"`
	Latency          Latency `json:"latency"`
	Accounting
	// Presence scenario: REST joins and leaves per second (Latency is then
	// theirs, from request to answer) and the presence messages the clients got.
	OpsPerSec     float64 `json:"opsPerSec,omitempty"`
	Notifications int64   `json:"notifications,omitempty"`

	SendErrors  map[string]int64 `json:"sendErrors,omitempty"`
	Disconnects map[string]int64 `json:"disconnects,omitempty"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	Server      ServerFigures    `json:"server"`
	// ToolCPUPercent is the load tool's own CPU (this process and its workers) during the
	// measured phase, in % of one core: on a machine the tool shares with the server, the
	// CPU the server could not have. 0 where /proc is not available.
	ToolCPUPercent float64 `json:"toolCpuPercent"`

	Failed   bool     `json:"failed"`
	Failures []string `json:"failures,omitempty"`
}

// Report is the result of Run.
type Report struct {
	Options Options     `json:"options"`
	Date    time.Time   `json:"date"`
	Server  string      `json:"serverObservedBy"`
	Runs    []RunResult `json:"runs"`
	Median  RunResult   `json:"median"`
	Failed  bool        `json:"failed"`
}

// Run executes o.Runs runs of the scenario against the server of o.ConnString.
func Run(ctx context.Context, o Options) (*Report, error) {
	if !slices.Contains(Scenarios, o.Scenario) {
		return nil, fmt.Errorf("unknown scenario %q (want one of %s)", o.Scenario, strings.Join(Scenarios, ", "))
	}
	o = o.withDefaults()
	r := &runner{o: o, tokens: map[string]string{}}
	if isSignalR(o.Scenario) {
		if _, ok := hubproto.Lookup(o.Protocol); !ok {
			return nil, fmt.Errorf("unknown SignalR hub protocol %q (want json or messagepack)", o.Protocol)
		}
		endpoint, key, err := auth.ParseConnectionString(o.SignalRConnString)
		if err != nil {
			return nil, fmt.Errorf("signalr connection string: %w", err)
		}
		if r.srRing, err = auth.NewKeyRing(key); err != nil {
			return nil, err
		}
		r.srEndpoint = strings.TrimRight(endpoint, "/")
		// Without a Web PubSub connection string the server is observed through the
		// SignalR endpoint's port (its /metrics is on the Web PubSub listener).
		r.endpoint, r.ring = r.srEndpoint, r.srRing
	} else if o.Protocol != "" {
		return nil, fmt.Errorf("a hub protocol (%q) applies to the signalr-* scenarios only", o.Protocol)
	}
	if len(o.Nodes) > 0 && isSignalR(o.Scenario) {
		return nil, errors.New("--node applies to the Web PubSub scenarios only")
	}
	for _, n := range o.Nodes {
		if u, err := url.Parse(n); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("node %q: want an endpoint like http://127.0.0.1:9080", n)
		}
	}
	if o.ConnString != "" || !isSignalR(o.Scenario) {
		if err := r.useConnString(o.ConnString); err != nil {
			return nil, err
		}
	}
	r.probe = newServerProbe(ctx, r.endpoint, o.ServerPID, func(u string) string { return r.serverToken(u) })

	r.endpoints = []string{r.endpoint}
	for _, n := range o.Nodes {
		r.endpoints = append(r.endpoints, strings.TrimRight(n, "/"))
	}
	if err := r.startWorkers(ctx); err != nil {
		r.stopWorkers()
		return nil, err
	}
	defer r.stopWorkers()

	rep := &Report{Options: o, Date: time.Now().UTC(), Server: r.probe.source}
	if s, err := r.probe.sample(ctx); err == nil {
		r.baseline = s.RSS
	}
	for i := 1; i <= o.Runs; i++ {
		res, err := r.run(ctx, i)
		if err != nil {
			return rep, fmt.Errorf("run %d: %w", i, err)
		}
		judge(&res, o)
		rep.Runs = append(rep.Runs, res)
		rep.Failed = rep.Failed || res.Failed
	}
	rep.Median = median(o.Scenario, rep.Runs)
	return rep, nil
}

func judge(r *RunResult, o Options) {
	add := func(cond bool, f string, a ...any) {
		if cond {
			r.Failures = append(r.Failures, fmt.Sprintf(f, a...))
		}
	}
	add(r.Lost > 0, "%d messages lost", r.Lost)
	add(r.Duplicated > 0, "%d messages duplicated", r.Duplicated)
	add(r.Unexpected > 0, "%d messages never sent to their receiver", r.Unexpected)
	add(r.Connections < int64(o.connections()), "%d of %d connections failed", int64(o.connections())-r.Connections, o.connections())
	add(sum(r.SendErrors) > 0, "%d sends failed", sum(r.SendErrors))
	add(sum(r.Disconnects) > 0, "%d connections dropped", sum(r.Disconnects))
	r.Failed = len(r.Failures) > 0
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// median returns the run with the median primary figure.
func median(scenario string, runs []RunResult) RunResult {
	if len(runs) == 0 {
		return RunResult{}
	}
	key := func(r RunResult) float64 {
		switch scenario {
		case "connect", "signalr-connect":
			return r.HandshakesPerSec
		case "idle":
			return r.Server.RSSPerConn
		case "presence":
			return r.OpsPerSec
		}
		return r.DeliveriesPerSec
	}
	s := slices.Clone(runs)
	sort.SliceStable(s, func(i, j int) bool { return key(s[i]) < key(s[j]) })
	return s[(len(s)-1)/2]
}

type runner struct {
	o        Options
	endpoint string // Web PubSub endpoint (the SignalR one when no Web PubSub string is given)
	ring     *auth.KeyRing
	// endpoints are endpoint and Options.Nodes: publisher p sends through endpoints[p%len].
	endpoints []string

	srEndpoint string // SignalR endpoint of the signalr-* scenarios
	srRing     *auth.KeyRing

	probe    *serverProbe
	baseline int64
	workers  []workerHandle

	tmu    sync.Mutex
	tokens map[string]string

	sent       atomic.Int64 // REST sends of the current run
	phase      atomic.Value // string for the progress line
	sendErrMu  sync.Mutex
	sendErrors map[string]int64
}

func (r *runner) serverToken(u string) string {
	r.tmu.Lock()
	defer r.tmu.Unlock()
	if t, ok := r.tokens[u]; ok {
		return t
	}
	ring := r.ring
	if r.srRing != nil && strings.HasPrefix(u, r.srEndpoint+"/") {
		ring = r.srRing
	}
	t, _ := ring.MintServerToken(u, 24*time.Hour)
	r.tokens[u] = t
	return t
}

// defaultWorkers is the number of worker processes for n connections on a machine with
// cpus CPUs: one per 15,000 connections, so that none approaches the 20,000 open-file
// limit, and more for large runs, up to one per CPU, but none with fewer than 1,000
// connections. Workers are single-threaded by default (Options.Threads): on a machine
// the server shares, one thread reading a burst of sockets after each wake-up costs
// less CPU than several threads waking each other, and the CPU the tool saves is the
// server's.
func defaultWorkers(n, cpus int) int {
	return max(1, (n+14999)/15000, min(cpus, n/1000))
}

func (r *runner) startWorkers(ctx context.Context) error {
	if r.o.Workers == 0 {
		r.workers = []workerHandle{localWorker{NewWorker()}}
	} else {
		for range r.o.Workers {
			p, err := startProcWorker(r.o.Threads)
			if err != nil {
				return err
			}
			r.workers = append(r.workers, p)
		}
	}
	return r.all(ctx, func(int) Request {
		req := Request{Op: "init", ConnString: r.o.ConnString, Nodes: r.o.Nodes, Hub: r.o.Hub, SourceIPs: r.o.SourceIPs}
		if isSignalR(r.o.Scenario) {
			req.SignalRConnString, req.Protocol, req.PingInterval = r.o.SignalRConnString, r.o.Protocol, r.o.pingInterval
			req.Dialers = max(1, (r.o.Dialers+len(r.workers)-1)/len(r.workers))
		}
		return req
	}, nil)
}

func (r *runner) stopWorkers() {
	for _, w := range r.workers {
		w.close()
	}
	r.workers = nil
}

// all sends one request to every worker at once and hands each answer to fn.
func (r *runner) all(ctx context.Context, req func(i int) Request, fn func(i int, resp Response)) error {
	var wg sync.WaitGroup
	errs := make([]error, len(r.workers))
	var mu sync.Mutex
	for i, w := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := w.do(ctx, req(i))
			errs[i] = err
			if err == nil && fn != nil {
				mu.Lock()
				fn(i, resp)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (r *runner) countSendError(reason string) {
	r.sendErrMu.Lock()
	r.sendErrors[reason]++
	r.sendErrMu.Unlock()
}

func addAll(dst *map[string]int64, src map[string]int64) {
	if len(src) == 0 {
		return
	}
	if *dst == nil {
		*dst = map[string]int64{}
	}
	for k, v := range src {
		(*dst)[k] += v
	}
}

// connect opens specs spread over the workers, o.Dialers at a time in total.
func (r *runner) connect(ctx context.Context, specs []ConnSpec, fresh bool, res *RunResult) error {
	parts := make([][]ConnSpec, len(r.workers))
	for i, s := range specs {
		parts[i%len(parts)] = append(parts[i%len(parts)], s)
	}
	dialers := max(1, (r.o.Dialers+len(r.workers)-1)/len(r.workers))
	if fresh {
		if err := r.all(ctx, func(i int) Request { return Request{Op: "mint", Conns: parts[i]} }, func(int, Response) {}); err != nil {
			return err
		}
	}
	h := newHist()
	t0 := time.Now()
	err := r.all(ctx, func(i int) Request {
		return Request{Op: "connect", Conns: parts[i], Dialers: dialers, FreshTokens: fresh}
	}, func(_ int, resp Response) {
		res.Connections += resp.Connected
		addAll(&res.ConnectErrors, resp.ConnectErrors)
		if wh, err := hdr.Decode(resp.ConnectHist); err == nil {
			h.Merge(wh)
		}
	})
	res.ConnectSeconds = time.Since(t0).Seconds()
	res.HandshakesPerSec = float64(res.Connections) / res.ConnectSeconds
	res.ConnectLatency = latencyOf(h)
	return err
}

// collect gathers what the workers received against what was sent.
func (r *runner) collect(ctx context.Context, expect map[string]map[uint32]uint64, firstSend int64, res *RunResult) error {
	h := newHist()
	var last int64
	err := r.all(ctx, func(int) Request { return Request{Op: "collect", Expect: expect, Drain: r.o.Drain} },
		func(_ int, resp Response) {
			res.Received += resp.Received
			res.Counted += resp.Counted
			res.Accounting.add(resp.Acct)
			last = max(last, resp.LastRecv)
			addAll(&res.Disconnects, resp.Disconnects)
			addAll(&res.Errors, resp.Errors)
			if wh, err := hdr.Decode(resp.Hist); err == nil {
				h.Merge(wh)
			}
		})
	res.Latency = latencyOf(h)
	if last > firstSend && firstSend > 0 {
		res.Duration = float64(last-firstSend) / 1e9
		res.DeliveriesPerSec = float64(res.Counted) / res.Duration
	}
	return err
}

func (r *runner) closeConns(ctx context.Context, res *RunResult) error {
	return r.all(ctx, func(int) Request { return Request{Op: "close"} }, func(_ int, resp Response) {
		addAll(&res.Disconnects, resp.Disconnects)
		addAll(&res.Errors, resp.Errors)
	})
}

// progress prints a live line once per second until stop is closed.
func (r *runner) progress(ctx context.Context, run int, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	if r.o.Progress == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	stats := func() (conn, sent, recv int64) {
		sctx, cancel := context.WithTimeout(ctx, 900*time.Millisecond)
		defer cancel()
		r.all(sctx, func(int) Request { return Request{Op: "stats"} }, func(_ int, resp Response) {
			conn += resp.Connected
			sent += resp.Sent
			recv += resp.Received
		})
		return conn, sent, recv
	}
	_, sent0, recv0 := stats()
	lastRecv := recv0
	t0 := time.Now()
	for {
		select {
		case <-stop:
			if r.o.ProgressCR {
				fmt.Fprint(r.o.Progress, "\r\033[K")
			}
			return
		case <-tick.C:
		}
		conn, sent, recv := stats()
		sent += r.sent.Load() - sent0
		phase, _ := r.phase.Load().(string)
		line := fmt.Sprintf("%s run %d/%d %5.0fs %-10s connected %d  sent %d  received %d  rate %d/s",
			r.o.Scenario, run, r.o.Runs, time.Since(t0).Seconds(), phase, conn, sent, recv-recv0, recv-lastRecv)
		lastRecv = recv
		if r.o.ProgressCR {
			fmt.Fprint(r.o.Progress, "\r\033[K"+line)
		} else {
			fmt.Fprintln(r.o.Progress, line)
		}
	}
}

func (r *runner) run(ctx context.Context, n int) (res RunResult, err error) {
	res.Run = n
	r.sent.Store(0)
	r.sendErrors = map[string]int64{}
	stop, done := make(chan struct{}), make(chan struct{})
	r.phase.Store("connect")
	go r.progress(ctx, n, stop, done)
	defer func() {
		close(stop)
		<-done
		res.SendErrors = r.sendErrors
		res.Sent += r.sent.Load()
	}()
	switch r.o.Scenario {
	case "fanout":
		err = r.fanout(ctx, &res, "fanout", r.sendURL("groups", "fanout"))
	case "durable":
		// fanout to a group the server keeps history for: every send is
		// persisted (and fsynced) before it is accepted and delivered.
		err = r.fanout(ctx, &res, DurableGroup, r.sendURL("groups", DurableGroup))
	case "signalr-fanout":
		// SignalR clients joined to the group through the REST API, sends through
		// the SignalR REST API.
		err = r.fanout(ctx, &res, "fanout", r.signalRSendURL("fanout"))
	case "users":
		err = r.users(ctx, &res)
	case "connector":
		err = r.connector(ctx, &res)
	case "presence":
		err = r.presence(ctx, &res)
	case "rooms":
		err = r.rooms(ctx, &res)
	case "idle":
		err = r.idle(ctx, &res)
	case "connect", "signalr-connect":
		err = r.connectScenario(ctx, &res)
	}
	r.phase.Store("close")
	if cerr := r.closeConns(ctx, &res); err == nil {
		err = cerr
	}
	// Let the server finish closing before the next run samples it.
	time.Sleep(500 * time.Millisecond)
	return res, err
}

// measure samples the server around the measured phase.
func (r *runner) measure(ctx context.Context, res *RunResult, phase func() error) error {
	t0, terr0 := r.toolCPU()
	s0, err0 := r.probe.sample(ctx)
	err := phase()
	s1, err1 := r.probe.sample(ctx)
	t1, terr1 := r.toolCPU()
	if terr0 == nil && terr1 == nil {
		if d := s1.At.Sub(s0.At).Seconds(); d > 0 {
			res.ToolCPUPercent = 100 * (t1 - t0) / d
		}
	}
	if err0 == nil && err1 == nil {
		f := &res.Server
		f.RSSBefore = r.baseline
		f.RSSLoaded = s1.RSS
		if res.Connections > 0 && r.baseline > 0 {
			f.RSSPerConn = float64(s1.RSS-r.baseline) / float64(res.Connections)
		}
		f.Phase = s1.At.Sub(s0.At).Seconds()
		f.CPUSeconds = s1.CPUSeconds - s0.CPUSeconds
		if f.Phase > 0 {
			f.CPUPercent = 100 * f.CPUSeconds / f.Phase
		}
	}
	return err
}

// toolCPU returns the CPU seconds used so far by this process and its worker processes.
func (r *runner) toolCPU() (float64, error) {
	s, err := procSample(os.Getpid())
	if err != nil {
		return 0, err
	}
	total := s.CPUSeconds
	for _, w := range r.workers {
		if p, ok := w.(*procWorker); ok {
			ws, err := procSample(p.cmd.Process.Pid)
			if err != nil {
				return 0, err
			}
			total += ws.CPUSeconds
		}
	}
	return total, nil
}

// restSender posts payloads to one URL family with cached server tokens.
func (r *runner) restSend(ctx context.Context, rc *restConn, u string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.serverToken(u))
	if r.srRing != nil {
		req.Header.Set("Content-Type", "application/json")
	} else {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := rc.do(ctx, req)
	if err != nil {
		r.countSendError(reason(err))
		return err
	}
	if resp.StatusCode != http.StatusAccepted {
		r.countSendError("http " + resp.Status)
		return fmt.Errorf("%s", resp.Status)
	}
	if r.o.Scenario == "durable" && resp.Header.Get("X-Switchboard-Offset") == "" {
		r.countSendError("not durable: the server keeps no history for group " + DurableGroup)
		return errors.New("bench: the server keeps no history for group " + DurableGroup)
	}
	r.sent.Add(1)
	return nil
}

// onNode returns u (a URL of endpoint) on the node of publisher p.
func (r *runner) onNode(p int, u string) string {
	if len(r.endpoints) <= 1 || !strings.HasPrefix(u, r.endpoint) {
		return u
	}
	return r.endpoints[p%len(r.endpoints)] + u[len(r.endpoint):]
}

func (r *runner) sendURL(kind, name string) string {
	return r.endpoint + "/api/hubs/" + url.PathEscape(r.o.Hub) + "/" + kind + "/" + url.PathEscape(name) + "/:send?api-version=2024-12-01"
}

// signalRSendURL is the SignalR REST API's send to group.
func (r *runner) signalRSendURL(group string) string {
	return r.srEndpoint + "/api/hubs/" + url.PathEscape(r.o.Hub) + "/groups/" + url.PathEscape(group) + "/:send?api-version=" + SignalRAPIVersion
}

// appendBody appends the REST body of one message: the payload itself (Web PubSub, text/plain),
// or a SignalR invocation of SignalRTarget with the payload as its argument.
func (r *runner) appendBody(b []byte, stream uint32, seq uint64, ts int64) []byte {
	if r.srRing != nil {
		return appendSignalRBody(b, func(b []byte) []byte { return appendPayload(b, stream, seq, ts, r.o.Size) })
	}
	return appendPayload(b, stream, seq, ts, r.o.Size)
}

// publishREST runs o.Publishers publishers; each sends while now < measureFrom (warm-up),
// then o.Messages measured messages, one request at a time, paced to o.Rate in total.
// target picks each message's URL and stream; it returns the first measured send time.
func (r *runner) publishREST(ctx context.Context, measureFrom time.Time, target func(p int, rnd *rand.Rand) (u string, stream uint32), seqs func(stream uint32) *uint64) int64 {
	var first atomic.Int64
	first.Store(math.MaxInt64)
	var wg sync.WaitGroup
	interval := time.Duration(0)
	if r.o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(r.o.Publishers) / r.o.Rate)
	}
	for p := range r.o.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(p), 42))
			var body []byte
			var rc restConn
			defer rc.close()
			next := time.Now()
			measured := 0
			failures := 0
			for measured < r.o.Messages && ctx.Err() == nil && failures < 100 {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
				}
				u, stream := target(p, rnd)
				u = r.onNode(p, u)
				seq := seqs(stream)
				now := time.Now()
				isMeasured := !now.Before(measureFrom)
				body = r.appendBody(body[:0], stream, *seq, now.UnixNano())
				if err := r.restSend(ctx, &rc, u, body); err != nil {
					failures++
					continue
				}
				*seq++
				if isMeasured {
					if measured == 0 {
						for {
							f := first.Load()
							if f <= now.UnixNano() || first.CompareAndSwap(f, now.UnixNano()) {
								break
							}
						}
					}
					measured++
				}
			}
		}()
	}
	wg.Wait()
	if f := first.Load(); f != math.MaxInt64 {
		return f
	}
	return 0
}

func (r *runner) startMeasuring(ctx context.Context) (time.Time, error) {
	t := time.Now().Add(r.o.Warmup)
	return t, r.all(ctx, func(int) Request { return Request{Op: "start", MeasureFrom: t.UnixNano()} }, nil)
}

// DurableGroup is the group of the durable scenario; the server must keep
// history for it (e.g. hubs.bench.history: [{pattern: "durable", …}]).
const DurableGroup = "durable"

// fanout subscribes o.Subscribers connections to group and publishes to it through u.
func (r *runner) fanout(ctx context.Context, res *RunResult, group, u string) error {
	specs := make([]ConnSpec, r.o.Subscribers)
	for i := range specs {
		specs[i] = ConnSpec{ID: i, Groups: []string{group}, Key: group}
	}
	if err := r.connect(ctx, specs, false, res); err != nil {
		return err
	}
	r.phase.Store("publish")
	seqs := make([]uint64, r.o.Publishers) // each publisher owns its element
	return r.measure(ctx, res, func() error {
		t, err := r.startMeasuring(ctx)
		if err != nil {
			return err
		}
		first := r.publishREST(ctx, t, func(p int, _ *rand.Rand) (string, uint32) { return u, uint32(p) },
			func(s uint32) *uint64 { return &seqs[s] })
		r.phase.Store("drain")
		exp := map[uint32]uint64{}
		for p, n := range seqs {
			exp[uint32(p)] = n
		}
		return r.collect(ctx, map[string]map[uint32]uint64{group: exp}, first, res)
	})
}

func (r *runner) users(ctx context.Context, res *RunResult) error {
	U := r.o.Users
	specs := make([]ConnSpec, r.o.Conns)
	for i := range specs {
		user := fmt.Sprintf("user%d", i%U)
		specs[i] = ConnSpec{ID: i, User: user, Key: user}
	}
	if err := r.connect(ctx, specs, false, res); err != nil {
		return err
	}
	r.phase.Store("publish")
	seqs := make([]uint64, r.o.Publishers*U) // stream p*U+u, owned by publisher p
	urls := make([]string, U)
	for i := range urls {
		urls[i] = r.sendURL("users", fmt.Sprintf("user%d", i))
	}
	return r.measure(ctx, res, func() error {
		t, err := r.startMeasuring(ctx)
		if err != nil {
			return err
		}
		first := r.publishREST(ctx, t, func(p int, rnd *rand.Rand) (string, uint32) {
			u := rnd.IntN(U)
			return urls[u], uint32(p*U + u)
		}, func(s uint32) *uint64 { return &seqs[s] })
		r.phase.Store("drain")
		expect := map[string]map[uint32]uint64{}
		for s, n := range seqs {
			if n == 0 {
				continue
			}
			user := fmt.Sprintf("user%d", s%U)
			if expect[user] == nil {
				expect[user] = map[uint32]uint64{}
			}
			expect[user][uint32(s)] = n
		}
		return r.collect(ctx, expect, first, res)
	})
}

func (r *runner) rooms(ctx context.Context, res *RunResult) error {
	specs := make([]ConnSpec, r.o.Groups*r.o.Members)
	for i := range specs {
		g := fmt.Sprintf("room%d", i/r.o.Members)
		specs[i] = ConnSpec{ID: i, User: fmt.Sprintf("member%d", i), Groups: []string{g}, Roles: []string{"webpubsub.sendToGroup." + g}, Key: g}
	}
	if err := r.connect(ctx, specs, false, res); err != nil {
		return err
	}
	r.phase.Store("publish")
	return r.measure(ctx, res, func() error {
		t, err := r.startMeasuring(ctx)
		if err != nil {
			return err
		}
		until := t.Add(r.o.Duration)
		streams := map[uint32]uint64{}
		err = r.all(ctx, func(int) Request {
			return Request{Op: "publish", Rate: r.o.Rate, Size: r.o.Size, Until: until.UnixNano()}
		}, func(_ int, resp Response) {
			for s, n := range resp.Streams {
				streams[s] = n
				res.Sent += int64(n)
			}
		})
		if err != nil {
			return err
		}
		r.phase.Store("drain")
		expect := map[string]map[uint32]uint64{}
		for s, n := range streams {
			g := specs[s].Key
			if expect[g] == nil {
				expect[g] = map[uint32]uint64{}
			}
			expect[g][s] = n
		}
		return r.collect(ctx, expect, t.UnixNano(), res)
	})
}

func (r *runner) idle(ctx context.Context, res *RunResult) error {
	specs := make([]ConnSpec, r.o.Conns)
	for i := range specs {
		g := fmt.Sprintf("idle%d", i%r.o.Groups)
		specs[i] = ConnSpec{ID: i, Groups: []string{g}, Key: g}
	}
	if err := r.connect(ctx, specs, false, res); err != nil {
		return err
	}
	r.phase.Store("hold")
	return r.measure(ctx, res, func() error {
		select {
		case <-time.After(r.o.Hold):
		case <-ctx.Done():
			return ctx.Err()
		}
		// Disconnects during the hold are failures.
		return r.collect(ctx, nil, 0, res)
	})
}

func (r *runner) connectScenario(ctx context.Context, res *RunResult) error {
	specs := make([]ConnSpec, r.o.Conns)
	for i := range specs {
		specs[i] = ConnSpec{ID: i, User: fmt.Sprintf("user%d", i)}
	}
	return r.measure(ctx, res, func() error { return r.connect(ctx, specs, true, res) })
}

// DefaultWarmup is the warm-up of message scenarios.
const DefaultWarmup = time.Second

// useConnString takes the server's endpoint and key from a Web PubSub
// connection string.
func (r *runner) useConnString(cs string) error {
	endpoint, key, err := auth.ParseConnectionString(cs)
	if err != nil {
		return err
	}
	if r.ring, err = auth.NewKeyRing(key); err != nil {
		return err
	}
	r.endpoint = strings.TrimRight(endpoint, "/")
	return nil
}
