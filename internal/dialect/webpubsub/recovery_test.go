package webpubsub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

type dataFrame struct {
	Type       string `json:"type"`
	Event      string `json:"event"`
	SequenceID uint64 `json:"sequenceId"`
	Data       string `json:"data"`

	ConnectionID      string `json:"connectionId"`
	ReconnectionToken string `json:"reconnectionToken"`
}

// TestReliableRecoveryAfterTCPDrop drops the TCP connection of a reliable
// client while messages stream to it, recovers the session and checks that
// the client ends with every message exactly once, in order.
func TestReliableRecoveryAfterTCPDrop(t *testing.T) {
	t.Run("closed", func(t *testing.T) { testRecovery(t, false) })
	// The server has not noticed the drop yet: the recovery replaces a socket
	// that still looks alive, and that socket must not take the replay.
	t.Run("half-open", func(t *testing.T) { testRecovery(t, true) })
}

func testRecovery(t *testing.T, halfOpen bool) {
	const total = 900 // below the 1000-message replay bound, which a stalled client would overflow
	s := startServer(t, serverOptions{})
	tok := s.token(t, "rel", auth.MintOptions{UserID: "u", Groups: []string{"feed"}})
	c := mustDial(t, s.wsURL("rel", tok), ProtocolJSONReliable)
	var hello dataFrame
	json.Unmarshal([]byte(c.read()), &hello)
	if hello.Event != "connected" || hello.ReconnectionToken == "" {
		t.Fatalf("connected = %+v", hello)
	}
	hub, _ := s.node.Hub("rel")

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < total; i++ {
			m := &core.Message{Type: core.Text, Data: fmt.Appendf(nil, "%d", i), From: core.FromGroup, Group: "feed"}
			if err := hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "feed"}, m); err != nil {
				t.Error(err)
				return
			}
			if i%100 == 0 {
				time.Sleep(time.Millisecond) // let the stream interleave with the drop
			}
		}
	}()

	var got []string
	var lastSeq uint64
	receive := func(cl *client, until func() bool) error {
		for !until() {
			p, _, err := cl.next()
			if err != nil {
				return err
			}
			var f dataFrame
			if err := json.Unmarshal(p, &f); err != nil {
				t.Fatalf("bad frame %s", p)
			}
			if f.Type != "message" {
				continue
			}
			if f.SequenceID <= lastSeq {
				continue // a replayed message the client already has
			}
			if f.SequenceID != lastSeq+1 {
				t.Fatalf("sequence gap: %d after %d", f.SequenceID, lastSeq)
			}
			lastSeq = f.SequenceID
			got = append(got, f.Data)
			if lastSeq%50 == 0 {
				cl.send(fmt.Sprintf(`{"type":"sequenceAck","sequenceId":%d}`, lastSeq-10))
			}
		}
		return nil
	}
	if err := receive(c, func() bool { return len(got) >= total/4 }); err != nil {
		t.Fatal(err)
	}
	if !halfOpen {
		c.conn.Close() // drop TCP with no close frame
		eventually.True(t, "the dropped conn to be detached", 5*time.Second, func() bool { return hub.ConnCount() == 1 })
	}
	u := s.wsURL("rel", tok) + "&awps_connection_id=" + url.QueryEscape(hello.ConnectionID) +
		"&awps_reconnection_token=" + url.QueryEscape(hello.ReconnectionToken)
	c2 := mustDial(t, u, ProtocolJSONReliable)
	if err := receive(c2, func() bool { return len(got) >= total }); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, v := range got {
		if v != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, v)
		}
	}
}

func TestRecoveryRefusedWith1008(t *testing.T) {
	s := startServer(t, serverOptions{})
	tok := s.token(t, "rel", auth.MintOptions{})
	c := mustDial(t, s.wsURL("rel", tok), ProtocolJSONReliable)
	var hello dataFrame
	json.Unmarshal([]byte(c.read()), &hello)
	cases := map[string]string{
		"bad token":     "&awps_connection_id=" + url.QueryEscape(hello.ConnectionID) + "&awps_reconnection_token=nope",
		"unknown conn":  "&awps_connection_id=nobody&awps_reconnection_token=" + url.QueryEscape(s.keys.ReconnectionToken("nobody")),
		"expired token": "&awps_connection_id=" + url.QueryEscape(hello.ConnectionID) + "&awps_reconnection_token=" + url.QueryEscape(hello.ReconnectionToken),
	}
	for name, q := range cases {
		t.Run(name, func(t *testing.T) {
			proto := ProtocolJSONReliable
			if name == "expired token" {
				proto = ProtocolJSON // a different subprotocol cannot resume the session
			}
			c := mustDial(t, s.wsURL("rel", "x")+q, proto)
			if ce := c.expectClose(); ce.code != 1008 {
				t.Fatalf("close %d, want 1008", ce.code)
			}
		})
	}
	// A session closed by the server cannot be recovered either.
	hub, _ := s.node.Hub("rel")
	hub.CloseConns(context.Background(), core.Target{Kind: core.ToConn, Name: hello.ConnectionID}, "bye")
	var disc dataFrame
	json.Unmarshal([]byte(c.read()), &disc)
	if disc.Event != "disconnected" {
		t.Fatalf("want disconnected, got %+v", disc)
	}
	if ce := c.expectClose(); ce.code != 1000 {
		t.Fatalf("server close code %d", ce.code)
	}
	c3 := mustDial(t, s.wsURL("rel", "x")+"&awps_connection_id="+url.QueryEscape(hello.ConnectionID)+
		"&awps_reconnection_token="+url.QueryEscape(hello.ReconnectionToken), ProtocolJSONReliable)
	if ce := c3.expectClose(); ce.code != 1008 {
		t.Fatalf("recovery after server close: %d, want 1008", ce.code)
	}
}

