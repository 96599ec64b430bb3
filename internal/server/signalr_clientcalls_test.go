package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// hubClient is a SignalR client over a real WebSocket, speaking one hub protocol.
type hubClient struct {
	t     *testing.T
	id    string
	ws    *wstest.Client
	proto hubproto.Protocol
	buf   []byte
}

func dialHub(t *testing.T, srv *servertest.Server, hub string, proto hubproto.Protocol) *hubClient {
	t.Helper()
	sr := srv.SignalREndpoint()
	tok, err := srv.Keys().MintSignalRClientToken(auth.SignalRClientAudience(sr, hub), "u1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, sr+"/client/negotiate?hub="+hub+"&negotiateVersion=1", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var neg struct{ ConnectionID, ConnectionToken string }
	json.NewDecoder(resp.Body).Decode(&neg)
	resp.Body.Close()
	wsURL := strings.Replace(sr, "http", "ws", 1) + "/client/?hub=" + hub + "&id=" + neg.ConnectionToken + "&access_token=" + tok
	c := &hubClient{t: t, id: neg.ConnectionID, ws: wstest.Dial(t, wsURL), proto: proto}
	c.write([]byte(`{"protocol":"` + proto.Name() + `","version":1}` + "\x1e"))
	for !strings.Contains(string(c.buf), "\x1e") {
		c.buf = append(c.buf, c.ws.Read()...)
	}
	i := strings.IndexByte(string(c.buf), 0x1e)
	if hs := string(c.buf[:i]); hs != "{}" {
		t.Fatalf("handshake answer %q", hs)
	}
	c.buf = c.buf[i+1:]
	return c
}

func (c *hubClient) write(p []byte) {
	c.t.Helper()
	if len(p) == 0 {
		return
	}
	if c.proto.Binary() {
		c.ws.WriteBinary(p)
	} else {
		c.ws.WriteText(p)
	}
}

// next returns the next hub message that is not a Ping.
func (c *hubClient) next() hubproto.Message {
	c.t.Helper()
	for {
		msg, rest, err := c.proto.Next(c.buf, 0)
		if err == nil {
			m, err := c.proto.Decode(msg)
			if err != nil {
				c.t.Fatal(err)
			}
			c.buf = append([]byte(nil), rest...)
			m.Raw = append([]byte(nil), m.Raw...)
			if m.Kind == hubproto.Ping {
				continue
			}
			return m
		}
		c.buf = append(c.buf, c.ws.Read()...)
	}
}

// TestSignalRClientResultsAndStreams: over a real WebSocket, in both protocols, :invoke reaches
// the client as an Invocation with an id and answers with the client's Completion (MessagePack
// converted to JSON), and the stream routes reach it as StreamItems and a Completion.
func TestSignalRClientResultsAndStreams(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{})
	for _, proto := range []hubproto.Protocol{hubproto.JSON, hubproto.MessagePack} {
		t.Run(proto.Name(), func(t *testing.T) { clientCallsRoundTrip(t, srv, srv, proto) })
	}
}

// clientCallsRoundTrip calls :invoke and the stream routes through rest's SignalR REST API
// for a client connected to client (the same server, or another node of a cluster).
func clientCallsRoundTrip(t *testing.T, rest, client *servertest.Server, proto hubproto.Protocol) {
	sr := rest.SignalREndpoint()
	c := dialHub(t, client, "chat", proto)
	type answer struct {
		status int
		body   []byte
	}
	done := make(chan answer, 1)
	url := sr + "/api/hubs/chat/connections/" + c.id + "/:invoke?api-version=2024-12-01"
	tok, err := rest.Keys().MintServerToken(url, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"target":"ask","arguments":[2]}`))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- answer{-1, []byte(err.Error())}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- answer{resp.StatusCode, b}
	}()
	inv := c.next()
	if inv.Kind != hubproto.Invocation || inv.InvocationID == "" || inv.Target != "ask" || inv.Arguments != 1 {
		t.Fatalf("invocation %+v", inv)
	}
	if proto.Binary() {
		body := msgp.AppendArrayHeader(nil, 5)
		body = msgp.AppendInt64(body, 3)
		body = msgp.AppendMapHeader(body, 0)
		body = msgp.AppendString(body, inv.InvocationID)
		body = msgp.AppendInt64(body, 3)
		body = msgp.AppendMapHeader(body, 1)
		body = msgp.AppendString(body, "v")
		body = msgp.AppendInt64(body, 4)
		c.write(append([]byte{byte(len(body))}, body...))
	} else {
		c.write([]byte(`{"type":3,"invocationId":"` + inv.InvocationID + `","result":{"v":4}}` + "\x1e"))
	}
	var got answer
	select {
	case got = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("no answer to :invoke")
	}
	if want := `{"result":{"v":4},"protocol":"` + proto.Name() + `"}`; got.status != 200 || string(got.body) != want {
		t.Fatalf(":invoke answered %d %s, want 200 %s", got.status, got.body, want)
	}

	base := sr + "/api/hubs/chat/connections/" + c.id + "/streams/st1/"
	if resp := restCall(t, rest, http.MethodPost, base+":send?api-version=2024-12-01", `{"i":1}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("stream send: %d", resp.StatusCode)
	}
	if resp := restCall(t, rest, http.MethodPost, base+":complete?reason=done", ""); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("stream complete: %d", resp.StatusCode)
	}
	if m := c.next(); m.Kind != hubproto.StreamItem || m.InvocationID != "st1" {
		t.Fatalf("stream item %+v", m)
	}
	if m := c.next(); m.Kind != hubproto.Completion || m.InvocationID != "st1" || m.Error != "done" {
		t.Fatalf("stream completion %+v", m)
	}
}
