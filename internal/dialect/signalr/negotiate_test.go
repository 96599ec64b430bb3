package signalr_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/metricreg/metrictest"
)

var urlSafeToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestNegotiateVersion1Shape(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "alice")
	resp, body := do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat&negotiateVersion=1", tok, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	keys := make([]string, 0, len(got))
	for k := range got {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"availableTransports", "connectionId", "connectionToken", "negotiateVersion"}; !slices.Equal(keys, want) {
		t.Fatalf("keys %v, want %v (body %s)", keys, want, body)
	}
	if got["negotiateVersion"] != 1.0 {
		t.Errorf("negotiateVersion = %v", got["negotiateVersion"])
	}
	id, _ := got["connectionId"].(string)
	token, _ := got["connectionToken"].(string)
	if !urlSafeToken.MatchString(id) || !urlSafeToken.MatchString(token) || id == token {
		t.Errorf("connectionId %q / connectionToken %q: want distinct URL-safe strings", id, token)
	}
	// The token names the session's node, as the id does (a cluster relays
	// a WebSocket that reached another node to it), then 16 random bytes.
	node, secret, _ := strings.Cut(token, "_")
	if idNode, _, _ := strings.Cut(id, "_"); node != idNode || len(secret) != 22 {
		t.Errorf("connectionToken %q: want the node of %q, '_' and 22 characters (16 random bytes, base64url)", token, id)
	}
	want := []any{
		map[string]any{"transport": "WebSockets", "transferFormats": []any{"Text", "Binary"}},
		map[string]any{"transport": "ServerSentEvents", "transferFormats": []any{"Text"}},
		map[string]any{"transport": "LongPolling", "transferFormats": []any{"Text", "Binary"}},
	}
	if !reflect.DeepEqual(got["availableTransports"], want) {
		t.Errorf("availableTransports = %v, want %v", got["availableTransports"], want)
	}

	// Two negotiations never share ids.
	n2 := s.negotiate(t, "chat", tok, "")
	if n2.ConnectionID == id || n2.ConnectionToken == token {
		t.Errorf("second negotiate reused ids: %+v", n2)
	}
}

func TestNegotiateVersions(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	for _, tc := range []struct {
		query       string
		status      int
		version     float64
		wantToken   bool
		description string
	}{
		{"", 200, 0, false, "missing means 0"},
		{"&negotiateVersion=0", 200, 0, false, "0"},
		{"&negotiateVersion=1", 200, 1, true, "1"},
		{"&negotiateVersion=7", 200, 1, true, "above 1 is 1"},
		{"&NEGOTIATEVERSION=1", 200, 1, true, "name is case-insensitive"},
		{"&negotiateVersion=abc", 400, 0, false, "non-integer"},
		{"&negotiateVersion=-1", 400, 0, false, "negative"},
	} {
		resp, body := do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat"+tc.query, tok, nil, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %s, want %d", tc.description, resp.StatusCode, body, tc.status)
			continue
		}
		if tc.status != 200 {
			continue
		}
		var got map[string]any
		json.Unmarshal(body, &got)
		if got["negotiateVersion"] != tc.version {
			t.Errorf("%s: negotiateVersion %v, want %v", tc.description, got["negotiateVersion"], tc.version)
		}
		if _, has := got["connectionToken"]; has != tc.wantToken {
			t.Errorf("%s: connectionToken present = %v, want %v (%s)", tc.description, has, tc.wantToken, body)
		}
	}
}

// A version 0 client uses the connection id as id.
func TestNegotiateVersion0ConnectsWithConnectionID(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "alice")
	resp, body := do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat", tok, nil, nil)
	var n negotiateResult
	if resp.StatusCode != 200 || json.Unmarshal(body, &n) != nil || n.ConnectionID == "" || n.ConnectionToken != "" {
		t.Fatalf("negotiate v0: %d %s", resp.StatusCode, body)
	}
	c := mustDialWS(t, s.clientURL("chat", n.ConnectionID, tok))
	c.sendText(`{"protocol":"json","version":1}` + rs)
	c.readText("{}" + rs)
	eventually.True(t, "connected event", 10*time.Second, func() bool { return len(s.up.connects()) == 1 })
	if got := s.up.connects()[0]; got.ID != n.ConnectionID || got.UserID != "alice" || got.Hub != "chat" {
		t.Fatalf("connected %+v, want id %s user alice", got, n.ConnectionID)
	}
}

