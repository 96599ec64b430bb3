package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/tinylib/msgp/msgp"
)

// The SignalR side of the load tool: clients that negotiate, open a WebSocket to /client/,
// speak the JSON or MessagePack hub protocol, and join their groups through the SignalR REST
// API, as an app server does for its clients in serverless mode.

// SignalRTarget is the hub method the SignalR scenarios send to and their clients listen on.
const SignalRTarget = "bench"

// SignalRAPIVersion is the REST API version the SignalR scenarios use.
const SignalRAPIVersion = "2022-06-01"

// DefaultSignalRPing is how often a SignalR client sends its Ping: the server drops a
// WebSocket client that is silent for its client timeout (30 s by default).
const DefaultSignalRPing = 15 * time.Second

var (
	errNegotiate = errors.New("negotiate")
	errHandshake = errors.New("handshake")
	errJoin      = errors.New("join group")
)

// signalR is a worker's SignalR endpoint: where to negotiate and connect, the keys for client
// and REST tokens, and the hub protocol its clients speak.
type signalR struct {
	endpoint string // http(s)://host:port
	hub      string
	ring     *auth.KeyRing
	audience string // client tokens
	wsBase   string // ws(s)://host:port/client/?hub=<hub>
	proto    hubproto.Protocol
	http     *http.Client // negotiate and group joins
	ping     time.Duration
}

func newSignalR(connString, hub, protocol string, ping time.Duration, dialers int) (*signalR, error) {
	endpoint, key, err := auth.ParseConnectionString(connString)
	if err != nil {
		return nil, fmt.Errorf("signalr connection string: %w", err)
	}
	ring, err := auth.NewKeyRing(key)
	if err != nil {
		return nil, err
	}
	proto, ok := hubproto.Lookup(protocol)
	if !ok {
		return nil, fmt.Errorf("unknown SignalR hub protocol %q (want json or messagepack)", protocol)
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	if ping <= 0 {
		ping = DefaultSignalRPing
	}
	return &signalR{
		endpoint: endpoint,
		hub:      hub,
		ring:     ring,
		audience: auth.SignalRClientAudience(endpoint, hub),
		wsBase:   u.String() + auth.SignalRClientPath + "?hub=" + url.QueryEscape(hub),
		proto:    proto,
		http: &http.Client{Transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: max(dialers, 64),
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		}, Timeout: 30 * time.Second},
		ping: ping,
	}, nil
}

// negotiateResponse is the part of the negotiate answer (version 1) a WebSocket client uses.
type negotiateResponse struct {
	ConnectionID    string `json:"connectionId"`
	ConnectionToken string `json:"connectionToken"`
	Error           string `json:"error"`
}

