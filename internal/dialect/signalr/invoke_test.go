package signalr_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

func TestInvocationAnswers(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, n := s.connectJSON(t, "chat", "alice", 1, "")
	for i, tc := range []struct {
		name   string
		answer answer
		want   string // %s is the invocation id
	}{
		{"200 with a body is relayed verbatim", answer{status: 200, body: []byte(`{"type":3,"invocationId":"0","result":42}` + rs)}, `{"type":3,"invocationId":"0","result":42}` + rs},
		{"200 with an error completion", answer{status: 200, body: []byte(`{"type":3,"invocationId":"1","error":"boom"}` + rs)}, `{"type":3,"invocationId":"1","error":"boom"}` + rs},
		{"204", answer{status: 204}, `{"type":3,"invocationId":"%s"}` + rs},
		{"empty 200", answer{status: 200}, `{"type":3,"invocationId":"%s"}` + rs},
		{"empty 202", answer{status: 202}, `{"type":3,"invocationId":"%s"}` + rs},
		{"404", answer{status: 404, body: []byte("not found")}, `{"type":3,"invocationId":"%s","error":"Invocation failed, status code 404"}` + rs},
		{"500", answer{status: 500}, `{"type":3,"invocationId":"%s","error":"Invocation failed, status code 500"}` + rs},
		{"401", answer{status: 401}, `{"type":3,"invocationId":"%s","error":"Invocation failed, status code 401"}` + rs},
		{"network error", answer{err: fmt.Errorf("%w: connection refused", upstream.ErrUnavailable)}, `{"type":3,"invocationId":"%s","error":"Invocation failed, status code 500"}` + rs},
		{"response too large", answer{status: 200, err: fmt.Errorf("upstream: %w", upstream.ErrResponseTooLarge)}, `{"type":3,"invocationId":"%s","error":"Invocation failed, response too large."}` + rs},
	} {
		id := fmt.Sprint(i)
		target := fmt.Sprintf("target%d", i)
		s.up.answer(target, tc.answer)
		msg := fmt.Sprintf(`{"type":1,"invocationId":"%s","target":"%s","arguments":["hi",{"a":[1,2]}]}`, id, target)
		c.sendText(msg + rs)
		c.readText(strings.ReplaceAll(tc.want, "%s", id))
		inv := s.up.invocations()
		if len(inv) != i+1 {
			t.Fatalf("%s: %d upstream calls, want %d", tc.name, len(inv), i+1)
		}
		got := inv[i]
		if got.target != target || got.body != msg || got.msgpack || got.conn.ID != n.ConnectionID || got.conn.UserID != "alice" || got.conn.Hub != "chat" {
			t.Errorf("%s: upstream got %+v", tc.name, got)
		}
	}
}

func TestInvocationWithoutIDGetsNoCompletion(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, _ := s.connectJSON(t, "chat", "", 1, "")
	s.up.answer("fire", answer{status: 404})
	s.up.answer("data", answer{status: 200, body: []byte(`{"type":3,"invocationId":"x","result":1}` + rs)})
	s.up.refuse("nobody")
	c.sendText(`{"type":1,"target":"fire","arguments":[1]}` + rs)
	c.sendText(`{"type":1,"target":"data","arguments":[2]}` + rs)
	c.sendText(`{"type":1,"target":"nobody","arguments":[3]}` + rs)
	c.sendText(`{"type":1,"invocationId":"last","target":"ok","arguments":[]}` + rs)
	// The first frame after the handshake is the completion of "last".
	c.readText(`{"type":3,"invocationId":"last"}` + rs)
	inv := s.up.invocations()
	if len(inv) != 3 || inv[0].target != "fire" || inv[0].body != `{"type":1,"target":"fire","arguments":[1]}` || inv[1].target != "data" || inv[2].target != "ok" {
		t.Fatalf("upstream calls %+v; want fire, data and ok, in order (nobody has no upstream)", inv)
	}
}

func TestInvocationWithoutUpstream(t *testing.T) {
	t.Parallel()
	for _, noUpstream := range []bool{true, false} {
		t.Run(fmt.Sprint("nil upstream ", noUpstream), func(t *testing.T) {
			t.Parallel()
			s := startServer(t, serverOptions{noUpstream: noUpstream})
			s.up.refuse("t")
			c, _ := s.connectJSON(t, "chat", "", 1, "")
			c.sendText(`{"type":1,"target":"t","arguments":[]}` + rs)
			c.sendText(`{"type":1,"invocationId":"7","target":"t","arguments":[]}` + rs)
			c.readText(`{"type":3,"invocationId":"7","error":"Invocation failed, no upstream handles 't'."}` + rs)
			if inv := s.up.invocations(); len(inv) != 0 {
				t.Fatalf("upstream called: %+v", inv)
			}
		})
	}
}

func TestStreamInvocationRefused(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, _ := s.connectJSON(t, "chat", "", 1, "")
	c.sendText(`{"type":4,"invocationId":"s1","target":"counter","arguments":[10]}` + rs)
	c.readText(`{"type":3,"invocationId":"s1","error":"Stream invocations are not supported in serverless mode."}` + rs)
	// A cancel of it is ignored; the connection goes on.
	c.sendText(`{"type":5,"invocationId":"s1"}` + rs)
	c.sendText(`{"type":1,"invocationId":"n","target":"t","arguments":[]}` + rs)
	c.readText(`{"type":3,"invocationId":"n"}` + rs)
	if inv := s.up.invocations(); len(inv) != 1 || inv[0].target != "t" {
		t.Fatalf("upstream calls %+v: the stream invocation must not be forwarded", inv)
	}
}

