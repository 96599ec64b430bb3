package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// The soak: for a given duration, clients of every kind connect, stay a short while and
// leave (some abruptly, some reliable ones dropping and recovering their session), REST
// publishers and talking clients keep messages flowing, and the soak's own event handler
// fails and recovers on a cycle; the server's RSS, goroutines and open files are sampled
// at the start, periodically and after a settle period at the end. The clients are held
// in this process (a few hundred connections need no worker processes); they dial with
// the load tool's worker (source addresses, tokens, the SignalR negotiate and join) and
// read with its client.

// SoakOptions configure a soak. Zero values get the defaults of [SoakOptions.withDefaults].
type SoakOptions struct {
	ConnString        string `json:"-"`
	SignalRConnString string `json:"-"` // optional: no SignalR clients without it
	Hub               string `json:"hub"`

	Duration    time.Duration `json:"duration"`    // how long the churn runs
	Conns       int           `json:"conns"`       // clients kept connected (dialing included)
	ConnectRate float64       `json:"connectRate"` // new connections per second at most
	MinLife     time.Duration `json:"minLife"`     // a client stays between MinLife and MaxLife
	MaxLife     time.Duration `json:"maxLife"`
	Rate        float64       `json:"rate"`       // REST sends per second, all publishers together
	Publishers  int           `json:"publishers"` // REST publishers, one request in flight each
	ClientRate  float64       `json:"clientRate"` // requests per second of each talking JSON client
	Groups      int           `json:"groups"`
	Users       int           `json:"users"`
	Size        int           `json:"size"`

	// HandlerListener, if set, is the event handler's listener (tests); else it listens on
	// HandlerAddr. The server's configuration must point the hub's event handlers there
	// (SoakServerConfig).
	HandlerListener net.Listener  `json:"-"`
	HandlerAddr     string        `json:"handlerAddr"`
	HandlerCycle    time.Duration `json:"handlerCycle"` // healthy half, then failing, slow and down a sixth each
	HandlerSlow     time.Duration `json:"handlerSlow"`  // a slow answer's delay: above the handler timeout

	SampleEvery time.Duration `json:"sampleEvery"`
	Settle      time.Duration `json:"settle"` // wait after the churn, before the end sample
	Drain       time.Duration `json:"drain"`  // how long a leaving client waits for missing messages
	ServerPID   int           `json:"serverPid,omitempty"`
	SourceIPs   int           `json:"sourceIPs"` // -1: 8 for a loopback server

	Progress io.Writer `json:"-"` // the periodic sample lines (nil: none)
}

// Soak defaults.
const (
	DefaultSoakHandlerAddr = "127.0.0.1:18282"
	// SoakHandlerTimeout is the handler timeout SoakServerConfig sets; the handler's slow
	// answers take longer.
	SoakHandlerTimeout = 2 * time.Second
)

func (o SoakOptions) withDefaults() SoakOptions {
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defi := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	deff := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.Hub == "" {
		o.Hub = "soak"
	}
	if o.HandlerAddr == "" {
		o.HandlerAddr = DefaultSoakHandlerAddr
	}
	defd(&o.Duration, time.Minute)
	defi(&o.Conns, 300)
	deff(&o.ConnectRate, 50)
	defd(&o.MinLife, 2*time.Second)
	defd(&o.MaxLife, 20*time.Second)
	if o.MaxLife < o.MinLife {
		o.MaxLife = o.MinLife
	}
	deff(&o.Rate, 50)
	defi(&o.Publishers, 2)
	deff(&o.ClientRate, 0.5)
	defi(&o.Groups, 10)
	defi(&o.Users, 20)
	defi(&o.Size, 64)
	defd(&o.HandlerCycle, time.Minute)
	defd(&o.HandlerSlow, SoakHandlerTimeout+time.Second)
	defd(&o.SampleEvery, 30*time.Second)
	defd(&o.Settle, time.Minute)
	defd(&o.Drain, 5*time.Second)
	if o.SourceIPs < 0 {
		o.SourceIPs = 0
		if ep, _, err := auth.ParseConnectionString(o.ConnString); err == nil {
			if u, err := url.Parse(ep); err == nil && isLocalHost(u.Hostname()) {
				o.SourceIPs = 8
			}
		}
	}
	return o
}

