package signalr

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/relay"
)

// Long polling across nodes: each poll that reaches a node other than the
// connection's is a relay of its own (relay.KindSignalRPoll). The owner runs
// the poll as its own (servePoll, with a pollWriter as the ResponseWriter
// and a context that ends when the client end does) and its answer comes
// back as relay messages: the status and headers first (text), then the
// body (binary); the relay's close ends the answer. A DELETE is a call.

// relayPoll serves one poll of a connection that node holds.
func (e *Endpoint) relayPoll(w http.ResponseWriter, r *http.Request, node, token string) {
	const kind = "poll"
	hub, user, ok := e.relayAuth(w, r, kind)
	if !ok {
		return
	}
	rc, err := e.relays.Dial(e.ctx, node, relay.Request{Kind: relay.KindSignalRPoll, Hub: hub, ConnID: token, UserID: user})
	if err != nil {
		e.relayFailed(w, kind, node, err)
		return
	}
	holdOpen(w)
	p := &pollSocket{wake: make(chan struct{}, 1), done: make(chan struct{})}
	h := rc.Attach(p)
	reason := p.serve(w, r.Context())
	h.HandleClose(reason) // an aborted poll ends on the owner too
}

// relayStop has node run a long-polling client's DELETE.
func (e *Endpoint) relayStop(w http.ResponseWriter, r *http.Request, node, token string) {
	const kind = "delete"
	hub, user, ok := e.relayAuth(w, r, kind)
	if !ok {
		return
	}
	a, err := e.relays.Call(e.ctx, node, relay.Request{Kind: relay.KindSignalRStop, Hub: hub, ConnID: token, UserID: user}, nil)
	if err != nil {
		e.relayFailed(w, kind, node, err)
		return
	}
	if a.Status == http.StatusAccepted {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusAccepted)
		e.metrics.requests.WithLabelValues(kind, "202").Inc()
		return
	}
	e.answer(w, kind, a)
}

// pollSocket is the relayed poll's answer on the node the client polled:
// a relay.Socket whose messages are written to the poll's response.
type pollSocket struct {
	mu   sync.Mutex
	src  core.Source
	wake chan struct{}
	done chan struct{} // closed by Close: the owner's answer is complete
	once sync.Once
}

func (p *pollSocket) Bind(src core.Source) {
	p.mu.Lock()
	p.src = src
	p.mu.Unlock()
	p.Wake()
}

func (p *pollSocket) Wake() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pollSocket) Close(int, string) { p.once.Do(func() { close(p.done) }) }

// ClosedByClient: a poll's end is no goodbye (a DELETE is).
func (p *pollSocket) ClosedByClient() bool { return false }

// serve writes the owner's answer to w until it is complete or the client
// is gone, and says which.
func (p *pollSocket) serve(w http.ResponseWriter, ctx context.Context) string {
	var items []core.Item
	wroteHeader := false
	rc := http.NewResponseController(w)
	for {
		var ended bool
		select {
		case <-p.wake:
		case <-p.done:
			ended = true
		case <-ctx.Done():
			return "the client went away"
		}
		p.mu.Lock()
		src := p.src
		p.mu.Unlock()
		if src != nil {
			items = src.Drain(nil, items[:0])
			for _, it := range items {
				switch {
				case !it.Binary && !wroteHeader:
					writePollHeader(w, it.Body)
					wroteHeader = true
				case it.Binary:
					w.Write(it.Body)
				}
			}
			if len(items) > 0 {
				rc.Flush()
			}
		}
		if ended {
			if !wroteHeader {
				// The relay ended without an answer (the owner left,
				// this node is stopping): answered as a poll that timed
				// out, so that the client polls again, maybe elsewhere.
				// The owner's poll was aborted before it took anything.
				h := w.Header()
				h.Set("Cache-Control", "no-cache, no-store")
				h.Set("Content-Length", "0")
				w.WriteHeader(http.StatusOK)
			}
			return "answered"
		}
	}
}

// pollHeader encodes an answer's status and headers: the status, then a
// "Key: value" line per header value.
func pollHeader(status int, h http.Header) []byte {
	b := strconv.AppendInt(nil, int64(status), 10)
	for k, vs := range h {
		for _, v := range vs {
			b = append(b, '\n')
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, strings.ReplaceAll(v, "\n", " ")...)
		}
	}
	return b
}

// writePollHeader writes what pollHeader encoded; a bad one answers 502.
func writePollHeader(w http.ResponseWriter, b []byte) {
	lines := strings.Split(string(b), "\n")
	status, err := strconv.Atoi(lines[0])
	if err != nil || status < 100 || status > 599 {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	for _, l := range lines[1:] {
		if k, v, ok := strings.Cut(l, ": "); ok {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(status)
}

// acceptPoll runs a relayed poll of session s on a goroutine of the
// endpoint (Close waits for it); the relay's owner end sock carries its
// answer. It returns nil once the endpoint is closing.
func (e *Endpoint) acceptPoll(s *session, sock relay.Socket) relay.Handler {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closing {
		return nil
	}
	ctx, cancel := context.WithCancel(e.ctx)
	pw := &pollWriter{sock: sock, h: http.Header{}}
	sock.Bind(pw)
	r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "/client/", nil)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer cancel()
		e.servePoll(pw, r, s, nil)
		pw.end()
		sock.Close(core.CloseNormal, "poll answered")
	}()
	return pollRelayed{cancel: cancel}
}

// pollRelayed is the owner's handler of a relayed poll: the client end's
// close (the client went away) aborts the poll.
type pollRelayed struct{ cancel context.CancelFunc }

func (pollRelayed) HandleMessage([]byte, bool) error { return nil }
func (h pollRelayed) HandleClose(string)             { h.cancel() }

// pollWriter is the ResponseWriter of a relayed poll on the owner: its
// answer, queued as relay messages (a core.Source the relay drains).
type pollWriter struct {
	sock  relay.Socket
	h     http.Header
	mu    sync.Mutex
	items []core.Item
	wrote bool
}

func (w *pollWriter) Header() http.Header { return w.h }

func (w *pollWriter) WriteHeader(status int) {
	w.mu.Lock()
	if w.wrote {
		w.mu.Unlock()
		return
	}
	w.wrote = true
	w.items = append(w.items, core.Item{Body: pollHeader(status, w.h)})
	w.mu.Unlock()
	w.sock.Wake()
}

func (w *pollWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.mu.Lock()
	w.items = append(w.items, core.Item{Body: bytes.Clone(p), Binary: true}) // the poll reuses p
	w.mu.Unlock()
	w.sock.Wake()
	return len(p), nil
}

// Flush: what is written goes at once.
func (w *pollWriter) Flush() {}

// end answers 204 for a poll that wrote nothing (aborted).
func (w *pollWriter) end() {
	w.mu.Lock()
	wrote := w.wrote
	w.mu.Unlock()
	if !wrote {
		w.WriteHeader(http.StatusNoContent)
	}
}

func (w *pollWriter) Drain(_ core.Link, dst []core.Item) []core.Item {
	w.mu.Lock()
	defer w.mu.Unlock()
	dst = append(dst, w.items...)
	clear(w.items)
	w.items = w.items[:0]
	return dst
}

func (w *pollWriter) AppendHead(dst []byte, _ uint64, _ []byte) []byte { return dst }