func TestNegotiateStatefulReconnect(t *testing.T) {
	t.Parallel()
	on := startServer(t, serverOptions{stateful: true})
	off := startServer(t, serverOptions{})
	for _, tc := range []struct {
		s     *testServer
		query string
		want  bool
		name  string
	}{
		{on, "&useStatefulReconnect=true", true, "asked and enabled"},
		{on, "&UseStatefulReconnect=true", true, "asked, name in another case"},
		{on, "", false, "enabled but not asked"},
		{on, "&useStatefulReconnect=false", false, "asked false"},
		{off, "&useStatefulReconnect=true", false, "asked but disabled"},
	} {
		tok := tc.s.token(t, "chat", "")
		resp, body := do(t, http.MethodPost, tc.s.url+"/client/negotiate?hub=chat&negotiateVersion=1"+tc.query, tok, nil, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, body)
		}
		var got map[string]any
		json.Unmarshal(body, &got)
		v, present := got["useStatefulReconnect"]
		if tc.want && v != true {
			t.Errorf("%s: useStatefulReconnect = %v, want true (%s)", tc.name, v, body)
		}
		if !tc.want && present {
			t.Errorf("%s: useStatefulReconnect sent (%s); it must be absent unless granted", tc.name, body)
		}
	}
}

func TestNegotiateTransportClaim(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	aud := auth.SignalRClientAudience(s.url, "chat")
	exp := time.Now().Add(time.Hour).Unix()
	for _, tc := range []struct {
		htt  any
		want []string
	}{
		{1, []string{"WebSockets"}},
		{2, []string{"ServerSentEvents"}},
		{5, []string{"WebSockets", "LongPolling"}},
		{"6", []string{"ServerSentEvents", "LongPolling"}},
		{0, []string{"WebSockets", "ServerSentEvents", "LongPolling"}},
	} {
		tok := customToken(t, map[string]any{"aud": aud, "exp": exp, "asrs.s.htt": tc.htt})
		n := s.negotiate(t, "chat", tok, "")
		var got []string
		for _, tr := range n.AvailableTransports {
			got = append(got, tr.Transport)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("asrs.s.htt=%v: transports %v, want %v", tc.htt, got, tc.want)
		}
	}

	// A transport the token does not allow is refused with 404.
	tok := customToken(t, map[string]any{"aud": aud, "exp": exp, "asrs.s.htt": 2})
	n := s.negotiate(t, "chat", tok, "")
	if _, err := dialWS(t, s.clientURL("chat", n.ConnectionToken, tok), nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("WebSocket with an SSE-only token: %v, want 404", err)
	}
	if _, err := dialWS(t, s.clientURL("chat", "", tok), nil); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("skipNegotiation WebSocket with an SSE-only token: %v, want 404", err)
	}
	resp, body := do(t, http.MethodGet, s.clientURL("chat", n.ConnectionToken, ""), tok, nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("long poll with an SSE-only token: %d %s, want 404", resp.StatusCode, body)
	}
}

