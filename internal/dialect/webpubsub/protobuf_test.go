package webpubsub

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/dialect/webpubsub/clientpb"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
)

// Short names of the generated types.
type (
	upMsg   = clientpb.UpstreamMessage
	downMsg = clientpb.DownstreamMessage
)

// sendPB writes one UpstreamMessage as a binary frame.
func (c *client) sendPB(m *upMsg) {
	c.t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		c.t.Fatal(err)
	}
	c.ws.WriteBinary(b)
}

// readRawPB reads one frame, which must be binary.
func (c *client) readRawPB() []byte {
	c.t.Helper()
	p, op, err := c.next()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	if op != ws.OpBinary {
		c.t.Fatalf("frame %q is not binary (op %v)", p, op)
	}
	return p
}

// readPB reads and decodes one DownstreamMessage.
func (c *client) readPB() *downMsg {
	c.t.Helper()
	p := c.readRawPB()
	var m downMsg
	if err := proto.Unmarshal(p, &m); err != nil {
		c.t.Fatalf("frame %x is not a DownstreamMessage: %v", p, err)
	}
	return &m
}

// readConnected reads the connected system message.
func (c *client) readConnected() *clientpb.DownstreamMessage_SystemMessage_ConnectedMessage {
	c.t.Helper()
	m := c.readPB()
	cm := m.GetSystemMessage().GetConnectedMessage()
	if cm == nil || cm.ConnectionId == "" {
		c.t.Fatalf("first frame = %v, want connected", m)
	}
	return cm
}

func ackID(id uint64) *uint64 { return &id }

func joinPB(group string, id uint64) *upMsg {
	return &upMsg{Message: &clientpb.UpstreamMessage_JoinGroupMessage_{JoinGroupMessage: &clientpb.UpstreamMessage_JoinGroupMessage{Group: group, AckId: ackID(id)}}}
}

func leavePB(group string, id uint64) *upMsg {
	return &upMsg{Message: &clientpb.UpstreamMessage_LeaveGroupMessage_{LeaveGroupMessage: &clientpb.UpstreamMessage_LeaveGroupMessage{Group: group, AckId: ackID(id)}}}
}

func sendPBMsg(group string, id uint64, noEcho bool, d *clientpb.MessageData) *upMsg {
	s := &clientpb.UpstreamMessage_SendToGroupMessage{Group: group, Data: d}
	if id != 0 {
		s.AckId = ackID(id)
	}
	if noEcho {
		s.NoEcho = &noEcho
	}
	return &upMsg{Message: &clientpb.UpstreamMessage_SendToGroupMessage_{SendToGroupMessage: s}}
}

func eventPB(event string, id uint64, d *clientpb.MessageData) *upMsg {
	return &upMsg{Message: &clientpb.UpstreamMessage_EventMessage_{EventMessage: &clientpb.UpstreamMessage_EventMessage{Event: event, AckId: ackID(id), Data: d}}}
}

func seqAckPB(id uint64) *upMsg {
	return &upMsg{Message: &clientpb.UpstreamMessage_SequenceAckMessage_{SequenceAckMessage: &clientpb.UpstreamMessage_SequenceAckMessage{SequenceId: id}}}
}

func textData(s string) *clientpb.MessageData {
	return &clientpb.MessageData{Data: &clientpb.MessageData_TextData{TextData: s}}
}
func jsonData(s string) *clientpb.MessageData {
	return &clientpb.MessageData{Data: &clientpb.MessageData_JsonData{JsonData: s}}
}
func binaryData(b []byte) *clientpb.MessageData {
	return &clientpb.MessageData{Data: &clientpb.MessageData_BinaryData{BinaryData: b}}
}
func anyData(t *testing.T, m proto.Message) (*clientpb.MessageData, []byte) {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return &clientpb.MessageData{Data: &clientpb.MessageData_ProtobufData{ProtobufData: a}}, b
}

