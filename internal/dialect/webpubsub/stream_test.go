package webpubsub

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
	"github.com/switchboardhq/switchboard/internal/ratelimit"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// streamPair dials a sender allowed to send to group g and a JSON member of
// g (and a raw one), all connected.
func streamPair(t *testing.T, s *testServer, senderProto string) (tx, rx, raw *client) {
	t.Helper()
	tx = mustDial(t, s.wsURL("st", s.token(t, "st", auth.MintOptions{UserID: "tx", Roles: []string{"webpubsub.sendToGroup.g"}})), senderProto)
	tx.read()
	rx = mustDial(t, s.wsURL("st", s.token(t, "st", auth.MintOptions{UserID: "rx", Groups: []string{"g"}})), ProtocolJSON)
	rx.read()
	raw = mustDial(t, s.wsURL("st", s.token(t, "st", auth.MintOptions{Groups: []string{"g"}})), "")
	hub, _ := s.node.Hub("st")
	eventually.True(t, "3 conns", wstest.Timeout, func() bool { return hub.ConnCount() == 3 })
	return tx, rx, raw
}

func expectFrame(t *testing.T, c *client, want string) {
	t.Helper()
	if got := c.read(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestGroupStreamFrames: a stream opens with streamAck 1; each fragment in
// order reaches the group's members as a group message with its stream
// place and is acknowledged with the next expected id; a fragment sent
// again is acknowledged and not published twice, one out of order gets a
// streamNack, a keepalive nothing; the end reaches members as an empty
// message with endOfStream (raw members get the fragments' data only), and
// the sender a streamClosed.
func TestGroupStreamFrames(t *testing.T) {
	s := startServer(t, serverOptions{})
	tx, rx, raw := streamPair(t, s, ProtocolJSON)
	tx.send(`{"type":"sendToGroup","group":"g","stream":{"streamId":"s1","idleTimeoutMs":60000}}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"s1","expectedSequenceId":1}`)
	tx.send(`{"type":"streamData","streamId":"s1","streamSequenceId":1,"dataType":"text","data":"a"}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"s1","expectedSequenceId":2}`)
	expectFrame(t, rx, `{"type":"message","from":"group","group":"g","fromUserId":"tx","stream":{"streamId":"s1","streamSequenceId":1},"dataType":"text","data":"a"}`)
	tx.send(`{"type":"streamData","streamId":"s1","streamSequenceId":1,"dataType":"text","data":"a"}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"s1","expectedSequenceId":2}`)
	tx.send(`{"type":"streamData","streamId":"s1","streamSequenceId":3,"dataType":"text","data":"c"}`)
	expectFrame(t, tx, `{"type":"streamNack","streamId":"s1","name":"InvalidSequenceId","message":"fragment 3 is out of order: 2 is expected","expectedSequenceId":2}`)
	tx.send(`{"type":"streamData","streamId":"s1"}`) // keepalive
	tx.send(`{"type":"streamData","streamId":"s1","streamSequenceId":2,"dataType":"json","data":{"b":2}}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"s1","expectedSequenceId":3}`)
	expectFrame(t, rx, `{"type":"message","from":"group","group":"g","fromUserId":"tx","stream":{"streamId":"s1","streamSequenceId":2},"dataType":"json","data":{"b":2}}`)
	tx.send(`{"type":"streamEnd","streamId":"s1"}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"s1"}`)
	expectFrame(t, rx, `{"type":"message","from":"group","group":"g","fromUserId":"tx","stream":{"streamId":"s1","streamSequenceId":3,"endOfStream":true},"dataType":"text","data":""}`)
	expectFrame(t, raw, "a")
	expectFrame(t, raw, `{"b":2}`)
	tx.send(`{"type":"streamData","streamId":"s1","streamSequenceId":3,"dataType":"text","data":"late"}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"s1","error":{"name":"StreamNotFound","message":"stream \"s1\" is not open on this connection"}}`)
	// Nothing more reached the members: a later plain send is next.
	tx.send(`{"type":"sendToGroup","group":"g","dataType":"text","data":"after"}`)
	expectFrame(t, raw, "after")
	if got := metrictest.Value(t, s.reg, "switchboard_group_stream_fragments_total"); got != 2 {
		t.Fatalf("fragments_total = %v, want 2", got)
	}
	if got := metrictest.Value(t, s.reg, "switchboard_group_streams_closed_total", "reason", "ended"); got != 1 {
		t.Fatalf("closed_total{ended} = %v, want 1", got)
	}
}

// TestGroupStreamAbortAndRefusals: an abort reaches members as the end with
// the sender's error; a stream to a group the sender may not send to, with
// an idle timeout out of bounds, beyond streams.max_per_conn, or a fragment
// over streams.max_fragment_bytes is closed with a streamClosed naming why.
func TestGroupStreamAbortAndRefusals(t *testing.T) {
	s := startServer(t, serverOptions{streams: StreamConfig{MaxPerConn: 1, MaxFragmentBytes: 4}})
	tx, rx, _ := streamPair(t, s, ProtocolJSON)
	tx.send(`{"type":"sendToGroup","group":"g","stream":{"streamId":"a"}}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"a","expectedSequenceId":1}`)
	tx.send(`{"type":"sendToGroup","group":"g","stream":{"streamId":"b"}}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"b","error":{"name":"TooManyRequests","message":"the connection already has 1 group streams open (streams.max_per_conn)"}}`)
	tx.send(`{"type":"streamEnd","streamId":"a","error":{"message":"gave up","userErrorCode":"E42"}}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"a"}`)
	expectFrame(t, rx, `{"type":"message","from":"group","group":"g","fromUserId":"tx","stream":{"streamId":"a","streamSequenceId":1,"endOfStream":true,"error":{"name":"StreamAborted","message":"gave up","userErrorCode":"E42"}},"dataType":"text","data":""}`)

	tx.send(`{"type":"sendToGroup","group":"other","stream":{"streamId":"f"}}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"f","error":{"name":"Forbidden","message":"the connection has no permission to send to group \"other\""}}`)
	tx.send(`{"type":"sendToGroup","group":"g","stream":{"streamId":"i","idleTimeoutMs":10}}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"i","error":{"name":"BadRequest","message":"idleTimeoutMs must be between 1000 and 600000"}}`)

	tx.send(`{"type":"sendToGroup","group":"g","stream":{"streamId":"big"}}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"big","expectedSequenceId":1}`)
	tx.send(`{"type":"streamData","streamId":"big","streamSequenceId":1,"dataType":"text","data":"12345"}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"big","error":{"name":"BadRequest","message":"a fragment of 5 bytes exceeds streams.max_fragment_bytes (4)"}}`)
	f := rx.readJSON()
	if st, _ := f["stream"].(map[string]any); st["endOfStream"] != true || st["error"].(map[string]any)["name"] != "BadRequest" {
		t.Fatalf("members got %v, want the end with the BadRequest error", f)
	}
}

// TestGroupStreamEndsWithSender: when the sender's connection ends (or its
// stream stays idle), members get the stream's end with an error, and an
// idle stream's sender gets a streamClosed IdleTimeout.
func TestGroupStreamEndsWithSender(t *testing.T) {
	s := startServer(t, serverOptions{streams: StreamConfig{IdleTimeout: 30 * time.Millisecond}})
	tx, rx, _ := streamPair(t, s, ProtocolJSON)
	tx.send(`{"type":"sendToGroup","group":"g","stream":{"streamId":"idle"}}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"idle","expectedSequenceId":1}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"idle","error":{"name":"IdleTimeout","message":"no fragment or keepalive within 30ms"}}`)
	expectFrame(t, rx, `{"type":"message","from":"group","group":"g","fromUserId":"tx","stream":{"streamId":"idle","streamSequenceId":1,"endOfStream":true,"error":{"name":"IdleTimeout","message":"no fragment or keepalive within 30ms"}},"dataType":"text","data":""}`)

	tx.send(`{"type":"sendToGroup","group":"g","stream":{"streamId":"gone","idleTimeoutMs":60000}}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"gone","expectedSequenceId":1}`)
	tx.send(`{"type":"streamData","streamId":"gone","streamSequenceId":1,"dataType":"text","data":"x"}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"gone","expectedSequenceId":2}`)
	rx.read() // the fragment
	tx.conn.Close()
	f := rx.read()
	if !strings.Contains(f, `"stream":{"streamId":"gone","streamSequenceId":2,"endOfStream":true,"error":{"name":"SenderDisconnected"`) {
		t.Fatalf("members got %s, want the end with SenderDisconnected", f)
	}
	if got := metrictest.Value(t, s.reg, "switchboard_group_streams_open"); got != 0 {
		t.Fatalf("group_streams_open = %v, want 0", got)
	}
}

// TestGroupStreamOverMessageRate: a fragment refused for the connection's
// message rate closes its stream with TooManyRequests (dropping it would
// stall the stream: the client resends no fragment the server skipped).
func TestGroupStreamOverMessageRate(t *testing.T) {
	lim, _ := newRateLimiter(t, ratelimit.Config{MessageRate: 0.001, MessageBurst: 2})
	s := startServer(t, serverOptions{rate: lim})
	tx, rx, _ := streamPair(t, s, ProtocolJSON)
	tx.send(`{"type":"sendToGroup","group":"g","stream":{"streamId":"r"}}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"r","expectedSequenceId":1}`)
	tx.send(`{"type":"streamData","streamId":"r","streamSequenceId":1,"dataType":"text","data":"a"}`)
	expectFrame(t, tx, `{"type":"streamAck","streamId":"r","expectedSequenceId":2}`)
	rx.read()
	tx.send(`{"type":"streamData","streamId":"r","streamSequenceId":2,"dataType":"text","data":"b"}`)
	expectFrame(t, tx, `{"type":"streamClosed","streamId":"r","error":{"name":"TooManyRequests","message":"`+msgRateRefused+`"}}`)
	f := rx.readJSON()
	if st, _ := f["stream"].(map[string]any); st["endOfStream"] != true || st["error"].(map[string]any)["name"] != "TooManyRequests" {
		t.Fatalf("members got %v, want the end with TooManyRequests", f)
	}
}