func TestMessagePackInvocation(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	c := mustDialWS(t, s.clientURL("chat", "", tok))
	c.sendText(`{"protocol":"messagepack","version":1}` + rs)
	c.readBinary([]byte("{}" + rs))

	// [1, {}, "xyz", "method", [42], []] (spec §6.4)
	body := []byte{0x96, 0x01, 0x80, 0xa3, 'x', 'y', 'z', 0xa6, 'm', 'e', 't', 'h', 'o', 'd', 0x91, 0x2a, 0x90}
	s.up.answer("method", answer{status: 404})
	c.sendBinary(append([]byte{byte(len(body))}, body...))
	errText := "Invocation failed, status code 404"
	want := append([]byte{0x95, 0x03, 0x80, 0xa3, 'x', 'y', 'z', 0x01, 0xd9, byte(len(errText))}, errText...)
	c.readBinary(append([]byte{byte(len(want))}, want...))
	inv := s.up.invocations()
	if len(inv) != 1 || inv[0].target != "method" || inv[0].body != string(body) || !inv[0].msgpack {
		t.Fatalf("upstream got %+v, want the unframed msgpack array with msgpack set", inv)
	}

	// A 200 body (the upstream's framed msgpack completion) is relayed verbatim.
	completion := []byte{0x06, 0x95, 0x03, 0x80, 0xa1, 'a', 0x03, 0x2a}
	s.up.answer("answer", answer{status: 200, body: completion})
	// [1, {}, "a", "answer", []] without the stream ids element
	inv2 := []byte{0x95, 0x01, 0x80, 0xa1, 'a', 0xa6, 'a', 'n', 's', 'w', 'e', 'r', 0x90}
	c.sendBinary(append([]byte{byte(len(inv2))}, inv2...))
	c.readBinary(completion)
}

func TestConnectionEvents(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "dave")

	for _, tc := range []struct {
		name  string
		end   func(c *wsClient, connID string)
		clean bool
	}{
		{"close frame", func(c *wsClient, _ string) { c.sendClose(1000); c.expectEnd() }, true},
		{"hub Close message", func(c *wsClient, _ string) { c.sendText(`{"type":7}` + rs); c.expectEnd() }, true},
		{"TCP drop", func(c *wsClient, _ string) { c.conn.Close() }, false},
		{"protocol error", func(c *wsClient, _ string) { c.sendText("garbage" + rs); c.expectEnd() }, false},
	} {
		before := len(s.up.disconnects())
		n := s.negotiate(t, "chat", tok, "&foo=bar")
		c := mustDialWS(t, s.clientURL("chat", n.ConnectionToken, tok))
		c.sendText(`{"protocol":"json","version":1}` + rs)
		c.readText("{}" + rs)
		eventually.True(t, tc.name+": connected event", 10*time.Second, func() bool {
			cs := s.up.connects()
			return len(cs) > 0 && cs[len(cs)-1].ID == n.ConnectionID
		})
		cs := s.up.connects()
		if q := cs[len(cs)-1].Query; q != "?foo=bar&hub=chat" {
			t.Errorf("%s: client query %q, want ?foo=bar&hub=chat", tc.name, q)
		}
		tc.end(c, n.ConnectionID)
		eventually.True(t, tc.name+": disconnected event", 10*time.Second, func() bool { return len(s.up.disconnects()) == before+1 })
		d := s.up.disconnects()[before]
		if d.conn.ID != n.ConnectionID || d.conn.UserID != "dave" || d.conn.Hub != "chat" {
			t.Errorf("%s: disconnected %+v", tc.name, d)
		}
		if tc.clean && d.err != "" {
			t.Errorf("%s: disconnected with error %q, want none", tc.name, d.err)
		}
		if !tc.clean && d.err == "" {
			t.Errorf("%s: disconnected without an error", tc.name)
		}
		if _, err := s.hub(t, "chat").Conn(n.ConnectionID); err == nil {
			t.Errorf("%s: conn still in the hub", tc.name)
		}
		// The token is dead.
		resp, _ := do(t, http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), tok, nil, nil)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: poll with the ended id: %d, want 404", tc.name, resp.StatusCode)
		}
	}
	if got := len(s.up.connects()); got != 4 {
		t.Errorf("%d connected events, want 4", got)
	}
	eventually.True(t, "sessions gauge 0", 10*time.Second, func() bool { return metrictest.Present(t, s.reg, "switchboard_signalr_sessions") == 0 })
	if got := len(s.up.disconnects()); got != 4 {
		t.Errorf("%d disconnected events, want 4 (one per connection)", got)
	}
}

// An upstream error never reaches the client as anything but a completion.
func TestInvocationErrorsDoNotLeak(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	c, _ := s.connectJSON(t, "chat", "", 1, "")
	s.up.answer("t", answer{err: errors.New("dial tcp 10.0.0.1:443: secret internal address")})
	c.sendText(`{"type":1,"invocationId":"1","target":"t","arguments":[]}` + rs)
	c.readText(`{"type":3,"invocationId":"1","error":"Invocation failed, status code 500"}` + rs)
}