// expectAck reads an ack and checks its id and error name ("" for success).
func (c *client) expectAck(id uint64, errName string) *clientpb.DownstreamMessage_AckMessage {
	c.t.Helper()
	m := c.readPB()
	a := m.GetAckMessage()
	if a == nil || a.AckId != id || a.Success != (errName == "") || a.GetError().GetName() != errName {
		c.t.Fatalf("got %v, want ack %d with error %q", m, id, errName)
	}
	return a
}

// TestProtobufProtocolFlow runs every request of protobuf.webpubsub.azure.v1
// over a real socket, with the acks and data messages byte-exact.
func TestProtobufProtocolFlow(t *testing.T) {
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", auth.MintOptions{UserID: "alice", Roles: []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup"}})
	a := mustDial(t, s.wsURL("chat", tok), ProtocolProtobuf)
	hello := a.readConnected()
	if hello.UserId != "alice" || hello.ReconnectionToken != "" {
		t.Fatalf("connected = %v (no reconnection token without reliable)", hello)
	}
	a.sendPB(joinPB("g1", 1))
	// DownstreamMessage{ack_message: {ack_id: 1, success: true}}
	if got := a.readRawPB(); !bytes.Equal(got, []byte{0x0a, 0x04, 0x08, 0x01, 0x10, 0x01}) {
		t.Fatalf("join ack = % x", got)
	}
	a.sendPB(sendPBMsg("g1", 2, false, textData("hi")))
	// DownstreamMessage{data_message: {from: "group", group: "g1", data: {text_data: "hi"}}}
	want := append([]byte{0x12, 0x11, 0x0a, 0x05}, "group"...)
	want = append(append(want, 0x12, 0x02), "g1"...)
	want = append(append(want, 0x1a, 0x04, 0x0a, 0x02), "hi"...)
	if got := a.readRawPB(); !bytes.Equal(got, want) {
		t.Fatalf("echo = % x\nwant   % x", got, want)
	}
	a.expectAck(2, "")
	a.sendPB(sendPBMsg("g1", 3, true, binaryData([]byte{0, 1, 2})))
	a.expectAck(3, "") // noEcho: the ack only
	a.sendPB(joinPB("g2", 3))
	if e := a.expectAck(3, ackDuplicate).GetError(); !strings.Contains(e.Message, "ackId 3") {
		t.Fatalf("duplicate = %v", e)
	}
	a.sendPB(leavePB("g1", 4))
	a.expectAck(4, "")
	hub, _ := s.node.Hub("chat")
	hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g1"}, &core.Message{Type: core.Text, Data: []byte("gone"), From: core.FromGroup, Group: "g1"})
	a.sendPB(eventPB("chat", 5, jsonData(`{"x":1}`)))
	a.expectAck(5, ackInternal) // no event handler; and nothing of g1 arrived before it
	a.sendPB(joinPB(" ", 6))
	a.expectAck(6, ackBadRequest)
	a.sendPB(seqAckPB(1)) // no answer on a plain connection
	hub.Send(context.Background(), core.Target{Kind: core.ToConn, Name: hello.ConnectionId}, &core.Message{Type: core.Text, Data: []byte("hey"), From: core.FromServer})
	// DownstreamMessage{data_message: {from: "server", data: {text_data: "hey"}}}
	want = append([]byte{0x12, 0x0f, 0x0a, 0x06}, "server"...)
	want = append(append(want, 0x1a, 0x05, 0x0a, 0x03), "hey"...)
	if got := a.readRawPB(); !bytes.Equal(got, want) {
		t.Fatalf("server message = % x\nwant             % x", got, want)
	}

	ro := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{Groups: []string{"g1"}})), ProtocolProtobuf)
	ro.readConnected()
	ro.sendPB(sendPBMsg("g1", 1, false, textData("x")))
	ro.expectAck(1, ackForbidden)
	ro.sendPB(joinPB("g3", 2))
	ro.expectAck(2, ackForbidden)

	// A close by the server: the disconnected system message with the reason, then the close.
	if err := hub.CloseConns(context.Background(), core.Target{Kind: core.ToConn, Name: hello.ConnectionId}, "bye"); err != nil {
		t.Fatal(err)
	}
	if d := a.readPB().GetSystemMessage().GetDisconnectedMessage(); d.GetReason() != "bye" {
		t.Fatalf("disconnected = %v", d)
	}
	if ce := a.expectClose(); ce.reason != "bye" {
		t.Fatalf("closed %v", ce)
	}
}