// SoakSample is one periodic line of a soak.
type SoakSample struct {
	ServerHealth
	Elapsed   float64 `json:"elapsedSeconds"`
	Handler   string  `json:"handlerMode"`
	Live      int64   `json:"live"`
	Opened    int64   `json:"opened"`
	Sent      int64   `json:"sent"`
	Delivered int64   `json:"delivered"`
	Lost      int64   `json:"lost"`
}

// SoakConnFigures count the soak's connections.
type SoakConnFigures struct {
	Attempts       int64            `json:"attempts"`
	Opened         int64            `json:"opened"`
	ByKind         map[string]int64 `json:"byKind"` // opened, by client kind
	ConnectErrors  map[string]int64 `json:"connectErrors,omitempty"`
	Graceful       int64            `json:"graceful"`       // left with a close frame
	Abrupt         int64            `json:"abrupt"`         // dropped without a close frame (TCP reset)
	Recovered      int64            `json:"recovered"`      // reliable sessions dropped and recovered
	RecoveryFailed int64            `json:"recoveryFailed"` // reliable sessions that could not be recovered
	ServerClosed   map[string]int64 `json:"serverClosed,omitempty"`
	Accounted      int64            `json:"accounted"` // connections that stayed and whose deliveries were checked
}

// SoakMessageFigures count the soak's messages.
type SoakMessageFigures struct {
	RESTSent        int64            `json:"restSent"`   // REST sends answered 202
	ClientSent      int64            `json:"clientSent"` // client sendToGroup acknowledged
	SendErrors      map[string]int64 `json:"sendErrors,omitempty"`
	Delivered       int64            `json:"delivered"`        // every delivery of a soak message
	Expected        int64            `json:"expected"`         // deliveries owed to clients that stayed connected
	Lost            int64            `json:"lost"`             // of those, never received
	LostBy          map[string]int64 `json:"lostBy,omitempty"` // by client kind and stream
	Duplicated      int64            `json:"duplicated"`
	DuplicatedBy    map[string]int64 `json:"duplicatedBy,omitempty"` // by client kind: a recovered reliable session replays what it had not acknowledged
	UserEvents      int64            `json:"userEvents"`             // event requests acknowledged
	UserEventErrors map[string]int64 `json:"userEventErrors"`        // event requests answered with an error ack
}

// SoakReport is the result of a soak.
type SoakReport struct {
	Options  SoakOptions        `json:"options"`
	Date     time.Time          `json:"date"`
	Server   string             `json:"serverObservedBy"`
	Start    ServerHealth       `json:"start"`
	Samples  []SoakSample       `json:"samples"`
	End      ServerHealth       `json:"end"`
	Elapsed  float64            `json:"elapsedSeconds"`
	Conns    SoakConnFigures    `json:"connections"`
	Messages SoakMessageFigures `json:"messages"`
	Handler  HandlerFigures     `json:"handler"`
	Flat     bool               `json:"flat"` // RSS, goroutines and open files back where they started
	Verdict  string             `json:"verdict"`
	Failures []string           `json:"failures,omitempty"`
	Failed   bool               `json:"failed"`
}

// soakKind is a kind of client.
type soakKind int

const (
	kindRaw soakKind = iota
	kindJSON
	kindReliable
	kindSignalR
)

func (k soakKind) String() string {
	return [...]string{"raw", "json", "json.reliable", "signalr"}[k]
}

func (k soakKind) subprotocol() string {
	switch k {
	case kindJSON:
		return Subprotocol
	case kindReliable:
		return "json.reliable.webpubsub.azure.v1"
	}
	return ""
}

// soakStream is one ordered sequence of messages: a REST target or a talking client. Its
// messages are numbered from 0; accepted counts those the server accepted (a 202, an ack),
// and only its one sender changes it, one message in flight at a time.
type soakStream struct {
	id       uint32
	serial   uint64 // client streams: registration order (see groupStreams)
	accepted atomic.Uint64
	ended    atomic.Int64 // unix nanos; 0 while it sends
	url      string       // REST streams
	signalR  bool

	// uncertain are the sequence numbers of REST sends that failed without an answer (the
	// server may or may not have taken them): the next send has the next number, so no
	// message is sent twice, and no receiver is owed these.
	mu        sync.Mutex
	uncertain map[uint64]bool
}

func (st *soakStream) skip(seq uint64) {
	st.mu.Lock()
	if st.uncertain == nil {
		st.uncertain = map[uint64]bool{}
	}
	st.uncertain[seq] = true
	st.mu.Unlock()
	st.accepted.Add(1)
}

