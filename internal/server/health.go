package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// The probes, anonymous and cheap (no lock beyond a few atomics, no I/O):
//
//	/healthz            alive: the process serves HTTP; always 200 {"status":"alive"}
//	/readyz             ready to take traffic: 200 {"status":"ready"}, else
//	/api/health/ready   503 {"status":"unavailable","reasons":[…]}
//
// Not ready: before Serve took the listeners and from the start of a
// shutdown (so a load balancer stops sending new connections while the
// sessions drain), while the history's storage refuses writes (a full disk,
// an I/O error), while a clustered node has no NATS connection, and once a
// connector stopped on an error. /api/health stays Azure's: 200 whenever
// the process answers.
const (
	livePath   = "/healthz"
	readyzPath = "/readyz"
	readyPath  = "/api/health/ready" // the name of earlier releases
)

// unavailabler says why sends to groups that keep history are refused
// (history.Service, cluster.History).
type unavailabler interface {
	Unavailable() error
}

// allAvailable is unavailable while one of its histories is.
type allAvailable []unavailabler

func (a allAvailable) Unavailable() error {
	for _, u := range a {
		if err := u.Unavailable(); err != nil {
			return err
		}
	}
	return nil
}

// notReady returns why the server does not take traffic, nil when it does.
func (s *Server) notReady() []string {
	var reasons []string
	if !s.serving.Load() {
		reasons = append(reasons, "not serving: starting or shutting down")
	}
	if s.ready != nil {
		if err := s.ready.Unavailable(); err != nil {
			reasons = append(reasons, err.Error())
		}
	}
	if s.clus != nil && !s.clus.Connected() {
		reasons = append(reasons, "cluster: not connected to NATS")
	}
	for _, err := range s.conn.failures() {
		reasons = append(reasons, err.Error())
	}
	return reasons
}

// probes registers the liveness and readiness probes on mux; s is read
// only when they are asked, once the server exists.
func probes(mux *http.ServeMux, s **Server) {
	mux.Handle(livePath, probe(func() []string { return nil }, "alive"))
	ready := probe(func() []string { return (*s).notReady() }, "ready")
	mux.Handle(readyzPath, ready)
	mux.Handle(readyPath, ready)
}

// probe answers GET and HEAD: 200 {"status":ok} when check finds nothing,
// 503 {"status":"unavailable","reasons":[…]} otherwise.
func probe(check func() []string, ok string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body := struct {
			Status  string   `json:"status"`
			Reasons []string `json:"reasons,omitempty"`
		}{Status: ok, Reasons: check()}
		status := http.StatusOK
		if len(body.Reasons) > 0 {
			status, body.Status = http.StatusServiceUnavailable, "unavailable"
		}
		b, _ := json.Marshal(body) // strings only: cannot fail
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		if r.Method == http.MethodGet {
			w.Write(b)
		}
	})
}

// connectorFailure is a connector whose Run returned with an error while
// the server served.
func connectorFailure(name string, err error) error {
	return fmt.Errorf("connector %s stopped: %s", name, strings.TrimSpace(err.Error()))
}
