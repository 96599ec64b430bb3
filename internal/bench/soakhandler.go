package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// handlerMode is what the soak's event handler does in one part of its cycle.
type handlerMode int32

const (
	modeHealthy handlerMode = iota // answers every event at once (204)
	modeFailing                    // answers every event 500
	modeSlow                       // answers after longer than the server's handler timeout
	modeDown                       // not listening: connections are refused
)

func (m handlerMode) String() string {
	return [...]string{"healthy", "failing", "slow", "down"}[m]
}

// soakHandler is the soak's event-handler server: the Web PubSub CloudEvents handler
// (abuse-protection OPTIONS, connect, connected, disconnected, user events) and the SignalR
// upstream (connections/connected, connections/disconnected) of the soak's hub. Over each
// cycle it is healthy for half the time, then answers 500, then answers too slowly, then
// does not listen at all, so that the server's connect path and its retry queue go through
// failures and recoveries.
type soakHandler struct {
	addr  string        // the listening address, kept across down periods
	cycle time.Duration // healthy half, then failing, slow and down a sixth each
	slow  time.Duration // how long a slow answer takes

	mode   atomic.Int32
	forced atomic.Bool // healthy for good (the settle period)

	mu       sync.Mutex
	requests map[string]int64 // by event and answer
	srv      *http.Server
	serveErr chan error

	failed    atomic.Int64 // 500 answers
	slowed    atomic.Int64 // answers held past the timeout
	downs     atomic.Int64 // down periods
	refusedIn atomic.Int64 // requests cut when a down period began
}

func newSoakHandler(ln net.Listener, cycle, slow time.Duration) *soakHandler {
	h := &soakHandler{addr: ln.Addr().String(), cycle: cycle, slow: slow, requests: map[string]int64{}}
	h.serve(ln)
	return h
}

// serve starts an HTTP server on ln (the caller holds no lock).
func (h *soakHandler) serve(ln net.Listener) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	h.mu.Lock()
	h.srv, h.serveErr = srv, done
	h.mu.Unlock()
}

// stop closes the HTTP server and every connection to it, and waits for it.
func (h *soakHandler) stop() {
	h.mu.Lock()
	srv, done := h.srv, h.serveErr
	h.srv, h.serveErr = nil, nil
	h.mu.Unlock()
	if srv != nil {
		srv.Close()
		<-done
	}
}

// modeAt is the mode at elapsed time into the soak.
func (h *soakHandler) modeAt(elapsed time.Duration) handlerMode {
	if h.cycle <= 0 {
		return modeHealthy
	}
	f := float64(elapsed%h.cycle) / float64(h.cycle)
	switch {
	case f < 0.5:
		return modeHealthy
	case f < 0.5+1.0/6:
		return modeFailing
	case f < 0.5+2.0/6:
		return modeSlow
	}
	return modeDown
}

