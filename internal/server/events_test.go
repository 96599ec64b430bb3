package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/server/servertest"

	"github.com/gobwas/ws"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

// backend is a minimal CloudEvents event handler that records what it gets.
type backend struct {
	mu     sync.Mutex
	events []string // ce-type + connection id
	states []string // ce-connectionState of user events
	keys   *auth.KeyRing
	badSig int
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.Header().Set("WebHook-Allowed-Origin", "*")
		return
	}
	id := r.Header.Get("ce-connectionId")
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.events = append(b.events, r.Header.Get("ce-type")+" "+id)
	if !b.keys.CheckSignature(id, r.Header.Get("ce-signature")) {
		b.badSig++
	}
	b.mu.Unlock()
	switch r.Header.Get("ce-type") {
	case "azure.webpubsub.sys.connect":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ce-connectionState", "s1")
		if r.URL.Query().Get("deny") != "" || strings.Contains(string(body), `"deny"`) {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "not allowed")
			return
		}
		io.WriteString(w, `{"userId":"bob","groups":["news"]}`)
	case "azure.webpubsub.user.echo":
		b.mu.Lock()
		b.states = append(b.states, r.Header.Get("ce-connectionState"))
		b.mu.Unlock()
		w.Header().Set("Content-Type", r.Header.Get("Content-Type"))
		w.Write(body)
	case "azure.webpubsub.user.fail":
		w.WriteHeader(http.StatusInternalServerError)
	}
}

func (b *backend) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.events...)
}

// TestEventHandlers runs a whole server whose hub has an event handler:
// connect sets the user and groups, user events come back to the client
// before their ack, connected precedes disconnected, every request is
// signed with both keys, and a handler that rejects stops the handshake.
func TestEventHandlers(t *testing.T) {
	keys, _ := auth.NewKeyRing("primary-key", "secondary-key")
	b := &backend{keys: keys}
	hs := httptest.NewServer(b)
	defer hs.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	os.WriteFile(file, []byte("hubs:\n  chat:\n    event_handlers:\n      - url_template: \""+hs.URL+"/{hub}/{event}\"\n        user_events: [\"*\"]\n        system_events: [connect, connected, disconnected]\n"), 0o600)
	srv := servertest.Start(t, servertest.Options{ConfigFile: file, Settings: []string{"auth.access_keys=primary-key,secondary-key"}})

	tok, _ := keys.MintClientToken(auth.ClientAudience(srv.Endpoint(), "chat"), auth.MintOptions{})
	u := strings.Replace(srv.Endpoint(), "http", "ws", 1) + "/client/hubs/chat?access_token=" + url.QueryEscape(tok)
	conn := wstest.Dial(t, u, "json.webpubsub.azure.v1")
	read := func() map[string]any {
		t.Helper()
		var m map[string]any
		json.Unmarshal(conn.Read(), &m)
		return m
	}
	hello := read()
	if hello["userId"] != "bob" {
		t.Fatalf("connect handler's userId not applied: %v", hello)
	}
	id := hello["connectionId"].(string)
	hub, _ := srv.Node().Hub("chat")
	c, err := hub.Conn(id)
	if err != nil || !c.InGroup("news") || c.State() != "s1" {
		t.Fatalf("conn %v: groups %v, state %q", err, c.Groups(), c.State())
	}
	conn.WriteText([]byte(`{"type":"event","event":"echo","ackId":1,"dataType":"json","data":{"x":1}}`))
	if m := read(); m["from"] != "server" || m["dataType"] != "json" || m["data"].(map[string]any)["x"] != float64(1) {
		t.Fatalf("echo = %v", m)
	}
	if m := read(); m["type"] != "ack" || m["success"] != true {
		t.Fatalf("ack after the echo = %v", m)
	}
	conn.WriteText([]byte(`{"type":"event","event":"fail","ackId":2,"dataType":"text","data":"x"}`))
	if m := read(); m["type"] != "ack" || m["success"] != false || m["error"].(map[string]any)["name"] != "InternalServerError" {
		t.Fatalf("failed event ack = %v", m)
	}
	conn.WriteText([]byte(`{"type":"ping"}`))
	if m := read(); m["type"] != "pong" {
		t.Fatalf("connection unusable after a failed event: %v", m)
	}
	conn.Close()

	eventually.True(t, "the disconnected event", 10*time.Second, func() bool {
		return strings.Contains(strings.Join(b.got(), "\n"), "azure.webpubsub.sys.disconnected "+id)
	})
	var order []string
	for _, e := range b.got() {
		if strings.HasSuffix(e, " "+id) {
			order = append(order, strings.TrimSuffix(e, " "+id))
		}
	}
	want := []string{"azure.webpubsub.sys.connect", "azure.webpubsub.user.echo", "azure.webpubsub.user.fail", "azure.webpubsub.sys.disconnected"}
	// connected is asynchronous: it may come anywhere after connect, but before disconnected.
	ci := -1
	for i, e := range order {
		if e == "azure.webpubsub.sys.connected" {
			ci = i
		}
	}
	if ci < 1 || ci == len(order)-1 {
		t.Fatalf("connected out of place: %q", order)
	}
	order = append(order[:ci], order[ci+1:]...)
	if strings.Join(order, ",") != strings.Join(want, ",") {
		t.Fatalf("events %q, want %q plus connected", order, want)
	}
	b.mu.Lock()
	if b.badSig != 0 || len(b.states) != 1 || b.states[0] != "s1" {
		t.Errorf("bad signatures %d, states seen %q", b.badSig, b.states)
	}
	b.mu.Unlock()

	// A rejecting handler stops the handshake with its status and reason.
	_, err = wstest.DialErr(t, u+"&deny=1", "json.webpubsub.azure.v1")
	var se ws.StatusError
	if !errorsAs(err, &se) || int(se) != http.StatusUnauthorized {
		t.Fatalf("rejected connect: %v, want HTTP 401", err)
	}
}