// TestProtobufReliableSequenceIDs checks the reliable protocol's connected
// message and data messages: the per-conn head (tag, length, sequence_id)
// in front of the shared body decodes as one DataMessage, byte-exact.
func TestProtobufReliableSequenceIDs(t *testing.T) {
	s := startServer(t, serverOptions{})
	tok := s.token(t, "rel", auth.MintOptions{UserID: "u", Groups: []string{"g1"}})
	a := mustDial(t, s.wsURL("rel", tok), ProtocolProtobufReliable)
	b := mustDial(t, s.wsURL("rel", tok), ProtocolProtobufReliable)
	ha, hb := a.readConnected(), b.readConnected()
	if ha.ReconnectionToken == "" || !s.keys.CheckReconnectionToken(ha.ConnectionId, ha.ReconnectionToken) {
		t.Fatalf("connected = %v, want a reconnection token", ha)
	}
	hub, _ := s.node.Hub("rel")
	// b is two messages ahead of a: the shared body goes behind different heads.
	for _, d := range []string{"b1", "b2"} {
		hub.Send(context.Background(), core.Target{Kind: core.ToConn, Name: hb.ConnectionId}, &core.Message{Type: core.Text, Data: []byte(d), From: core.FromServer})
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if m := b.readPB().GetDataMessage(); m.GetSequenceId() != seq {
			t.Fatalf("b's message %d: %v", seq, m)
		}
	}
	hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g1"}, &core.Message{Type: core.Text, Data: []byte("hi"), From: core.FromGroup, Group: "g1"})
	body := append([]byte{0x0a, 0x05}, "group"...)
	body = append(append(body, 0x12, 0x02), "g1"...)
	body = append(append(body, 0x1a, 0x04, 0x0a, 0x02), "hi"...)
	for _, c := range []struct {
		cl  *client
		seq byte
	}{{a, 1}, {b, 3}} {
		want := append([]byte{0x12, 0x13, 0x20, c.seq}, body...)
		got := c.cl.readRawPB()
		if !bytes.Equal(got, want) {
			t.Fatalf("data message = % x\nwant           % x", got, want)
		}
		var m downMsg
		if err := proto.Unmarshal(got, &m); err != nil || m.GetDataMessage().GetSequenceId() != uint64(c.seq) ||
			m.GetDataMessage().GetGroup() != "g1" || m.GetDataMessage().GetData().GetTextData() != "hi" {
			t.Fatalf("decoded %v, %v", &m, err)
		}
	}
	// Acks and system messages carry no sequence id.
	a.sendPB(sendPBMsg("nope", 1, false, textData("x")))
	if ack := a.expectAck(1, ackForbidden); ack == nil {
		t.Fatal("no ack")
	}
}