// negotiate asks for a connection: POST /client/negotiate?hub=…&negotiateVersion=1. Requests
// share a pool of keep-alive connections, as a browser's requests to one origin do.
func (s *signalR) negotiate(ctx context.Context, token string) (negotiateResponse, error) {
	var nr negotiateResponse
	u := s.endpoint + "/client/negotiate?hub=" + url.QueryEscape(s.hub) + "&negotiateVersion=1"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return nr, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.http.Do(req)
	if err != nil {
		return nr, fmt.Errorf("%w: %w", errNegotiate, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if err != nil {
		return nr, fmt.Errorf("%w: %w", errNegotiate, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nr, fmt.Errorf("%w: http %d", errNegotiate, resp.StatusCode)
	}
	if err := json.Unmarshal(body, &nr); err != nil {
		return nr, fmt.Errorf("%w: answer: %w", errNegotiate, err)
	}
	if nr.Error != "" {
		return nr, fmt.Errorf("%w: %.60s", errNegotiate, nr.Error)
	}
	if nr.ConnectionID == "" || nr.ConnectionToken == "" {
		return nr, fmt.Errorf("%w: no connectionId or connectionToken (negotiateVersion 1)", errNegotiate)
	}
	return nr, nil
}

// join adds connection id to group through the REST API, as the app server would.
func (s *signalR) join(ctx context.Context, group, id string) error {
	u := s.endpoint + "/api/hubs/" + url.PathEscape(s.hub) + "/groups/" + url.PathEscape(group) +
		"/connections/" + url.PathEscape(id) + "?api-version=" + SignalRAPIVersion
	tok, err := s.ring.MintServerToken(u, time.Hour)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := s.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w: %w", errJoin, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: http %d", errJoin, resp.StatusCode)
	}
	return nil
}

// dialSignalR opens a SignalR client: negotiate, WebSocket to /client/?hub=…&id=<connection
// token> (the token in the Authorization header, as the Node client sends it), the handshake,
// and its answer. Then it joins spec.Groups through the REST API, so that the connection is in
// its groups when dialSignalR returns.
func (w *Worker) dialSignalR(ctx context.Context, spec ConnSpec, fresh bool) (*client, error) {
	s := w.sr
	token, err := w.token(spec, fresh)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	nr, err := s.negotiate(ctx, token)
	if err != nil {
		return nil, err
	}
	d := w.wsDialer(spec)
	d.Header = ws.HandshakeHeaderHTTP(http.Header{"Authorization": {"Bearer " + token}})
	conn, br, _, err := d.Dial(ctx, s.wsBase+"&id="+url.QueryEscape(nr.ConnectionToken))
	if err != nil {
		return nil, err
	}
	if br == nil {
		br = bufio.NewReaderSize(conn, readBufferSize)
	}
	c := &client{w: w, spec: spec, conn: conn, br: br, proto: s.proto, tracks: map[uint32]*seqTrack{}, done: make(chan struct{})}
	hs := make([]byte, 0, 64)
	hs = append(hs, `{"protocol":`...)
	hs = appendJSONString(hs, s.proto.Name())
	hs = append(hs, `,"version":1}`...)
	hs = append(hs, hubproto.RecordSeparator)
	conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	// The handshake is a JSON record in a text frame whatever the protocol.
	if err := c.write(ws.OpText, hs); err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: %w", errHandshake, err)
	}
	var buf []byte
	_, p, err := c.readFrame(&buf)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%w: waiting for the answer: %w", errHandshake, err)
	}
	rest, err := handshakeAnswer(p)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetReadDeadline(time.Time{})
	if len(rest) > 0 { // messages behind the answer in the same frame
		c.onHub(rest, time.Now().UnixNano())
	}
	for _, g := range spec.Groups {
		if err := s.join(ctx, g, nr.ConnectionID); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return c, nil
}

// handshakeAnswer checks the server's handshake answer at the start of p ({}␞, or
// {"error":"…"}␞) and returns what follows it.
func handshakeAnswer(p []byte) (rest []byte, err error) {
	i := bytes.IndexByte(p, hubproto.RecordSeparator)
	if i < 0 {
		return nil, fmt.Errorf("%w: answer without a record separator: %.60q", errHandshake, p)
	}
	var a struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(p[:i], &a); err != nil {
		return nil, fmt.Errorf("%w: answer %.60q: %w", errHandshake, p[:i], err)
	}
	if a.Error != nil {
		return nil, fmt.Errorf("%w: refused: %.60s", errHandshake, *a.Error)
	}
	return p[i+1:], nil
}

// onHub handles one WebSocket message of hub protocol records: bench invocations are
// accounted, the server's Pings ignored, a Close noted.
func (c *client) onHub(p []byte, now int64) {
	for len(p) > 0 {
		msg, rest, err := c.proto.Next(p, 0)
		if err != nil {
			c.w.count(&c.w.errors, "hub framing: "+reason(err))
			return
		}
		p = rest
		m, err := c.proto.Decode(msg)
		if err != nil {
			c.w.count(&c.w.errors, "hub message: "+reason(err))
			continue
		}
		switch m.Kind {
		case hubproto.Invocation:
			if m.Target != SignalRTarget {
				c.w.count(&c.w.errors, "foreign message")
				continue
			}
			arg, err := firstStringArg(c.proto, m.Raw)
			if err != nil {
				c.w.count(&c.w.errors, "foreign message")
				continue
			}
			stream, seq, ts, err := parsePayload(arg)
			if err != nil {
				c.w.count(&c.w.errors, "foreign message")
				continue
			}
			c.track(stream, seq, ts, now)
		case hubproto.Ping:
		case hubproto.Close:
			if !c.closing.Load() {
				r := "close message"
				if m.Error != "" {
					r = fmt.Sprintf("close message: %.60s", m.Error)
				}
				c.w.count(&c.w.disconnects, r)
			}
		default:
			c.w.count(&c.w.errors, "unexpected hub message: "+m.Kind.String())
		}
	}
}

