package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/gobwas/ws/wsutil"

	"github.com/switchboardhq/switchboard/internal/auth"
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
		var f reliableFrame
		p := c.ws.Read()
		if err := json.Unmarshal(p, &f); err != nil {
			c.t.Fatalf("bad frame %s", p)
		}
		switch f.Type {
		case "ack":
			c.acks[f.AckID] = f.Success
		case "message":
			if f.SequenceID <= c.lastSeq {
				continue // replayed: the client has it
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