func (st *soakStream) isUncertain(seq uint64) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.uncertain[seq]
}

// groupStreams are the talking clients' streams of one group, for its receivers.
type groupStreams struct {
	mu      sync.Mutex
	streams map[uint32]*soakStream
}

type soak struct {
	o    SoakOptions
	r    *runner // endpoints and server tokens
	wps  *Worker
	srw  *Worker // nil without SignalR
	h    *soakHandler
	pb   *serverProbe
	rest []*soakStream // by id: 0 all, then groups, users, SignalR groups

	talk   []groupStreams // Web PubSub groups
	serial atomic.Uint64  // client stream registrations

	live, attempts, opened                   atomic.Int64
	graceful, abrupt, recovered, recoverFail atomic.Int64
	accounted                                atomic.Int64
	restSent, clientSent, delivered          atomic.Int64
	expected, lost, dup, userEvents          atomic.Int64

	mu            sync.Mutex
	byKind        map[string]int64
	connectErrors map[string]int64
	serverClosed  map[string]int64
	sendErrors    map[string]int64
	eventErrors   map[string]int64
	lostBy        map[string]int64 // by client kind and stream class
	dupBy         map[string]int64 // by client kind
}

// streamClass names the kind of stream id is, for the report's losses.
func (s *soak) streamClass(id uint32) string {
	switch {
	case id == 0:
		return "REST to all"
	case id <= s.groupStream(s.o.Groups-1):
		return "REST to group"
	case id <= s.userStream(s.o.Users-1):
		return "REST to user"
	case id < 1<<20:
		return "SignalR REST to group"
	}
	return "client sendToGroup"
}

func (s *soak) count(m map[string]int64, k string) {
	s.mu.Lock()
	m[k]++
	s.mu.Unlock()
}

func (s *soak) snapshot(m map[string]int64) map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Stream ids of the REST targets.
func (s *soak) allStream() uint32          { return 0 }
func (s *soak) groupStream(g int) uint32   { return uint32(1 + g) }
func (s *soak) userStream(u int) uint32    { return uint32(1 + s.o.Groups + u) }
func (s *soak) signalRStream(g int) uint32 { return uint32(1 + s.o.Groups + s.o.Users + g) }
func (s *soak) groupName(g int) string     { return fmt.Sprintf("soak%d", g) }
func (s *soak) userName(u int) string      { return fmt.Sprintf("soakuser%d", u) }
func clientStreamID(serial uint64) uint32  { return uint32(1<<20 + serial) }
func (s *soak) hasSignalR() bool           { return s.srw != nil }
func (s *soak) restURL(path string) string {
	return s.r.endpoint + "/api/hubs/" + url.PathEscape(s.o.Hub) + path + "?api-version=2024-12-01"
}
func (s *soak) kinds() int                  { return map[bool]int{true: 4, false: 3}[s.hasSignalR()] }
func (s *soak) elapsed(t0 time.Time) string { return time.Since(t0).Truncate(time.Second).String() }

