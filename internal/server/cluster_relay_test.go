package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

const reliableProto = "json.reliable.webpubsub.azure.v1"

// reliableFrame is what the tests read of a reliable client's frames.
type reliableFrame struct {
	Type              string `json:"type"`
	Event             string `json:"event"`
	Message           string `json:"message"`
	SequenceID        uint64 `json:"sequenceId"`
	AckID             uint64 `json:"ackId"`
	Success           bool   `json:"success"`
	Data              string `json:"data"`
	ConnectionID      string `json:"connectionId"`
	ReconnectionToken string `json:"reconnectionToken"`
}

// reliableClient is a json.reliable.webpubsub.azure.v1 client that keeps
// what it received by sequence id across its sockets.
type reliableClient struct {
	t          *testing.T
	ws         *wstest.Client
	id, token  string
	lastSeq    uint64
	got        []string
	acks       map[uint64]bool
	sinceAcked int
}

func clientURL(t *testing.T, srv *servertest.Server, groups ...string) string {
	t.Helper()
	ep := strings.TrimRight(srv.Endpoint(), "/")
	tok, err := srv.Keys().MintClientToken(auth.ClientAudience(ep, "chat"), auth.MintOptions{UserID: "rel", Groups: groups,
		Roles: []string{"webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"}})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(ep, "http", "ws", 1) + "/client/hubs/chat?access_token=" + tok
}

func dialReliable(t *testing.T, srv *servertest.Server, groups ...string) *reliableClient {
	t.Helper()
	c := &reliableClient{t: t, ws: wstest.Dial(t, clientURL(t, srv, groups...), reliableProto), acks: map[uint64]bool{}}
	var hello reliableFrame
	json.Unmarshal(c.ws.Read(), &hello)
	if hello.Event != "connected" || hello.ReconnectionToken == "" {
		t.Fatalf("first frame %+v", hello)
	}
	c.id, c.token = hello.ConnectionID, hello.ReconnectionToken
	return c
}

// recoverURL is the URL of a reconnect of c to srv.
func (c *reliableClient) recoverURL(srv *servertest.Server) string {
	return clientURL(c.t, srv) + "&awps_connection_id=" + url.QueryEscape(c.id) + "&awps_reconnection_token=" + url.QueryEscape(c.token)
}

// recoverOn drops c's socket without a close frame and reconnects to srv.
func (c *reliableClient) recoverOn(srv *servertest.Server) {
	c.t.Helper()
	c.ws.Close()
	c.ws = wstest.Dial(c.t, c.recoverURL(srv), reliableProto)
}

// receive reads frames until until() holds: data messages are kept once,
// in sequence order (a replayed one it has is skipped, a gap fails the
// test), acks are recorded; it acknowledges every 20 messages.
func (c *reliableClient) receive(until func() bool) {
	c.t.Helper()
	for !until() {
		c.frame(c.ws.Read())
	}
}

// receiveUntilClosed takes frames as receive does until the server closes
// the socket, and returns its close frame.
func (c *reliableClient) receiveUntilClosed() wsutil.ClosedError {
	c.t.Helper()
	for {
		p, _, err := c.ws.ReadErr()
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			return ce
		}
		if err != nil {
			c.t.Fatalf("no close frame: %v", err)
		}
		c.frame(p)
	}
}

// frame takes one frame (see receive).
func (c *reliableClient) frame(p []byte) {
	c.t.Helper()
	{
		var f reliableFrame
		if err := json.Unmarshal(p, &f); err != nil {
			c.t.Fatalf("bad frame %s", p)
		}
		switch f.Type {
		case "ack":
			c.acks[f.AckID] = f.Success
		case "message":
			if f.SequenceID <= c.lastSeq {
				return // replayed: the client has it
			}
			if f.SequenceID != c.lastSeq+1 {
				c.t.Fatalf("sequence gap: %d after %d", f.SequenceID, c.lastSeq)
			}
			c.lastSeq = f.SequenceID
			c.got = append(c.got, f.Data)
			if c.sinceAcked++; c.sinceAcked == 20 {
				c.sinceAcked = 0
				c.ws.WriteText(fmt.Appendf(nil, `{"type":"sequenceAck","sequenceId":%d}`, c.lastSeq))
			}
		case "system":
			if f.Event == "disconnected" {
				c.t.Fatalf("disconnected: %s", f.Message)
			}
		}
	}
}