// TestProtobufReliableRecovery drops the TCP connection of a reliable
// protobuf client while messages stream to it, recovers the session with
// its reconnection token and checks that the client ends with every
// message exactly once, in order.
func TestProtobufReliableRecovery(t *testing.T) {
	const total = 900
	s := startServer(t, serverOptions{})
	tok := s.token(t, "rel", auth.MintOptions{UserID: "u", Groups: []string{"feed"}})
	c := mustDial(t, s.wsURL("rel", tok), ProtocolProtobufReliable)
	hello := c.readConnected()
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
				time.Sleep(time.Millisecond)
			}
		}
	}()
	var got []string
	var lastSeq uint64
	receive := func(cl *client, until func() bool) {
		for !until() {
			m := cl.readPB()
			d := m.GetDataMessage()
			if d == nil {
				continue // connected again after the recovery
			}
			if d.SequenceId <= lastSeq {
				continue // replayed, already had
			}
			if d.SequenceId != lastSeq+1 {
				t.Fatalf("sequence gap: %d after %d", d.SequenceId, lastSeq)
			}
			lastSeq = d.SequenceId
			got = append(got, d.GetData().GetTextData())
			if lastSeq%50 == 0 {
				cl.sendPB(seqAckPB(lastSeq - 10))
			}
		}
	}
	receive(c, func() bool { return len(got) >= total/4 })
	c.conn.Close() // drop TCP with no close frame
	eventually.True(t, "the dropped conn to be detached", 5*time.Second, func() bool { return hub.ConnCount() == 1 })
	u := s.wsURL("rel", tok) + "&awps_connection_id=" + url.QueryEscape(hello.ConnectionId) +
		"&awps_reconnection_token=" + url.QueryEscape(hello.ReconnectionToken)
	c2 := mustDial(t, u, ProtocolProtobufReliable)
	receive(c2, func() bool { return len(got) >= total })
	wg.Wait()
	for i, v := range got {
		if v != fmt.Sprint(i) {
			t.Fatalf("message %d is %q", i, v)
		}
	}
	// A recovery with another subprotocol is refused like any bad recovery.
	c2.conn.Close()
	eventually.True(t, "the dropped conn to be detached", 5*time.Second, func() bool { return hub.ConnCount() == 1 })
	u = s.wsURL("rel", tok) + "&awps_connection_id=" + url.QueryEscape(hello.ConnectionId) +
		"&awps_reconnection_token=" + url.QueryEscape(hello.ReconnectionToken)
	j := mustDial(t, u, ProtocolJSONReliable)
	if ce := j.expectClose(); ce.code != 1008 {
		t.Fatalf("recovery as JSON closed %v, want 1008", ce)
	}
}