// RunSoak runs a soak against the server of o.ConnString.
func RunSoak(ctx context.Context, o SoakOptions) (*SoakReport, error) {
	o = o.withDefaults()
	r := &runner{o: Options{Hub: o.Hub}, tokens: map[string]string{}}
	err := r.useConnString(o.ConnString)
	if err != nil {
		return nil, err
	}
	s := &soak{o: o, r: r, byKind: map[string]int64{}, connectErrors: map[string]int64{}, serverClosed: map[string]int64{},
		sendErrors: map[string]int64{}, eventErrors: map[string]int64{}, lostBy: map[string]int64{}, dupBy: map[string]int64{}}
	s.wps = NewWorker()
	if err := s.wps.init(Request{ConnString: o.ConnString, Hub: o.Hub, SourceIPs: o.SourceIPs}); err != nil {
		return nil, err
	}
	if o.SignalRConnString != "" {
		srEndpoint, srKey, err := auth.ParseConnectionString(o.SignalRConnString)
		if err != nil {
			return nil, fmt.Errorf("signalr connection string: %w", err)
		}
		if r.srRing, err = auth.NewKeyRing(srKey); err != nil {
			return nil, err
		}
		r.srEndpoint = strings.TrimRight(srEndpoint, "/")
		s.srw = NewWorker()
		if err := s.srw.init(Request{SignalRConnString: o.SignalRConnString, Hub: o.Hub, Protocol: "json", SourceIPs: o.SourceIPs, Dialers: 16}); err != nil {
			return nil, err
		}
		defer s.srw.sr.http.CloseIdleConnections()
	}
	s.rest = append(s.rest, &soakStream{id: 0, url: s.restURL("/:send")})
	for g := range o.Groups {
		s.rest = append(s.rest, &soakStream{id: s.groupStream(g), url: s.restURL("/groups/" + s.groupName(g) + "/:send")})
	}
	for u := range o.Users {
		s.rest = append(s.rest, &soakStream{id: s.userStream(u), url: s.restURL("/users/" + s.userName(u) + "/:send")})
	}
	if s.hasSignalR() {
		for g := range o.Groups {
			s.rest = append(s.rest, &soakStream{id: s.signalRStream(g), url: r.signalRSendURL(s.groupName(g)), signalR: true})
		}
	}
	s.talk = make([]groupStreams, o.Groups)
	for g := range s.talk {
		s.talk[g].streams = map[uint32]*soakStream{}
	}

	ln := o.HandlerListener
	if ln == nil {
		if ln, err = net.Listen("tcp", o.HandlerAddr); err != nil {
			return nil, fmt.Errorf("soak event handler: %w", err)
		}
	}
	s.h = newSoakHandler(ln, o.HandlerCycle, o.HandlerSlow)
	defer s.h.stop()
	s.pb = newHealthProbe(ctx, r.endpoint, o.ServerPID, r.serverToken)

	rep := &SoakReport{Options: o, Date: time.Now().UTC(), Server: s.pb.source}
	if rep.Start, err = s.pb.health(ctx); err != nil {
		return nil, err
	}
	s.printf("soak %s: server observed by %s; start: %s; handler at %s (cycle %s)", o.Duration, s.pb.source, healthText(rep.Start), s.h.addr, o.HandlerCycle)
	t0 := time.Now()

	churnCtx, stopChurn := context.WithTimeout(ctx, o.Duration)
	defer stopChurn()
	var bg sync.WaitGroup
	handlerDone := make(chan struct{})
	go func() {
		defer close(handlerDone)
		s.h.run(churnCtx, t0)
	}()
	for p := range o.Publishers {
		bg.Add(1)
		go func() {
			defer bg.Done()
			s.publish(churnCtx, p)
		}()
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		s.sampleLoop(churnCtx, t0, rep)
	}()
	var clients sync.WaitGroup
	s.churn(churnCtx, &clients)
	clients.Wait()
	bg.Wait()
	s.h.forced.Store(true)
	<-handlerDone
	s.printf("soak %s: churn stopped (%s); every client left; settling %s with the handler healthy", s.elapsed(t0), healthText(s.sampleOrZero(ctx)), o.Settle)
	if s.hasSignalR() {
		s.srw.sr.http.CloseIdleConnections()
	}
	select {
	case <-time.After(o.Settle):
	case <-ctx.Done():
	}
	// The server's pooled connections to the handler are part of its open files: closing
	// the handler lets them go, so that the end is compared with a start that had none.
	s.h.stop()
	time.Sleep(time.Second)
	rep.End, err = s.pb.health(context.WithoutCancel(ctx))
	rep.Elapsed = time.Since(t0).Seconds()
	s.fill(rep)
	s.judge(rep)
	if err != nil {
		return rep, err
	}
	return rep, nil
}

func (s *soak) printf(format string, a ...any) {
	if s.o.Progress != nil {
		fmt.Fprintf(s.o.Progress, format+"\n", a...)
	}
}

func (s *soak) sampleOrZero(ctx context.Context) ServerHealth {
	h, _ := s.pb.health(context.WithoutCancel(ctx))
	return h
}

func healthText(h ServerHealth) string {
	return fmt.Sprintf("RSS %.1f MB, %d goroutines, %d open files", float64(h.RSS)/(1<<20), h.Goroutines, h.OpenFDs)
}