// TestClusterReliableRecoversOnAnotherNode: a reliable client of node a
// whose socket drops reconnects to node b while REST sends to its group go
// through node c: b relays it to a, and the client gets every message once,
// in order (sequence ids), across two drops; its own requests (joinGroup,
// sequenceAck) reach its session on a through the relay. Without the relay
// b refuses the reconnect with 1008 (the session is not b's).
func TestClusterReliableRecoversOnAnotherNode(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	c := dialReliable(t, n[0], "feed")
	if !strings.HasPrefix(c.id, "a_") {
		t.Fatalf("conn id %q is not a's", c.id)
	}
	const total = 600
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // before the nodes stop
	wg.Go(func() {
		for i := range total {
			if resp, b := wpsREST(t, n[2], http.MethodPost, "/groups/feed/:send", fmt.Sprintf(`"%d"`, i)); resp.StatusCode != http.StatusAccepted {
				t.Errorf("send %d: %d %s", i, resp.StatusCode, b)
				return
			}
		}
	})
	c.receive(func() bool { return len(c.got) >= total/4 })
	c.recoverOn(n[1]) // a's session, through b
	c.receive(func() bool { return len(c.got) >= total/2 })
	c.recoverOn(n[2]) // and through c
	c.receive(func() bool { return len(c.got) >= total })
	wg.Wait()
	for i, v := range c.got {
		if v != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, v)
		}
	}
	// The client's own requests reach its session on a.
	c.ws.WriteText([]byte(`{"type":"joinGroup","group":"later","ackId":7}`))
	c.receive(func() bool { _, ok := c.acks[7]; return ok })
	if !c.acks[7] {
		t.Fatal("joinGroup through the relay failed")
	}
	mustREST(t, n[1], http.MethodPost, "/groups/later/:send", `"joined"`, http.StatusAccepted)
	c.receive(func() bool { return len(c.got) > total })
	if c.got[total] != "joined" {
		t.Fatalf("got %q after joining", c.got[total])
	}
	// A close of the session on a (REST through b) reaches the client
	// through the relay, with its reason.
	mustREST(t, n[1], http.MethodDelete, "/connections/"+c.id+"?reason=bye", "", http.StatusNoContent)
	var f reliableFrame
	json.Unmarshal(c.ws.Read(), &f)
	if f.Event != "disconnected" || f.Message != "bye" {
		t.Fatalf("got %+v, want disconnected with bye", f)
	}
	expectClose(t, c.ws, 1000, "bye")
}

// expectClose reads until the server's close frame and checks it.
func expectClose(t *testing.T, c *wstest.Client, code int, reason string) {
	t.Helper()
	for {
		_, _, err := c.ReadErr()
		var ce wsutil.ClosedError
		if errors.As(err, &ce) {
			if int(ce.Code) != code || ce.Reason != reason {
				t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Reason, code, reason)
			}
			return
		}
		if err != nil {
			t.Fatalf("no close frame: %v", err)
		}
	}
}

// TestClusterReliableRecoveryRefusals: a reconnect to another node gets
// what the session's node would answer: 1008 for a bad reconnection token
// (checked where the socket is, no relay made), 1008 when the session's
// node is gone.
func TestClusterReliableRecoveryRefusals(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b")
	c := dialReliable(t, n[0], "feed")
	bad := clientURL(t, n[1]) + "&awps_connection_id=" + url.QueryEscape(c.id) + "&awps_reconnection_token=forged"
	expectClose(t, wstest.Dial(t, bad, reliableProto), 1008, "connection cannot be recovered")
	c.ws.Close()
	if err := n[0].Stop(); err != nil {
		t.Fatal(err)
	}
	expectClose(t, wstest.Dial(t, c.recoverURL(n[1]), reliableProto), 1008, "connection cannot be recovered")
}

// srClient is a raw SignalR JSON client over one WebSocket at a time.
type srClient struct {
	t              *testing.T
	ws             *wstest.Client
	id, token, tok string
	buf            []byte
}