// TestProtobufCrossProtocol sends every data type from JSON clients,
// protobuf clients and the server (what REST sends per content type) to a
// JSON, a protobuf and a raw member of the group, and checks what each
// gets: the documented conversions.
func TestProtobufCrossProtocol(t *testing.T) {
	s := startServer(t, serverOptions{})
	sendTok := s.token(t, "x", auth.MintOptions{UserID: "s", Roles: []string{"webpubsub.sendToGroup"}})
	memberTok := s.token(t, "x", auth.MintOptions{Groups: []string{"g"}})
	js := mustDial(t, s.wsURL("x", memberTok), ProtocolJSON)
	js.read()
	pb := mustDial(t, s.wsURL("x", memberTok), ProtocolProtobuf)
	pb.readConnected()
	raw := mustDial(t, s.wsURL("x", memberTok), "")
	jsSender := mustDial(t, s.wsURL("x", sendTok), ProtocolJSON)
	jsSender.read()
	pbSender := mustDial(t, s.wsURL("x", sendTok), ProtocolProtobuf)
	pbSender.readConnected()
	hub, _ := s.node.Hub("x")

	anyMsg, anyBytes := anyData(t, wrapperspb.String("hello"))
	anyB64 := base64.StdEncoding.EncodeToString(anyBytes)
	cases := []struct {
		name string
		send func(id uint64)
		// what each member gets
		jsonType, jsonData string // dataType, and data as raw JSON
		pbData             *clientpb.MessageData
		raw                []byte
		rawBinary          bool
	}{
		{name: "json client text",
			send: func(id uint64) {
				jsSender.send(fmt.Sprintf(`{"type":"sendToGroup","group":"g","ackId":%d,"dataType":"text","data":"hi"}`, id))
			},
			jsonType: "text", jsonData: `"hi"`, pbData: textData("hi"), raw: []byte("hi")},
		{name: "json client json",
			send: func(id uint64) {
				jsSender.send(fmt.Sprintf(`{"type":"sendToGroup","group":"g","ackId":%d,"dataType":"json","data":{"a": [1, 2]}}`, id))
			},
			jsonType: "json", jsonData: `{"a":[1,2]}`, pbData: jsonData(`{"a":[1,2]}`), raw: []byte(`{"a":[1,2]}`)},
		{name: "json client binary",
			send: func(id uint64) {
				jsSender.send(fmt.Sprintf(`{"type":"sendToGroup","group":"g","ackId":%d,"dataType":"binary","data":"AAEC"}`, id))
			},
			jsonType: "binary", jsonData: `"AAEC"`, pbData: binaryData([]byte{0, 1, 2}), raw: []byte{0, 1, 2}, rawBinary: true},
		{name: "json client protobuf",
			send: func(id uint64) {
				jsSender.send(fmt.Sprintf(`{"type":"sendToGroup","group":"g","ackId":%d,"dataType":"protobuf","data":%q}`, id, anyB64))
			},
			jsonType: "protobuf", jsonData: fmt.Sprintf("%q", anyB64), pbData: anyMsg, raw: anyBytes, rawBinary: true},
		{name: "json client protobuf that is no Any",
			send: func(id uint64) {
				jsSender.send(fmt.Sprintf(`{"type":"sendToGroup","group":"g","ackId":%d,"dataType":"protobuf","data":"/w=="}`, id))
			},
			jsonType: "protobuf", jsonData: `"/w=="`, pbData: binaryData([]byte{0xff}), raw: []byte{0xff}, rawBinary: true},
		{name: "protobuf client text",
			send:     func(id uint64) { pbSender.sendPB(sendPBMsg("g", id, false, textData("hi"))) },
			jsonType: "text", jsonData: `"hi"`, pbData: textData("hi"), raw: []byte("hi")},
		{name: "protobuf client json",
			send:     func(id uint64) { pbSender.sendPB(sendPBMsg("g", id, false, jsonData(` {"a": true} `))) },
			jsonType: "json", jsonData: `{"a":true}`, pbData: jsonData(`{"a":true}`), raw: []byte(`{"a":true}`)},
		{name: "protobuf client binary",
			send:     func(id uint64) { pbSender.sendPB(sendPBMsg("g", id, false, binaryData([]byte{9, 8}))) },
			jsonType: "binary", jsonData: `"CQg="`, pbData: binaryData([]byte{9, 8}), raw: []byte{9, 8}, rawBinary: true},
		{name: "protobuf client Any",
			send:     func(id uint64) { pbSender.sendPB(sendPBMsg("g", id, false, anyMsg)) },
			jsonType: "protobuf", jsonData: fmt.Sprintf("%q", anyB64), pbData: anyMsg, raw: anyBytes, rawBinary: true},
		{name: "server text/plain",
			send: func(uint64) {
				hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, &core.Message{Type: core.Text, Data: []byte("t"), From: core.FromGroup, Group: "g"})
			},
			jsonType: "text", jsonData: `"t"`, pbData: textData("t"), raw: []byte("t")},
		{name: "server application/json",
			send: func(uint64) {
				hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, &core.Message{Type: core.JSON, Data: []byte(`"s"`), From: core.FromGroup, Group: "g"})
			},
			jsonType: "json", jsonData: `"s"`, pbData: jsonData(`"s"`), raw: []byte(`"s"`)},
		{name: "server application/octet-stream",
			send: func(uint64) {
				hub.Send(context.Background(), core.Target{Kind: core.ToGroup, Name: "g"}, &core.Message{Type: core.Binary, Data: []byte{7}, From: core.FromGroup, Group: "g"})
			},
			jsonType: "binary", jsonData: `"Bw=="`, pbData: binaryData([]byte{7}), raw: []byte{7}, rawBinary: true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := uint64(i + 1)
			c.send(id)
			var jm struct {
				DataType string          `json:"dataType"`
				Data     json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal([]byte(js.read()), &jm); err != nil || jm.DataType != c.jsonType || string(jm.Data) != c.jsonData {
				t.Errorf("json member got %s %s (%v), want %s %s", jm.DataType, jm.Data, err, c.jsonType, c.jsonData)
			}
			dm := pb.readPB().GetDataMessage()
			if dm.GetFrom() != "group" || dm.GetGroup() != "g" || !proto.Equal(dm.GetData(), c.pbData) {
				t.Errorf("protobuf member got %v, want data %v", dm, c.pbData)
			}
			p, op, err := raw.next()
			if err != nil || !bytes.Equal(p, c.raw) || (op == ws.OpBinary) != c.rawBinary {
				t.Errorf("raw member got % x op %v (%v), want % x binary %v", p, op, err, c.raw, c.rawBinary)
			}
		})
	}
	// Every client send was acknowledged after its message went out.
	for i, c := range cases {
		switch {
		case strings.HasPrefix(c.name, "json client"):
			var ack struct {
				AckID   uint64 `json:"ackId"`
				Success bool   `json:"success"`
			}
			json.Unmarshal([]byte(jsSender.read()), &ack)
			if ack.AckID != uint64(i+1) || !ack.Success {
				t.Errorf("json sender's ack %+v, want %d", ack, i+1)
			}
		case strings.HasPrefix(c.name, "protobuf client"):
			pbSender.expectAck(uint64(i+1), "")
		}
	}
}

