package websocket

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

// corkState reads TCP_CORK of c.
func corkState(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	v := -1
	rc.Control(func(fd uintptr) { v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK) })
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// corkEnv serves upgrades with the ConnContext hook installed; handle gets
// each socket.
func corkEnv(t *testing.T, handle func(*Socket)) string {
	t.Helper()
	srv, err := NewServer(Options{PingInterval: time.Hour, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sock, err := srv.Upgrade(w, r, "")
		if err != nil {
			return
		}
		handle(sock)
	}))
	hs.Config.ConnContext = ConnContext
	hs.Start()
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(hs.URL, "http")
}

// TestUpgradeSendsWelcomeWithTheResponse: a socket bound before Serve has its
// first frame sent in the segment of the 101 response, so the client's
// handshake read already holds it; afterwards the socket is uncorked.
func TestUpgradeSendsWelcomeWithTheResponse(t *testing.T) {
	socks := make(chan *Socket, 1)
	url := corkEnv(t, func(sock *Socket) {
		src := &testSource{}
		src.push(text("welcome"))
		sock.Bind(src)
		sock.Serve(newTestHandler())
		socks <- sock
	})
	conn, br, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if br == nil || br.Buffered() == 0 {
		t.Fatal("the welcome frame did not arrive with the 101 response")
	}
	p, err := wsutil.ReadServerText(struct {
		io.Reader
		io.Writer
	}{br, conn})
	if err != nil || string(p) != "welcome" {
		t.Fatalf("first frame %q, %v", p, err)
	}
	sock := <-socks
	eventually.True(t, "the socket to be uncorked", 5*time.Second, func() bool { return !sock.corked.Load() && corkState(t, sock.conn) == 0 })
}

// TestUpgradeUncorksAnUnboundSocket: a socket served before anything is
// bound (SignalR waits for the client's handshake) sends its 101 at once.
func TestUpgradeUncorksAnUnboundSocket(t *testing.T) {
	states := make(chan int, 1)
	h := newTestHandler()
	url := corkEnv(t, func(sock *Socket) {
		sock.Serve(h)
		states <- corkState(t, sock.conn)
	})
	conn, _, _, err := ws.Dialer{Timeout: 5 * time.Second}.Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if s := <-states; s != 0 {
		t.Fatalf("TCP_CORK = %d after Serve of an unbound socket, want 0", s)
	}
	if err := wsutil.WriteClientText(conn, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := h.next(t); m.data != "hello" {
		t.Fatalf("server read %q", m.data)
	}
}
