package bench

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A publisher's connection survives the server closing it: after a "Connection: close"
// answer or a dropped connection, the next request dials again.
func TestRestConnRedials(t *testing.T) {
	var requests, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		if r.Header.Get("Authorization") != "Bearer t" || r.ContentLength != 5 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if n%3 == 0 {
			w.Header().Set("Connection", "close")
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	var rc restConn
	defer rc.close()
	ctx := context.Background()
	send := func() (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/x", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer t")
		return rc.do(ctx, req)
	}
	for i := range 9 {
		resp, err := send()
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	if got := conns.Load(); got != 3 {
		t.Errorf("%d connections for 9 requests with every third answer closing, want 3", got)
	}

	if _, err := send(); err != nil { // request 10 keeps its connection
		t.Fatal(err)
	}
	srv.CloseClientConnections()
	if _, err := send(); err == nil {
		t.Fatal("a request on a connection the server closed succeeded")
	}
	if resp, err := send(); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("after the server dropped the connection: %v %v", resp, err)
	}
}

func TestDefaultWorkers(t *testing.T) {
	for _, tt := range []struct{ conns, cpus, want int }{
		{100, 2, 1}, {1999, 2, 1}, {5000, 2, 2}, {19000, 2, 2}, {19000, 1, 2}, {40000, 2, 3}, {5000, 8, 5}, {0, 4, 1},
	} {
		if got := defaultWorkers(tt.conns, tt.cpus); got != tt.want {
			t.Errorf("defaultWorkers(%d, %d) = %d, want %d", tt.conns, tt.cpus, got, tt.want)
		}
	}
}

// A publisher whose context ends is not left waiting for an answer that does not come.
func TestRestConnCancel(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	defer close(release)

	ctx, cancel := context.WithCancel(context.Background())
	var rc restConn
	defer rc.close()
	send := func(path string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+path, strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		_, err = rc.do(ctx, req)
		return err
	}
	if err := send("/fast"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- send("/slow") }()
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("a request in flight when its context ended succeeded")
		}
	case <-time.After(10 * time.Second): // far beyond the immediate failure expected
		t.Fatal("a request in flight still waits for its answer after its context ended")
	}
	if err := send("/fast"); !errors.Is(err, context.Canceled) {
		t.Fatalf("request after the context ended: %v, want context.Canceled", err)
	}
}