// negotiateSR negotiates on srv (stateful reconnect asked for).
func negotiateSR(t *testing.T, srv *servertest.Server, user string) *srClient {
	t.Helper()
	sr := srv.SignalREndpoint()
	tok, err := srv.Keys().MintSignalRClientToken(auth.SignalRClientAudience(sr, "chat"), user, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, b := restDo(t, srv, http.MethodPost, sr+"/client/negotiate?hub=chat&negotiateVersion=1&useStatefulReconnect=true", "",
		"Authorization", "Bearer "+tok)
	var neg struct {
		ConnectionID, ConnectionToken string
		UseStatefulReconnect          bool
	}
	json.Unmarshal(b, &neg)
	if resp.StatusCode != http.StatusOK || !neg.UseStatefulReconnect {
		t.Fatalf("negotiate: %d %s", resp.StatusCode, b)
	}
	return &srClient{t: t, id: neg.ConnectionID, token: neg.ConnectionToken, tok: tok}
}

func (c *srClient) url(srv *servertest.Server, token string) string {
	return strings.Replace(srv.SignalREndpoint(), "http", "ws", 1) + "/client/?hub=chat&id=" + url.QueryEscape(token) + "&access_token=" + c.tok
}

// open dials the connection's WebSocket on srv.
func (c *srClient) open(srv *servertest.Server) {
	c.t.Helper()
	c.ws, c.buf = wstest.Dial(c.t, c.url(srv, c.token)), nil
}

// record returns the next record that is not a Ping.
func (c *srClient) record() string {
	c.t.Helper()
	for {
		if i := strings.IndexByte(string(c.buf), 0x1e); i >= 0 {
			r := string(c.buf[:i])
			c.buf = c.buf[i+1:]
			if r == `{"type":6}` {
				continue
			}
			return r
		}
		c.buf = append(c.buf, c.ws.Read()...)
	}
}

func (c *srClient) expect(want string) {
	c.t.Helper()
	if got := c.record(); got != want {
		c.t.Fatalf("got %s, want %s", got, want)
	}
}

// TestClusterSignalRWebSocketOnAnotherNode: a connection negotiated on node
// a opens its WebSocket on node b (no sticky sessions): the handshake, REST
// sends to the connection through c and the client's Acks reach it through
// b's relay to a; its socket drops and it comes back (stateful reconnect)
// on c, which relays to a too: the Sequence and the replay of what it had
// not acknowledged, nothing lost, nothing twice; the client's Close ends the
// connection on a. Without the relay, b answers 404 No Connection with that
// ID.
func TestClusterSignalRWebSocketOnAnotherNode(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	c := negotiateSR(t, n[0], "sue")
	if !strings.HasPrefix(c.token, "a_") {
		t.Fatalf("connection token %q does not name node a", c.token)
	}
	c.open(n[1])
	c.ws.WriteText([]byte(`{"protocol":"json","version":2}` + "\x1e"))
	c.expect("{}")
	send := func(via *servertest.Server, i int) {
		t.Helper()
		u := via.SignalREndpoint() + "/api/hubs/chat/connections/" + c.id + "/:send?api-version=2022-06-01"
		if resp, b := restDo(t, via, http.MethodPost, u, fmt.Sprintf(`{"target":"m","arguments":[%d]}`, i)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("send %d through %s: %d %s", i, via.SignalREndpoint(), resp.StatusCode, b)
		}
	}
	inv := func(i int) string { return fmt.Sprintf(`{"type":1,"target":"m","arguments":[%d]}`, i) }
	send(n[2], 1)
	send(n[2], 2)
	c.expect(inv(1))
	c.expect(inv(2))
	c.ws.WriteText([]byte(`{"type":8,"sequenceId":1}` + "\x1e")) // through b to a
	// The socket drops; sends go on; the client comes back on c.
	c.ws.Close()
	send(n[1], 3)
	c.open(n[2])
	// The Ack on the dropped socket and the new socket race (as on one
	// node): the replay starts after 1 if a took the Ack first, at 1 if
	// not, and has everything after that once, in order.
	var seqMsg struct{ Type, SequenceID int }
	if err := json.Unmarshal([]byte(c.record()), &seqMsg); err != nil || seqMsg.Type != 9 || seqMsg.SequenceID < 1 || seqMsg.SequenceID > 2 {
		t.Fatalf("first record after the reconnect: %+v, %v; want Sequence 1 or 2", seqMsg, err)
	}
	for i := seqMsg.SequenceID; i <= 3; i++ {
		c.expect(inv(i))
	}
	c.ws.WriteText([]byte(`{"type":9,"sequenceId":1}` + "\x1e"))
	send(n[0], 4)
	c.expect(inv(4))
	// A refusal comes back as a would give it.
	other := negotiateSR(t, n[0], "tom")
	for _, tc := range []struct {
		name, url string
		want      ws.StatusError
	}{
		{"another user's token", other.url(n[1], c.token), http.StatusUnauthorized},
		{"an unknown token of a", c.url(n[1], "a_nosuchtoken"), http.StatusNotFound},
		{"a token of a node that is not there", c.url(n[1], "zz_nosuchtoken"), http.StatusNotFound},
	} {
		cl, err := wstest.DialErr(t, tc.url)
		var se ws.StatusError
		if !errors.As(err, &se) || se != tc.want {
			if cl != nil {
				cl.Close()
			}
			t.Errorf("%s on b: %v, want %d", tc.name, err, tc.want)
		}
	}
	// The client says goodbye: the connection ends on a.
	c.ws.WriteText([]byte(`{"type":7}` + "\x1e"))
	exists := n[2].SignalREndpoint() + "/api/hubs/chat/connections/" + c.id + "?api-version=2022-06-01"
	eventually.True(t, "the connection to end on a", 10*time.Second, func() bool {
		resp, _ := restDo(t, n[2], http.MethodHead, exists, "")
		return resp.StatusCode == http.StatusNotFound
	})
}

// TestClusterRelayingNodeStops: a reliable client of node a relayed through
// node b while REST sends go through a; b stops (SIGTERM's graceful
// shutdown): the client's socket closes with 1001, the client recovers
// through c, and gets every message once, in order; the session on a was
// kept for the recovery (b told a the client dropped, not left).
func TestClusterRelayingNodeStops(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	c := dialReliable(t, n[0], "feed")
	const total = 400
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // before the nodes stop
	sent := make(chan struct{})
	wg.Go(func() {
		defer close(sent)
		for i := range total {
			if resp, b := wpsREST(t, n[0], http.MethodPost, "/groups/feed/:send", fmt.Sprintf(`"%d"`, i)); resp.StatusCode != http.StatusAccepted {
				t.Errorf("send %d: %d %s", i, resp.StatusCode, b)
				return
			}
		}
	})
	c.receive(func() bool { return len(c.got) >= total/4 })
	c.recoverOn(n[1])
	c.receive(func() bool { return len(c.got) >= total/2 })
	go n[1].Stop()
	if ce := c.receiveUntilClosed(); ce.Code != 1001 || ce.Reason != "server shutting down" {
		t.Fatalf("b stopping closed the relayed client with %d %q, want 1001", ce.Code, ce.Reason)
	}
	c.ws = wstest.Dial(t, c.recoverURL(n[2]), reliableProto)
	c.receive(func() bool { return len(c.got) >= total })
	<-sent
	for i, v := range c.got {
		if v != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, v)
		}
	}
}

