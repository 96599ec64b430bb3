package websocket

import (
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// emfileListener fails its first accepts with EMFILE, then hands out pipes whose client
// ends go to clients.
type emfileListener struct {
	failures atomic.Int64
	clients  chan net.Conn
	closed   chan struct{}
}

func (l *emfileListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	default:
	}
	s, c := net.Pipe()
	select {
	case l.clients <- c:
		return s, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *emfileListener) Close() error   { close(l.closed); return nil }
func (l *emfileListener) Addr() net.Addr { return &net.TCPAddr{} }

// TestFrontDoorWaitsOutEMFILE: the front door keeps accepting after EMFILE. Before, it
// took any error but a timeout for fatal and closed the listener: the http.Server behind
// it got the stored error for ever and the port served nothing until a restart.
func TestFrontDoorWaitsOutEMFILE(t *testing.T) {
	srv, err := NewServer(Options{PingInterval: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ln := &emfileListener{clients: make(chan net.Conn, 1), closed: make(chan struct{})}
	ln.failures.Store(3)
	fd := srv.NewFrontDoor(ln, "/client/hubs/", http.NotFoundHandler(), time.Second)
	go fd.Serve()
	defer fd.Close()
	go func() {
		c := <-ln.clients
		io.WriteString(c, "GET /api/health HTTP/1.1\r\n\r\n")
		io.Copy(io.Discard, c)
	}()
	got := make(chan error, 1)
	go func() {
		c, err := fd.Accept()
		if c != nil {
			c.Close()
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the http.Server's Accept after EMFILE: %v, want the next connection", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection came through")
	}
}