// run drives the cycle until ctx is done or the handler is forced healthy; the handler is
// listening when it returns.
func (h *soakHandler) run(ctx context.Context, start time.Time) {
	tick := time.NewTicker(h.cycle / 120)
	defer tick.Stop()
	for {
		m := h.modeAt(time.Since(start))
		stopping := ctx.Err() != nil || h.forced.Load()
		if stopping {
			m = modeHealthy
		}
		prev := handlerMode(h.mode.Swap(int32(m)))
		if m == modeDown && prev != modeDown {
			h.downs.Add(1)
			h.stop()
		}
		if m != modeDown && !h.listening() {
			h.relisten() // after a down period, or again if the last try could not bind
		}
		if stopping {
			return
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func (h *soakHandler) listening() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.srv != nil
}

// relisten listens on the handler's address again after a down period, retrying while
// the address is not free yet.
func (h *soakHandler) relisten() {
	for i := 0; ; i++ {
		ln, err := net.Listen("tcp", h.addr)
		if err == nil {
			h.serve(ln)
			return
		}
		if i == 100 {
			// Give up without a listener rather than hang the soak: the events go on
			// failing, and the report's handler figures show it.
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ServeHTTP answers the server's event requests according to the current mode.
func (h *soakHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	event := eventName(r)
	if r.Method == http.MethodOptions || r.Method == http.MethodGet {
		// Abuse protection: the server validates a host once; it is always allowed.
		w.Header().Set("WebHook-Allowed-Origin", "*")
		w.WriteHeader(http.StatusOK)
		h.count("validate", "200")
		return
	}
	switch handlerMode(h.mode.Load()) {
	case modeFailing:
		h.failed.Add(1)
		h.count(event, "500")
		http.Error(w, "soak: injected failure", http.StatusInternalServerError)
		return
	case modeSlow:
		h.slowed.Add(1)
		h.count(event, "slow")
		select {
		case <-time.After(h.slow):
		case <-r.Context().Done():
			return
		}
	case modeDown:
		// The request arrived just before the listener closed.
		h.refusedIn.Add(1)
		h.count(event, "cut")
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "soak: down", http.StatusServiceUnavailable)
		return
	default:
		h.count(event, "204")
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *soakHandler) count(event, answer string) {
	h.mu.Lock()
	h.requests[event+" "+answer]++
	h.mu.Unlock()
}

// eventName names a request: the CloudEvents type of a Web PubSub event
// (azure.webpubsub.sys.connect → sys.connect), or the SignalR upstream's category/event.
func eventName(r *http.Request) string {
	if t := r.Header.Get("ce-type"); t != "" {
		return strings.TrimPrefix(t, "azure.webpubsub.")
	}
	if c := r.Header.Get("X-ASRS-Category"); c != "" {
		return "signalr." + c + "." + r.Header.Get("X-ASRS-Event")
	}
	return "other"
}

// HandlerFigures are what the soak's event handler saw and injected.
type HandlerFigures struct {
	Requests    map[string]int64 `json:"requests"`    // by "event answer"
	Failed      int64            `json:"failed"`      // answered 500
	Slow        int64            `json:"slow"`        // held past the server's timeout
	DownPeriods int64            `json:"downPeriods"` // times the handler stopped listening
	Cut         int64            `json:"cut"`         // requests cut as a down period began
}

// Injected is the number of failures the handler caused: 500s, slow answers, cut requests
// and down periods (each refuses every connection the server tries while it lasts).
func (f HandlerFigures) Injected() int64 { return f.Failed + f.Slow + f.Cut + f.DownPeriods }

func (h *soakHandler) figures() HandlerFigures {
	h.mu.Lock()
	defer h.mu.Unlock()
	req := make(map[string]int64, len(h.requests))
	for k, v := range h.requests {
		req[k] = v
	}
	return HandlerFigures{Requests: req, Failed: h.failed.Load(), Slow: h.slowed.Load(), DownPeriods: h.downs.Load(), Cut: h.refusedIn.Load()}
}

// SoakServerConfig is the server configuration a soak needs: hub's Web PubSub event
// handlers (every system event and every user event) and a SignalR upstream for its
// connection events, all at the soak's handler address, with a short timeout so that
// the handler's slow periods time out.
func SoakServerConfig(handlerAddr, hub string, timeout time.Duration) string {
	return fmt.Sprintf(`# switchboard bench soak: the event handlers of hub %[2]q are the soak's own server
hubs:
  %[2]s:
    event_handlers:
      - url_template: "http://%[1]s/webpubsub/{hub}/{event}"
        user_events: ["*"]
        system_events: [connect, connected, disconnected]
        timeout: %[3]s
signalr:
  upstreams:
    - url_template: "http://%[1]s/signalr/{hub}/{category}/{event}"
      hub_pattern: %[2]q
      category_pattern: connections
      timeout: %[3]s
`, handlerAddr, hub, timeout)
}
