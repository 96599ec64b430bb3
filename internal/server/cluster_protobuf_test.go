package server_test

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/dialect/webpubsub/clientpb"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

const protobufReliable = "protobuf.reliable.webpubsub.azure.v1"

// pbClient is a protobuf.reliable.webpubsub.azure.v1 client that keeps the
// data it received by sequence id across its sockets.
type pbClient struct {
	t         *testing.T
	ws        *wstest.Client
	id, token string
	lastSeq   uint64
	got       []*clientpb.DownstreamMessage_DataMessage
}

func pbURL(t *testing.T, srv *servertest.Server, user string, groups ...string) string {
	t.Helper()
	ep := strings.TrimRight(srv.Endpoint(), "/")
	tok, err := srv.Keys().MintClientToken(auth.ClientAudience(ep, "chat"), auth.MintOptions{UserID: user, Groups: groups,
		Roles: []string{"webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"}})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(ep, "http", "ws", 1) + "/client/hubs/chat?access_token=" + tok
}

func dialPB(t *testing.T, srv *servertest.Server, user string, groups ...string) *pbClient {
	t.Helper()
	c := &pbClient{t: t, ws: wstest.Dial(t, pbURL(t, srv, user, groups...), protobufReliable)}
	cm := c.read().GetSystemMessage().GetConnectedMessage()
	if cm == nil || cm.ReconnectionToken == "" || cm.UserId != user {
		t.Fatalf("first frame %v", cm)
	}
	c.id, c.token = cm.ConnectionId, cm.ReconnectionToken
	return c
}

func (c *pbClient) read() *clientpb.DownstreamMessage {
	c.t.Helper()
	var m clientpb.DownstreamMessage
	if p := c.ws.Read(); proto.Unmarshal(p, &m) != nil {
		c.t.Fatalf("frame %x is not a DownstreamMessage", p)
	}
	return &m
}

func (c *pbClient) send(m *clientpb.UpstreamMessage) {
	c.t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.ws.WriteBinary(b)
}

// receive reads until until() holds: data messages are kept once, in
// sequence order (replayed ones it has are skipped, a gap fails), and
// acknowledged every 20; acks must be successes.
func (c *pbClient) receive(until func() bool) {
	c.t.Helper()
	for !until() {
		m := c.read()
		if a := m.GetAckMessage(); a != nil && !a.Success {
			c.t.Fatalf("ack %v", a)
		}
		d := m.GetDataMessage()
		if d == nil || d.SequenceId <= c.lastSeq {
			continue
		}
		if d.SequenceId != c.lastSeq+1 {
			c.t.Fatalf("sequence gap: %d after %d", d.SequenceId, c.lastSeq)
		}
		c.lastSeq = d.SequenceId
		c.got = append(c.got, d)
		if c.lastSeq%20 == 0 {
			c.send(&clientpb.UpstreamMessage{Message: &clientpb.UpstreamMessage_SequenceAckMessage_{
				SequenceAckMessage: &clientpb.UpstreamMessage_SequenceAckMessage{SequenceId: c.lastSeq}}})
		}
	}
}