// sampleLoop samples the server every SampleEvery until ctx is done.
func (s *soak) sampleLoop(ctx context.Context, t0 time.Time, rep *SoakReport) {
	tick := time.NewTicker(s.o.SampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h, err := s.pb.health(context.WithoutCancel(ctx))
		if err != nil {
			s.printf("soak %s: sampling the server: %v", s.elapsed(t0), err)
			continue
		}
		smp := SoakSample{ServerHealth: h, Elapsed: time.Since(t0).Seconds(), Handler: handlerMode(s.h.mode.Load()).String(),
			Live: s.live.Load(), Opened: s.opened.Load(), Sent: s.restSent.Load() + s.clientSent.Load(),
			Delivered: s.delivered.Load(), Lost: s.lost.Load()}
		s.mu.Lock()
		rep.Samples = append(rep.Samples, smp)
		s.mu.Unlock()
		hf := s.h.figures()
		s.printf("soak %6s  %s | handler %-7s | live %d, opened %d, sent %d, delivered %d, lost %d | injected: %d×500, %d slow, %d down",
			s.elapsed(t0), healthText(h), smp.Handler, smp.Live, smp.Opened, smp.Sent, smp.Delivered, smp.Lost, hf.Failed, hf.Slow, hf.DownPeriods)
	}
}

// churn starts clients, at most ConnectRate per second, while fewer than Conns are alive,
// until ctx is done.
func (s *soak) churn(ctx context.Context, wg *sync.WaitGroup) {
	rnd := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const step = 10 * time.Millisecond
	tick := time.NewTicker(step)
	defer tick.Stop()
	budget := 0.0
	var n uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		budget = min(budget+s.o.ConnectRate*step.Seconds(), max(1, s.o.ConnectRate/10))
		for budget >= 1 && s.live.Load() < int64(s.o.Conns) {
			budget--
			n++
			s.live.Add(1)
			seed := rnd.Uint64()
			id := n
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer s.live.Add(-1)
				s.client(ctx, id, rand.New(rand.NewPCG(seed, id)))
			}()
		}
	}
}

// publish runs REST publisher p: it owns the REST streams whose id is p modulo Publishers
// and sends to a random one of them Rate/Publishers times a second, one request at a time.
func (s *soak) publish(ctx context.Context, p int) {
	var mine []*soakStream
	for _, st := range s.rest {
		if int(st.id)%s.o.Publishers == p {
			mine = append(mine, st)
		}
	}
	if len(mine) == 0 {
		return
	}
	rnd := rand.New(rand.NewPCG(uint64(p), 11))
	interval := time.Duration(float64(time.Second) * float64(s.o.Publishers) / s.o.Rate)
	// One keep-alive connection per endpoint: a restConn stays on the host it dialed.
	var wpsConn, srConn restConn
	defer wpsConn.close()
	defer srConn.close()
	var body []byte
	next := time.Now()
	for ctx.Err() == nil {
		if d := time.Until(next); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return
			}
		} else if d < -time.Second {
			next = time.Now() // behind (the server was slow): do not burst
		}
		next = next.Add(interval)
		st := mine[rnd.IntN(len(mine))]
		seq := st.accepted.Load()
		ts := time.Now().UnixNano()
		ct, rc := "text/plain", &wpsConn
		if st.signalR {
			ct, rc = "application/json", &srConn
			body = appendSignalRBody(body[:0], func(b []byte) []byte { return appendPayload(b, st.id, seq, ts, s.o.Size) })
		} else {
			body = appendPayload(body[:0], st.id, seq, ts, s.o.Size)
		}
		req, err := newSoakRequest(ctx, st.url, body, ct, s.r.serverToken(st.url))
		if err != nil {
			s.count(s.sendErrors, err.Error())
			return
		}
		resp, err := rc.do(ctx, req)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.count(s.sendErrors, "rest: "+reason(err))
			st.skip(seq)
		case resp.StatusCode != 202:
			s.count(s.sendErrors, "rest: http "+resp.Status)
		default:
			st.accepted.Add(1)
			s.restSent.Add(1)
		}
	}
}

// registerTalker adds a talking client's stream to group g.
func (s *soak) registerTalker(g int) *soakStream {
	gs := &s.talk[g]
	gs.mu.Lock()
	defer gs.mu.Unlock()
	now := time.Now().UnixNano()
	for id, st := range gs.streams { // forget streams that ended long ago
		if e := st.ended.Load(); e != 0 && time.Duration(now-e) > 2*s.o.MaxLife+s.o.Drain {
			delete(gs.streams, id)
		}
	}
	serial := s.serial.Add(1)
	st := &soakStream{id: clientStreamID(serial), serial: serial}
	gs.streams[st.id] = st
	return st
}

var errSoakStopped = errors.New("soak: stopped")