// TestProtobufEvent sends a protobuf client's events to the event handler
// with the content type of their data, and the handler's answer back as a
// server data message before the ack.
func TestProtobufEvent(t *testing.T) {
	h := newHeldHandler()
	s := startServer(t, serverOptions{up: h})
	c := mustDial(t, s.wsURL("ev", s.token(t, "ev", auth.MintOptions{})), ProtocolProtobuf)
	c.readConnected()
	anyMsg, anyBytes := anyData(t, wrapperspb.Int64(42))
	cases := []struct {
		data    *clientpb.MessageData
		ct      string
		body    []byte
		replyCT string
		reply   string
		want    *clientpb.MessageData
	}{
		{textData("hi"), "text/plain", []byte("hi"), "text/plain", "back", textData("back")},
		{jsonData(`{"k": 1}`), "application/json", []byte(`{"k":1}`), "application/json", `{"ok":true}`, jsonData(`{"ok":true}`)},
		{binaryData([]byte{1, 2}), "application/octet-stream", []byte{1, 2}, "application/octet-stream", "\x03", binaryData([]byte{3})},
		{anyMsg, "application/x-protobuf", anyBytes, "", "", nil},
	}
	for i, tc := range cases {
		id := uint64(i + 1)
		c.sendPB(eventPB("chat", id, tc.data))
		call := h.next(t)
		if call.event != "chat" || call.contentType != tc.ct || !bytes.Equal(call.data, tc.body) {
			t.Fatalf("handler got %s %s % x, want %s % x", call.event, call.contentType, call.data, tc.ct, tc.body)
		}
		call.reply(tc.replyCT, tc.reply)
		if tc.want != nil {
			dm := c.readPB().GetDataMessage()
			if dm.GetFrom() != "server" || !proto.Equal(dm.GetData(), tc.want) {
				t.Fatalf("answer %v, want %v", dm, tc.want)
			}
		}
		c.expectAck(id, "")
	}
	c.sendPB(eventPB("no such event!", 9, textData("x")))
	c.expectAck(9, ackBadRequest)
}