// TestClusterProtobufClients: on a three-node cluster a reliable protobuf
// client of b and a JSON client of a exchange group messages with the
// documented conversions (text, json_data, an Any as dataType protobuf),
// REST sends through c reach the protobuf client by content type, and the
// protobuf client, dropped and reconnected to c (relayed to its session on
// b), gets every message once, in order.
func TestClusterProtobufClients(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	js := dialWPS(t, n[0], "js", "g")
	pb := dialPB(t, n[1], "pb", "g")
	if !strings.HasPrefix(pb.id, "b_") {
		t.Fatalf("conn id %q is not b's", pb.id)
	}

	// protobuf → JSON, across nodes.
	anyMsg, _ := anypb.New(wrapperspb.String("hello"))
	anyBytes, _ := proto.MarshalOptions{Deterministic: true}.Marshal(anyMsg)
	noEcho := true
	for i, d := range []*clientpb.MessageData{
		{Data: &clientpb.MessageData_TextData{TextData: "from pb"}},
		{Data: &clientpb.MessageData_ProtobufData{ProtobufData: anyMsg}},
	} {
		id := uint64(i + 1)
		pb.send(&clientpb.UpstreamMessage{Message: &clientpb.UpstreamMessage_SendToGroupMessage_{
			SendToGroupMessage: &clientpb.UpstreamMessage_SendToGroupMessage{Group: "g", AckId: &id, NoEcho: &noEcho, Data: d}}})
		if a := pb.read().GetAckMessage(); a.GetAckId() != id || !a.GetSuccess() {
			t.Fatalf("ack %v", a)
		}
	}
	if m := js.next(); m["dataType"] != "text" || m["data"] != "from pb" || m["fromUserId"] != "pb" {
		t.Fatalf("json client got %v", m)
	}
	if m := js.next(); m["dataType"] != "protobuf" || m["data"] != base64.StdEncoding.EncodeToString(anyBytes) {
		t.Fatalf("json client got %v", m)
	}

	// JSON → protobuf, and REST through c by content type.
	js.ws.WriteText([]byte(`{"type":"sendToGroup","group":"g","noEcho":true,"dataType":"json","data":{"n":1}}`))
	// Sends accepted by two nodes have no order between them: the REST
	// sends through c start once a's has arrived.
	pb.receive(func() bool { return len(pb.got) >= 1 })
	mustREST(t, n[2], http.MethodPost, "/groups/g/:send", `{"rest":true}`, http.StatusAccepted)
	resp, b := restDo(t, n[2], http.MethodPost, strings.TrimRight(n[2].Endpoint(), "/")+"/api/hubs/chat/groups/g/:send?api-version=2024-12-01", "plain", "Content-Type", "text/plain")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("text send: %d %s", resp.StatusCode, b)
	}
	resp, b = restDo(t, n[2], http.MethodPost, strings.TrimRight(n[2].Endpoint(), "/")+"/api/hubs/chat/groups/g/:send?api-version=2024-12-01", "\x00\x01", "Content-Type", "application/octet-stream")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("binary send: %d %s", resp.StatusCode, b)
	}
	pb.receive(func() bool { return len(pb.got) >= 4 })
	want := []*clientpb.MessageData{
		{Data: &clientpb.MessageData_JsonData{JsonData: `{"n":1}`}},
		{Data: &clientpb.MessageData_JsonData{JsonData: `{"rest":true}`}},
		{Data: &clientpb.MessageData_TextData{TextData: "plain"}},
		{Data: &clientpb.MessageData_BinaryData{BinaryData: []byte{0, 1}}},
	}
	for i, w := range want {
		if d := pb.got[i]; d.From != "group" || d.GetGroup() != "g" || !proto.Equal(d.Data, w) {
			t.Fatalf("message %d: %v, want %v", i, d, w)
		}
	}

	// Recovery through another node while REST sends stream in through a.
	const total = 300
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		for i := range total {
			if resp, b := wpsREST(t, n[0], http.MethodPost, "/groups/g/:send", fmt.Sprintf(`"%d"`, i)); resp.StatusCode != http.StatusAccepted {
				t.Errorf("send %d: %d %s", i, resp.StatusCode, b)
				return
			}
		}
	})
	base := len(pb.got)
	pb.receive(func() bool { return len(pb.got) >= base+total/3 })
	pb.ws.Close() // drop without a close frame
	u := pbURL(t, n[2], "pb") + "&awps_connection_id=" + url.QueryEscape(pb.id) + "&awps_reconnection_token=" + url.QueryEscape(pb.token)
	pb.ws = wstest.Dial(t, u, protobufReliable)
	pb.receive(func() bool { return len(pb.got) >= base+total })
	wg.Wait()
	for i := range total {
		if got := pb.got[base+i].GetData().GetJsonData(); got != fmt.Sprintf(`"%d"`, i) {
			t.Fatalf("message %d is %q", i, got)
		}
	}
}

// TestProtobufJoinHistoryGroup: a protobuf client's join of a group that
// keeps history is answered with a plain protobuf ack (the JSON protocols'
// ack adds the stream's offset and epoch, which the .proto has no fields
// for), and its sends to the group are kept and delivered.
func TestProtobufJoinHistoryGroup(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{ConfigFile: historyConfig(t)})
	pb := dialPB(t, srv, "pb")
	id := uint64(1)
	pb.send(&clientpb.UpstreamMessage{Message: &clientpb.UpstreamMessage_JoinGroupMessage_{
		JoinGroupMessage: &clientpb.UpstreamMessage_JoinGroupMessage{Group: "room:1", AckId: &id}}})
	// DownstreamMessage{ack_message: {ack_id: 1, success: true}}
	if p := pb.ws.Read(); string(p) != "\x0a\x04\x08\x01\x10\x01" {
		t.Fatalf("join ack % x", p)
	}
	mustREST(t, srv, http.MethodPost, "/groups/room:1/:send", `{"kept":1}`, http.StatusAccepted)
	pb.receive(func() bool { return len(pb.got) == 1 })
	if got := pb.got[0].GetData().GetJsonData(); got != `{"kept":1}` {
		t.Fatalf("got %q", got)
	}
	resp, b := restDo(t, srv, http.MethodGet, strings.TrimRight(srv.Endpoint(), "/")+"/api/hubs/chat/groups/room:1/messages?api-version=2024-12-01", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "kept") {
		t.Fatalf("history: %d %s", resp.StatusCode, b)
	}
}