// sseStream reads the records of a SignalR SSE stream.
type sseStream struct {
	t    *testing.T
	body *bufio.Reader
	buf  []byte
	stop func()
}

// openSSE opens the connection's event stream on srv.
func (c *srClient) openSSE(srv *servertest.Server) *sseStream {
	c.t.Helper()
	u := srv.SignalREndpoint() + "/client/?hub=chat&id=" + url.QueryEscape(c.token) + "&access_token=" + c.tok
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.t.Fatalf("SSE GET on %s: %d %s", srv.SignalREndpoint(), resp.StatusCode, b)
	}
	s := &sseStream{t: c.t, body: bufio.NewReader(resp.Body), stop: func() { resp.Body.Close() }}
	c.t.Cleanup(s.stop)
	return s
}

// record returns the next record that is not a Ping.
func (s *sseStream) record() string {
	s.t.Helper()
	for {
		if i := strings.IndexByte(string(s.buf), 0x1e); i >= 0 {
			r := string(s.buf[:i])
			s.buf = s.buf[i+1:]
			if r == `{"type":6}` {
				continue
			}
			return r
		}
		line, err := s.body.ReadString('\n')
		if err != nil {
			s.t.Fatalf("the event stream ended: %v", err)
		}
		if d, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
			s.buf = append(s.buf, d...)
		}
	}
}

// post sends records to the connection through srv.
func (c *srClient) post(srv *servertest.Server, records string) {
	c.t.Helper()
	u := srv.SignalREndpoint() + "/client/?hub=chat&id=" + url.QueryEscape(c.token)
	resp, b := restDo(c.t, srv, http.MethodPost, u, records, "Authorization", "Bearer "+c.tok)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("POST on %s: %d %s", srv.SignalREndpoint(), resp.StatusCode, b)
	}
}