func TestNegotiateUnauthorized(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	aud := auth.SignalRClientAudience(s.url, "chat")
	for _, tc := range []struct {
		name  string
		token string
	}{
		{"missing", ""},
		{"garbage", "not-a-jwt"},
		{"bad signature", signToken(t, "another key", map[string]any{"aud": aud, "exp": time.Now().Add(time.Hour).Unix()})},
		{"expired", customToken(t, map[string]any{"aud": aud, "exp": time.Now().Add(-2 * time.Hour).Unix()})},
		{"no exp", customToken(t, map[string]any{"aud": aud})},
		{"another hub", s.token(t, "other", "alice")},
		{"web pubsub audience", customToken(t, map[string]any{"aud": s.url + "/client/hubs/chat", "exp": time.Now().Add(time.Hour).Unix()})},
	} {
		resp, body := do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat&negotiateVersion=1", tc.token, nil, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d %s, want 401", tc.name, resp.StatusCode, body)
			continue
		}
		if h := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(h, `Bearer error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, h)
		}
	}
	// The token also works from the query (browsers).
	tok := s.token(t, "chat", "")
	resp, body := do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat&negotiateVersion=1&access_token="+tok, "", nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("token in the query: %d %s", resp.StatusCode, body)
	}
	// Hub names compare case-insensitively with the aud's hub.
	resp, body = do(t, http.MethodPost, s.url+"/client/negotiate?hub=CHAT&negotiateVersion=1", tok, nil, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("hub in another case: %d %s", resp.StatusCode, body)
	}
}

func TestNegotiateBadRequests(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	for _, tc := range []struct {
		name   string
		method string
		query  string
		status int
	}{
		{"no hub", http.MethodPost, "?negotiateVersion=1", 400},
		{"empty hub", http.MethodPost, "?hub=&negotiateVersion=1", 400},
		{"two hubs", http.MethodPost, "?hub=chat&hub=chat&negotiateVersion=1", 400},
		{"two hubs, mixed case names", http.MethodPost, "?hub=chat&HUB=chat&negotiateVersion=1", 400},
		{"invalid hub name", http.MethodPost, "?hub=1chat&negotiateVersion=1", 400},
		{"GET", http.MethodGet, "?hub=chat&negotiateVersion=1", 405},
		{"PUT", http.MethodPut, "?hub=chat&negotiateVersion=1", 405},
		{"unknown query parameters are ignored", http.MethodPost, "?hub=chat&negotiateVersion=1&asrs.op=%2Fx&asrs_request_id=1&asrs_lang=en", 200},
	} {
		resp, body := do(t, tc.method, s.url+"/client/negotiate"+tc.query, tok, nil, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d %s, want %d", tc.name, resp.StatusCode, body, tc.status)
		}
		if tc.status == 405 && !strings.Contains(resp.Header.Get("Allow"), "POST") {
			t.Errorf("%s: Allow %q", tc.name, resp.Header.Get("Allow"))
		}
	}
	if got := metrictest.Value(t, s.reg, "switchboard_signalr_rejected_total", "reason", "bad_hub"); got != 5 {
		t.Errorf("rejected{bad_hub} = %v, want 5", got)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	tok := s.token(t, "chat", "")
	const origin = "https://app.example.com"

	resp, body := do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat&negotiateVersion=1", tok, nil, map[string]string{"Origin": origin})
	if resp.StatusCode != 200 {
		t.Fatalf("negotiate: %d %s", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != origin {
		t.Errorf("Access-Control-Allow-Origin %q, want the origin echoed", got)
	}
	if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("Access-Control-Allow-Credentials %q", got)
	}
	// Refusals carry the headers too, so that the browser shows the status.
	resp, _ = do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat&negotiateVersion=1", "", nil, map[string]string{"Origin": origin})
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Allow-Origin") != origin {
		t.Errorf("401 without CORS headers: %d %v", resp.StatusCode, resp.Header)
	}
	// No Origin, no CORS headers.
	resp, _ = do(t, http.MethodPost, s.url+"/client/negotiate?hub=chat&negotiateVersion=1", tok, nil, nil)
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("Access-Control-Allow-Origin %q without an Origin", got)
	}

	for _, path := range []string{"/client/negotiate?hub=chat&negotiateVersion=1", "/client/?hub=chat&id=x"} {
		resp, _ := do(t, http.MethodOptions, s.url+path, "", nil, map[string]string{
			"Origin":                         origin,
			"Access-Control-Request-Method":  "POST",
			"Access-Control-Request-Headers": "authorization,x-requested-with,x-signalr-user-agent,content-type",
		})
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("OPTIONS %s: status %d, want 204", path, resp.StatusCode)
		}
		h := resp.Header
		if h.Get("Access-Control-Allow-Origin") != origin || h.Get("Access-Control-Allow-Credentials") != "true" {
			t.Errorf("OPTIONS %s: origin/credentials %q %q", path, h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Credentials"))
		}
		methods := h.Get("Access-Control-Allow-Methods")
		for _, m := range []string{"GET", "POST", "DELETE", "OPTIONS"} {
			if !strings.Contains(methods, m) {
				t.Errorf("OPTIONS %s: Access-Control-Allow-Methods %q lacks %s", path, methods, m)
			}
		}
		if got := h.Get("Access-Control-Allow-Headers"); got != "authorization,x-requested-with,x-signalr-user-agent,content-type" {
			t.Errorf("OPTIONS %s: Access-Control-Allow-Headers %q, want the request's echoed", path, got)
		}
	}
}

func TestUnknownPath(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	resp, _ := do(t, http.MethodPost, s.url+"/client/other?hub=chat", s.token(t, "chat", ""), nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}