var (
	errNoArgument  = errors.New("bench: invocation has no string argument")
	argumentsKey   = []byte(`"arguments"`)
	errArgumentsAt = errors.New("bench: no arguments array")
)

// firstStringArg returns the first argument of an unframed invocation when it is a string
// (for JSON, the bytes between its quotes, escapes left as they are: a bench payload has
// none). Bench payloads are the first argument.
func firstStringArg(p hubproto.Protocol, raw []byte) ([]byte, error) {
	if p.Binary() {
		// [1, headers, invocationId, target, [arguments…], streamIds?]
		n, b, err := msgp.ReadArrayHeaderBytes(raw)
		if err != nil || n < 5 {
			return nil, errArgumentsAt
		}
		for range 4 {
			if b, err = msgp.Skip(b); err != nil {
				return nil, errArgumentsAt
			}
		}
		na, b, err := msgp.ReadArrayHeaderBytes(b)
		if err != nil {
			return nil, errArgumentsAt
		}
		if na == 0 {
			return nil, errNoArgument
		}
		s, _, err := msgp.ReadStringZC(b)
		if err != nil {
			return nil, errNoArgument
		}
		return s, nil
	}
	// {"type":1,"target":"bench","arguments":["…"]}: the server's canonical invocation.
	// Headers may come first; their values are strings, so a quoted "arguments" followed by
	// ':' outside them is the member.
	i := 0
	for {
		j := bytes.Index(raw[i:], argumentsKey)
		if j < 0 {
			return nil, errArgumentsAt
		}
		i += j + len(argumentsKey)
		k := skipJSONSpace(raw, i)
		if k < len(raw) && raw[k] == ':' {
			i = k + 1
			break
		}
	}
	i = skipJSONSpace(raw, i)
	if i >= len(raw) || raw[i] != '[' {
		return nil, errArgumentsAt
	}
	i = skipJSONSpace(raw, i+1)
	if i >= len(raw) || raw[i] != '"' {
		return nil, errNoArgument
	}
	start := i + 1
	for i = start; i < len(raw); i++ {
		switch raw[i] {
		case '\\':
			i++
		case '"':
			return raw[start:i], nil
		}
	}
	return nil, errNoArgument
}

func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// appendSignalRBody appends the REST body of a SignalR send carrying payload as the one argument
// of target: {"target":"bench","arguments":["<payload>"]}. Bench payloads need no escaping.
func appendSignalRBody(b []byte, payload func([]byte) []byte) []byte {
	b = append(b, `{"target":"`+SignalRTarget+`","arguments":["`...)
	b = payload(b)
	return append(b, `"]}`...)
}

// pingLoop sends every SignalR client of the worker a Ping each interval until stop is
// closed: the server drops a client that sends nothing for its client timeout.
func (w *Worker) pingLoop(stop <-chan struct{}, done chan<- struct{}, every time.Duration, proto hubproto.Protocol) {
	defer close(done)
	frame := proto.AppendPing(nil)
	op := ws.OpText
	if proto.Binary() {
		op = ws.OpBinary
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		w.mu.Lock()
		conns := append([]*client(nil), w.conns...)
		w.mu.Unlock()
		for _, c := range conns {
			select {
			case <-stop:
				return
			default:
			}
			// A failed write ends the connection; its reader reports why.
			c.write(op, frame)
		}
	}
}

// startPinger starts the worker's pinger for its SignalR clients if it is not running.
func (w *Worker) startPinger() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.sr == nil || w.pingStop != nil {
		return
	}
	w.pingStop, w.pingDone = make(chan struct{}), make(chan struct{})
	go w.pingLoop(w.pingStop, w.pingDone, w.sr.ping, w.sr.proto)
}

// stopPinger stops the pinger and waits for it.
func (w *Worker) stopPinger() {
	w.mu.Lock()
	stop, done := w.pingStop, w.pingDone
	w.pingStop, w.pingDone = nil, nil
	w.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}

// isSignalR reports whether the scenario drives the SignalR endpoint.
func isSignalR(scenario string) bool { return strings.HasPrefix(scenario, "signalr-") }