// TestProtobufBadInput: a frame that is not an UpstreamMessage closes the
// connection with 1007 and a reason, a text frame with 1003; a request whose
// data is bad gets a BadRequest ack; all are counted, and a bystander on the
// same hub keeps working.
func TestProtobufBadInput(t *testing.T) {
	s := startServer(t, serverOptions{maxMsg: 1024})
	tok := s.token(t, "bad", auth.MintOptions{Roles: []string{"webpubsub.sendToGroup"}})
	bystander := mustDial(t, s.wsURL("bad", tok), ProtocolProtobuf)
	bystander.readConnected()
	closes := []struct {
		name   string
		frame  []byte
		binary bool
		code   int
		reason string
		metric string
	}{
		{"truncated", []byte{0x32, 0x05, 0x0a}, true, 1007, "not a protobuf UpstreamMessage", "malformed"},
		{"request field of the wrong wire type", []byte{0x08, 0x01}, true, 1007, "holds no request", "malformed"},
		{"no request", []byte{}, true, 1007, "holds no request", "malformed"},
		{"unknown request", []byte{0x4a, 0x00}, true, 1007, "holds no request", "malformed"},
		{"bad utf-8 group", append([]byte{0x32, 0x04, 0x0a, 0x02}, 0xff, 0xfe), true, 1007, "not a protobuf UpstreamMessage", "malformed"},
		{"text frame", []byte(`{"type":"ping"}`), false, 1003, "text frames are not supported", "text_frame"},
		{"too big", append([]byte{0x32, 0x84, 0x10, 0x0a, 0x80, 0x10}, make([]byte, 2048)...), true, 1009, "", ""},
	}
	for _, c := range closes {
		t.Run(c.name, func(t *testing.T) {
			errs := s.ep.metrics.requestErrors.WithLabelValues("protobuf", c.metric)
			before := testutil.ToFloat64(errs)
			cl := mustDial(t, s.wsURL("bad", tok), ProtocolProtobuf)
			cl.readConnected()
			if c.binary {
				cl.ws.WriteBinary(c.frame)
			} else {
				cl.ws.WriteText(c.frame)
			}
			ce := cl.expectClose()
			if ce.code != c.code || !strings.Contains(ce.reason, c.reason) {
				t.Fatalf("closed %d %q, want %d with %q", ce.code, ce.reason, c.code, c.reason)
			}
			if c.metric != "" {
				if got := testutil.ToFloat64(errs); got != before+1 {
					t.Fatalf("%s errors = %v, want %v", c.metric, got, before+1)
				}
			}
		})
	}
	acks := []struct {
		name string
		msg  *upMsg
	}{
		{"invalid json_data", sendPBMsg("g", 1, false, jsonData(`{"a":`))},
		{"empty json_data", sendPBMsg("g", 2, false, jsonData(` `))},
		{"no data", sendPBMsg("g", 3, false, nil)},
		{"null json_data", sendPBMsg("g", 4, false, jsonData(` null `))},
		{"bad group", sendPBMsg("", 5, false, textData("x"))},
	}
	for _, a := range acks {
		bystander.sendPB(a.msg)
		ack := bystander.expectAck(a.msg.GetSendToGroupMessage().GetAckId(), ackBadRequest)
		t.Logf("%s: %s", a.name, ack.GetError().GetMessage())
	}
	if got := testutil.ToFloat64(s.ep.metrics.requestErrors.WithLabelValues("protobuf", "bad_data")); got != 4 {
		t.Errorf("bad_data errors = %v, want 4", got)
	}
	bystander.sendPB(sendPBMsg("g", 6, false, textData("still here")))
	bystander.expectAck(6, "")
}

// TestProtobufSubprotocolChoice: both protobuf subprotocols are accepted
// (the first Web PubSub protocol offered wins), other protobuf names are
// still refused.
func TestProtobufSubprotocolChoice(t *testing.T) {
	s := startServer(t, serverOptions{})
	tok := s.token(t, "h", auth.MintOptions{})
	for _, p := range []string{ProtocolProtobuf, ProtocolProtobufReliable} {
		c := mustDial(t, s.wsURL("h", tok), p)
		c.readConnected()
	}
	if _, err := dial(t, s.wsURL("h", tok), "protobuf.other.webpubsub.azure.v1"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("protobuf.other.webpubsub.azure.v1: %v, want 400", err)
	}
}