// TestSlowConsumerIsClosed fills the queue of a client that never reads and
// checks it is closed and counted while a reading client keeps receiving.
func TestSlowConsumerIsClosed(t *testing.T) {
	s := startServer(t, serverOptions{limits: core.Limits{MaxQueueBytes: 256 << 10}})
	tok := s.token(t, "slow", auth.MintOptions{Groups: []string{"g"}})
	slow := mustDial(t, s.wsURL("slow", tok), ProtocolJSON)
	fast := mustDial(t, s.wsURL("slow", tok), ProtocolJSON)
	fast.read()
	hub, _ := s.node.Hub("slow")
	eventually.True(t, "2 conns in the hub", 5*time.Second, func() bool { return hub.ConnCount() == 2 })

	payload := strings.Repeat("x", 32<<10)
	var received atomic.Int64
	readErr := make(chan error, 1)
	go func() { // the fast client reads everything
		for {
			p, _, err := fast.next()
			if err != nil {
				readErr <- err
				return
			}
			if strings.Contains(string(p), `"from":"group"`) {
				received.Add(1)
			}
		}
	}()
	const total = 600 // 19 MiB: more than the kernel buffers of the idle client hold
	for i := 1; i <= total; i++ {
		hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"},
			&core.Message{Type: core.Text, Data: []byte(payload), From: core.FromGroup, Group: "g"})
		for received.Load() < int64(i) { // pace the sender to the reading client
			select {
			case err := <-readErr:
				t.Fatalf("reading client failed after %d messages: %v", received.Load(), err)
			default:
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
	eventually.True(t, "the slow consumer to be closed", 5*time.Second, func() bool { return hub.ConnCount() == 1 })
	if v := metrictest.Present(t, s.reg, "switchboard_conn_slow_consumer_closes_total"); v != 1 {
		t.Fatalf("slow consumer closes = %v", v)
	}
	_ = slow
}

// TestClientGoodbyeEndsReliableSession: a reliable client that closes with a
// close frame has left; its session ends at once instead of waiting out the
// recovery window (an hour here), and it cannot be resumed.
func TestClientGoodbyeEndsReliableSession(t *testing.T) {
	s := startServer(t, serverOptions{recovery: time.Hour})
	tok := s.token(t, "bye", auth.MintOptions{})
	c := mustDial(t, s.wsURL("bye", tok), ProtocolJSONReliable)
	var hello dataFrame
	json.Unmarshal([]byte(c.read()), &hello)
	hub, _ := s.node.Hub("bye")
	c.ws.WriteClose(ws.StatusNormalClosure, "bye")
	eventually.True(t, "the session to end", 5*time.Second, func() bool { return hub.ConnCount() == 0 })
	r := mustDial(t, s.wsURL("bye", "x")+"&awps_connection_id="+url.QueryEscape(hello.ConnectionID)+
		"&awps_reconnection_token="+url.QueryEscape(hello.ReconnectionToken), ProtocolJSONReliable)
	if ce := r.expectClose(); ce.code != 1008 {
		t.Fatalf("resume after goodbye: close %d, want 1008", ce.code)
	}
}

// TestRecoveredClientGetsConnected: a recovered reliable client gets a
// connected message (same connection id and reconnection token) after the
// replay; @azure/web-pubsub-client 1.1.0 resumes its outbound group streams
// only when one comes.
func TestRecoveredClientGetsConnected(t *testing.T) {
	s := startServer(t, serverOptions{recovery: time.Minute})
	tok := s.token(t, "rc", auth.MintOptions{UserID: "u"})
	c := mustDial(t, s.wsURL("rc", tok), ProtocolJSONReliable)
	var hello dataFrame
	json.Unmarshal([]byte(c.read()), &hello)
	hub, _ := s.node.Hub("rc")
	conn, _ := hub.Conn(hello.ConnectionID)
	c.conn.Close()
	eventually.True(t, "the drop to be noticed", 5*time.Second, func() bool { return !conn.Linked() })
	conn.Deliver(&core.Message{Type: core.Text, Data: []byte("while away")})
	c2 := mustDial(t, s.wsURL("rc", tok)+"&awps_connection_id="+url.QueryEscape(hello.ConnectionID)+
		"&awps_reconnection_token="+url.QueryEscape(hello.ReconnectionToken), ProtocolJSONReliable)
	if got := c2.read(); got != `{"sequenceId":1,"type":"message","from":"server","dataType":"text","data":"while away"}` {
		t.Fatalf("first frame after recovery %s, want the replay", got)
	}
	want := `{"type":"system","event":"connected","connectionId":"` + hello.ConnectionID + `","userId":"u","reconnectionToken":"` + hello.ReconnectionToken + `"}`
	if got := c2.read(); got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}