// TestClusterSignalRSSEOnAnotherNode: a connection negotiated on node a
// opens its Server-Sent Events stream on node b and posts its messages
// through c and b: the handshake, REST sends to it through c, and its
// Close reach its session on a through the relays. Without them b answers
// 404 to the stream.
func TestClusterSignalRSSEOnAnotherNode(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	c := negotiateSR(t, n[0], "sue")
	st := c.openSSE(n[1])
	c.post(n[2], `{"protocol":"json","version":1}`+"\x1e")
	if got := st.record(); got != "{}" {
		t.Fatalf("handshake answer %s", got)
	}
	u := n[2].SignalREndpoint() + "/api/hubs/chat/connections/" + c.id + "/:send?api-version=2022-06-01"
	for i := range 20 {
		if resp, b := restDo(t, n[2], http.MethodPost, u, fmt.Sprintf(`{"target":"m","arguments":[%d]}`, i)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("send %d: %d %s", i, resp.StatusCode, b)
		}
	}
	for i := range 20 {
		if got, want := st.record(), fmt.Sprintf(`{"type":1,"target":"m","arguments":[%d]}`, i); got != want {
			t.Fatalf("got %s, want %s", got, want)
		}
	}
	// Refusals come back as a gives them: a second stream is a conflict.
	req, _ := http.NewRequest(http.MethodGet, n[2].SignalREndpoint()+"/client/?hub=chat&id="+url.QueryEscape(c.token)+"&access_token="+c.tok, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Errorf("a second stream through c: %d, want 409", resp.StatusCode)
	}
	c.post(n[1], `{"type":7}`+"\x1e")
	exists := n[2].SignalREndpoint() + "/api/hubs/chat/connections/" + c.id + "?api-version=2022-06-01"
	eventually.True(t, "the connection to end on a", 10*time.Second, func() bool {
		resp, _ := restDo(t, n[2], http.MethodHead, exists, "")
		return resp.StatusCode == http.StatusNotFound
	})
	for { // the stream ends
		if _, err := st.body.ReadString('\n'); err != nil {
			break
		}
	}
}

// poll makes one long poll of the connection through srv and returns its
// status and body.
func (c *srClient) poll(srv *servertest.Server) (int, string) {
	c.t.Helper()
	u := srv.SignalREndpoint() + "/client/?hub=chat&id=" + url.QueryEscape(c.token)
	resp, b := restDo(c.t, srv, http.MethodGet, u, "", "Authorization", "Bearer "+c.tok)
	return resp.StatusCode, string(b)
}

// TestClusterSignalRLongPollingAcrossNodes: a long-polling connection
// negotiated on node a polls, posts and stops through every node: its
// polls on b and c are relayed to a (the answer as a would give it, REST
// sends to it included), its POSTs run on a, its DELETE through b ends it
// on a (a later poll is a 404, as on one node). Without the relays b
// answers the first poll 404.
func TestClusterSignalRLongPollingAcrossNodes(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	c := negotiateSR(t, n[0], "lou")
	if status, body := c.poll(n[1]); status != http.StatusOK || body != "" {
		t.Fatalf("first poll through b: %d %q, want 200 at once", status, body)
	}
	c.post(n[2], `{"protocol":"json","version":1}`+"\x1e")
	if status, body := c.poll(n[1]); status != http.StatusOK || body != "{}\x1e" {
		t.Fatalf("poll through b: %d %q, want the handshake answer", status, body)
	}
	u := n[2].SignalREndpoint() + "/api/hubs/chat/connections/" + c.id + "/:send?api-version=2022-06-01"
	var want strings.Builder
	for i := range 10 {
		if resp, b := restDo(t, n[2], http.MethodPost, u, fmt.Sprintf(`{"target":"m","arguments":[%d]}`, i)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("send %d: %d %s", i, resp.StatusCode, b)
		}
		fmt.Fprintf(&want, `{"type":1,"target":"m","arguments":[%d]}`+"\x1e", i)
	}
	var got strings.Builder
	for i := 0; got.Len() < want.Len() && i < 10; i++ {
		status, body := c.poll(n[i%3]) // through c, a and b
		if status != http.StatusOK {
			t.Fatalf("poll %d: %d %q", i, status, body)
		}
		got.WriteString(body)
	}
	if got.String() != want.String() {
		t.Fatalf("polls got %q, want %q", got.String(), want.String())
	}
	resp, b := restDo(t, n[1], http.MethodDelete, n[1].SignalREndpoint()+"/client/?hub=chat&id="+url.QueryEscape(c.token), "", "Authorization", "Bearer "+c.tok)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE through b: %d %s", resp.StatusCode, b)
	}
	if status, _ := c.poll(n[2]); status != http.StatusNotFound {
		t.Fatalf("a poll through c after the DELETE: %d, want 404 (as a answers it)", status)
	}
	exists := n[2].SignalREndpoint() + "/api/hubs/chat/connections/" + c.id + "?api-version=2022-06-01"
	eventually.True(t, "the connection to end on a", 10*time.Second, func() bool {
		resp, _ := restDo(t, n[2], http.MethodHead, exists, "")
		return resp.StatusCode == http.StatusNotFound
	})
}