// BenchmarkProtobufDataMessage compares the codec's hand-appended data
// message (protowire) with the generated types' proto.Marshal of the same
// DownstreamMessage, for a 256-byte text group message and a group message
// carrying a 256-byte Any (which the generated path must parse first: the
// core message holds the serialized Any). bench/README has the figures.
func BenchmarkProtobufDataMessage(b *testing.B) {
	a, _ := anypb.New(wrapperspb.Bytes(bytes.Repeat([]byte{'x'}, 256)))
	anyBytes, _ := proto.Marshal(a)
	for _, m := range []*core.Message{
		{Type: core.Text, Data: bytes.Repeat([]byte{'x'}, 256), From: core.FromGroup, Group: "room-42"},
		{Type: core.Protobuf, Data: anyBytes, From: core.FromGroup, Group: "room-42"},
	} {
		b.Run(m.Type.String()+"/protowire", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				protobufCodec{}.EncodeMessage(m)
			}
		})
		b.Run(m.Type.String()+"/generated", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d := &clientpb.MessageData{}
				if m.Type == core.Protobuf {
					var a anypb.Any
					if err := proto.Unmarshal(m.Data, &a); err != nil {
						b.Fatal(err)
					}
					d.Data = &clientpb.MessageData_ProtobufData{ProtobufData: &a}
				} else {
					d.Data = &clientpb.MessageData_TextData{TextData: string(m.Data)}
				}
				group := m.Group
				if _, err := proto.Marshal(&downMsg{Message: &clientpb.DownstreamMessage_DataMessage_{DataMessage: &clientpb.DownstreamMessage_DataMessage{
					From: "group", Group: &group, Data: d}}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestProtobufDataMessagesAreValidUTF8: text, JSON and group names that are
// not UTF-8 (REST text/plain bodies are checked, group names over REST or
// in tokens are not) still give frames the generated decoder accepts, and
// bytes that are not an Any go as binary_data.
func TestProtobufDataMessagesAreValidUTF8(t *testing.T) {
	for _, m := range []*core.Message{
		{Type: core.Text, Data: []byte("a\xffb"), From: core.FromGroup, Group: "g"},
		{Type: core.JSON, Data: []byte("\"\xff\""), From: core.FromServer},
		{Type: core.Text, Data: []byte("ok"), From: core.FromGroup, Group: "g\xfe"},
		{Type: core.Protobuf, Data: []byte{0xff}, From: core.FromServer},
	} {
		for _, c := range []protobufCodec{{}, {reliable: true}} {
			b := c.EncodeMessage(m).Data
			if c.reliable {
				b = append(c.AppendHead(nil, 7, b), b...)
			}
			var d downMsg
			if err := proto.Unmarshal(b, &d); err != nil {
				t.Fatalf("%q reliable=%v: % x does not decode: %v", m.Data, c.reliable, b, err)
			}
			if m.Type != core.Text || utf8.Valid(m.Data) {
				if got := d.GetDataMessage().GetData().GetTextData(); got != "" && got != string(m.Data) {
					t.Fatalf("%q: text %q", m.Data, got)
				}
			}
			if (m.Type == core.Protobuf || !utf8.Valid(m.Data)) && !bytes.Equal(d.GetDataMessage().GetData().GetBinaryData(), m.Data) {
				t.Fatalf("%q: got %v, want binary_data", m.Data, &d)
			}
		}
	}
}

// TestProtobufMessageRate: over limits.conn_message_rate a protobuf
// request with an ack id gets a protobuf TooManyRequests ack; a
// sequence_ack_message, the protocol's own bookkeeping, is not limited.
func TestProtobufMessageRate(t *testing.T) {
	lim, _ := newRateLimiter(t, ratelimit.Config{MessageRate: 0.001, MessageBurst: 2})
	s := startServer(t, serverOptions{rate: lim})
	c := mustDial(t, s.wsURL("chat", s.token(t, "chat", auth.MintOptions{Roles: []string{"webpubsub.joinLeaveGroup"}})), ProtocolProtobufReliable)
	c.readConnected()
	c.sendPB(joinPB("g", 1))
	c.sendPB(joinPB("g", 2))
	c.expectAck(1, "")
	c.expectAck(2, "")
	for range 5 {
		c.sendPB(seqAckPB(0))
	}
	c.sendPB(joinPB("g", 3))
	if e := c.expectAck(3, ackTooManyRequests).GetError(); e.GetMessage() != msgRateRefused {
		t.Fatalf("over the rate: %v", e)
	}
}