// metricLine reports whether srv's /metrics has line.
func metricLine(t *testing.T, srv *servertest.Server, line string) bool {
	t.Helper()
	resp, err := http.Get(strings.TrimRight(srv.Endpoint(), "/") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), "\n"+line+"\n")
}

// TestClusterSignalRRelayedPollHeldAndAborted: a relayed long poll waits on
// the connection's node for data (a later REST send answers it), and one
// whose client goes away is aborted there, so the next send goes to the
// next poll instead of to a poll nobody reads.
func TestClusterSignalRRelayedPollHeldAndAborted(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	c := negotiateSR(t, n[0], "lou")
	c.poll(n[1])
	c.post(n[2], `{"protocol":"json","version":1}`+"\x1e")
	if _, body := c.poll(n[1]); body != "{}\x1e" {
		t.Fatalf("handshake answer %q", body)
	}
	send := func(i int) {
		u := n[2].SignalREndpoint() + "/api/hubs/chat/connections/" + c.id + "/:send?api-version=2022-06-01"
		if resp, b := restDo(t, n[2], http.MethodPost, u, fmt.Sprintf(`{"target":"m","arguments":[%d]}`, i)); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("send %d: %d %s", i, resp.StatusCode, b)
		}
	}
	inv := func(i int) string { return fmt.Sprintf(`{"type":1,"target":"m","arguments":[%d]}`, i) + "\x1e" }
	held := make(chan string, 1)
	go func() {
		_, body := c.poll(n[1])
		held <- body
	}()
	ownerRelay := `switchboard_cluster_relays{side="owner"} 1`
	eventually.True(t, "the poll to be held on a", 10*time.Second, func() bool { return metricLine(t, n[0], ownerRelay) })
	send(1)
	if body := <-held; body != inv(1) {
		t.Fatalf("the held poll got %q", body)
	}
	// A poll whose client goes away.
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n[1].SignalREndpoint()+"/client/?hub=chat&id="+url.QueryEscape(c.token), nil)
	req.Header.Set("Authorization", "Bearer "+c.tok)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	eventually.True(t, "the poll to be held on a", 10*time.Second, func() bool { return metricLine(t, n[0], ownerRelay) })
	cancel()
	<-done
	eventually.True(t, "the poll to be aborted on a", 10*time.Second, func() bool {
		return metricLine(t, n[0], `switchboard_cluster_relays{side="owner"} 0`)
	})
	send(2)
	if _, body := c.poll(n[2]); body != inv(2) {
		t.Fatalf("the poll after the aborted one got %q, want the send", body)
	}
}

// TestClusterSignalRRelayLimit: past cluster.max_relays a SignalR WebSocket
// for another node's connection is refused before the upgrade with 503 and
// the reason (not an upgrade nor a 5xx without one), and the relay that
// holds the place keeps working.
func TestClusterSignalRRelayLimit(t *testing.T) {
	ns := natstest.Start(t, 0)
	var n []*servertest.Server
	for _, id := range []string{"a", "b"} {
		n = append(n, servertest.Start(t, servertest.Options{Settings: []string{
			"cluster.nats_url=" + ns.URL(), "server.node_id=" + id, "auth.access_keys=" + clusterKey, "cluster.max_relays=1"}}))
	}
	first, second := negotiateSR(t, n[0], "sue"), negotiateSR(t, n[0], "sue")
	first.open(n[1])
	first.ws.WriteText([]byte(`{"protocol":"json","version":1}` + "\x1e"))
	first.expect("{}")
	_, err := wstest.DialErr(t, second.url(n[1], second.token))
	var se ws.StatusError
	if !errors.As(err, &se) || se != http.StatusServiceUnavailable {
		t.Fatalf("a second relay past cluster.max_relays=1: %v, want 503", err)
	}
	u := n[0].SignalREndpoint() + "/api/hubs/chat/connections/" + first.id + "/:send?api-version=2022-06-01"
	if resp, b := restDo(t, n[0], http.MethodPost, u, `{"target":"m","arguments":[1]}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %d %s", resp.StatusCode, b)
	}
	first.expect(`{"type":1,"target":"m","arguments":[1]}`)
}
