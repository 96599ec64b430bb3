package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/dashboard"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// dashClient is a logged-in dashboard session on one server.
type dashClient struct {
	t      *testing.T
	base   string
	cookie string
	traces []io.Closer
}

// stopTraces closes the trace streams.
func (d *dashClient) stopTraces() {
	for _, c := range d.traces {
		c.Close()
	}
}

func dashLogin(t *testing.T, srv *servertest.Server, key string) *dashClient {
	t.Helper()
	base := strings.TrimRight(srv.Endpoint(), "/")
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.PostForm(base+"/dashboard/login", url.Values{"key": {key}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d %v", resp.StatusCode, resp.Cookies())
	}
	return &dashClient{t: t, base: base, cookie: resp.Cookies()[0].Name + "=" + resp.Cookies()[0].Value}
}

// call makes a dashboard call and decodes its JSON answer into out.
func (d *dashClient) call(method, path string, body any, out any) int {
	d.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, d.base+path, r)
	req.Header.Set("Cookie", d.cookie)
	req.Header.Set(dashboard.CSRFHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			d.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// trace opens the live trace and returns its events as they come.
func (d *dashClient) trace(query string) <-chan dashboard.Event {
	d.t.Helper()
	req, _ := http.NewRequest("GET", d.base+"/dashboard/api/trace?"+query, nil)
	req.Header.Set("Cookie", d.cookie)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		d.t.Fatalf("trace: %d", resp.StatusCode)
	}
	d.t.Cleanup(func() { resp.Body.Close() })
	d.traces = append(d.traces, resp.Body)
	sc := bufio.NewScanner(resp.Body)
	sc.Scan() // the opening comment: the watcher is in place
	events := make(chan dashboard.Event, 1000)
	go func() {
		defer close(events)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var e dashboard.Event
				if json.Unmarshal([]byte(data), &e) == nil {
					events <- e
				}
			}
		}
	}()
	return events
}

func nextEvent(t *testing.T, events <-chan dashboard.Event, kind string) dashboard.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("the trace ended before a %s event", kind)
			}
			if e.Kind == kind {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event in the trace", kind)
		}
	}
}

// TestDashboardOnOneNode: real clients on a real server; the overview
// counts them, the trace shows their connections, the console's message
// reaches them, the inspector shows one and closes it with a reason.
func TestDashboardOnOneNode(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"auth.access_keys=" + clusterKey}})
	d := dashLogin(t, srv, clusterKey)
	events := d.trace("hub=chat")
	ann := dialWPS(t, srv, "ann", "room")
	bob := dialWPS(t, srv, "bob", "room", "other")
	if e := nextEvent(t, events, "connected"); e.Conn != ann.id || e.User != "ann" || e.Hub != "chat" || e.Protocol != "json.webpubsub.azure.v1" {
		t.Fatalf("connected event %+v, want ann's %s", e, ann.id)
	}
	var o dashboard.Overview
	if code := d.call("GET", "/dashboard/api/overview", nil, &o); code != 200 {
		t.Fatalf("overview %d", code)
	}
	hubs := o.Namespaces[0].Hubs
	if len(hubs) != 1 || hubs[0] != (dashboard.HubView{Name: "chat", Connections: 2, Users: 2, Groups: 2}) {
		t.Fatalf("hubs %+v", hubs)
	}
	if tg := o.Namespaces[0].TopGroups; len(tg) != 2 || tg[0] != (dashboard.TopGroup{Hub: "chat", Group: "room", Members: 2}) {
		t.Fatalf("top groups %+v", tg)
	}
	if len(o.Namespaces) != 2 || o.Namespaces[1].Name != "signalr" {
		t.Fatalf("namespaces %+v", o.Namespaces)
	}
	var res map[string]any
	if code := d.call("POST", "/dashboard/api/send", map[string]any{"hub": "chat", "target": "group", "name": "room",
		"content_type": "text/plain", "data": "from the console"}, &res); code != 200 {
		t.Fatalf("send %d %v", code, res)
	}
	for _, c := range []*wpsClient{ann, bob} {
		if got := c.data(); got != "from the console" {
			t.Fatalf("got %q", got)
		}
	}
	if e := nextEvent(t, events, "message"); e.Target != "group" || e.TargetName != "room" || e.Size != len("from the console") || e.Type != "text" {
		t.Fatalf("message event %+v", e)
	}
	var cv dashboard.ConnView
	if code := d.call("GET", "/dashboard/api/conn?hub=chat&id="+url.QueryEscape(bob.id), nil, &cv); code != 200 {
		t.Fatalf("inspect %d", code)
	}
	if !cv.Local || cv.User != "bob" || strings.Join(cv.Groups, ",") != "room,other" || cv.Protocol != "json.webpubsub.azure.v1" {
		t.Fatalf("inspector %+v", cv)
	}
	if code := d.call("POST", "/dashboard/api/close", map[string]any{"hub": "chat", "id": bob.id, "reason": "closed from the dashboard"}, &res); code != 200 {
		t.Fatalf("close %d %v", code, res)
	}
	if m := bob.next(); m["event"] != "disconnected" || m["message"] != "closed from the dashboard" {
		t.Fatalf("bob got %v", m)
	}
	if e := nextEvent(t, events, "disconnected"); e.Conn != bob.id || e.Reason != "closed from the dashboard" {
		t.Fatalf("disconnected event %+v", e)
	}
}

// TestDashboardAcrossACluster: logged in on node a, the dashboard lists the
// three nodes, its inspector shows a conn that b holds (asked of b), its console reaches a client on node b, its inspector says where
// b's client is, and its close ends that client with the reason.
func TestDashboardAcrossACluster(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	d := dashLogin(t, n[0], clusterKey)
	events := d.trace("hub=chat")
	// The other nodes hear that a watches within a heartbeat of the trace.
	eventually.True(t, "b and c trace for a", 10*time.Second, func() bool {
		return n[1].Tracer().Watching() && n[2].Tracer().Watching()
	})
	onB := dialWPS(t, n[1], "bea", "far")
	if e := nextEvent(t, events, "connected"); e.Node != "b" || e.Conn != onB.id || e.User != "bea" {
		t.Fatalf("a's trace shows %+v, want the connection on b", e)
	}
	eventually.True(t, "the overview lists the three nodes", 10*time.Second, func() bool {
		var o dashboard.Overview
		d.call("GET", "/dashboard/api/overview", nil, &o)
		b, _ := json.Marshal(o.Cluster)
		for _, id := range []string{"a", "b", "c"} {
			if !strings.Contains(string(b), `"node_id":"`+id+`"`) {
				return false
			}
		}
		return true
	})
	for _, target := range []map[string]any{
		{"hub": "chat", "target": "group", "name": "far", "content_type": "text/plain", "data": "to the group"},
		{"hub": "chat", "target": "user", "name": "bea", "content_type": "text/plain", "data": "to the user"},
		{"hub": "chat", "target": "conn", "name": onB.id, "content_type": "text/plain", "data": "to the conn"},
		{"hub": "chat", "target": "all", "content_type": "text/plain", "data": "to all"},
	} {
		if code := d.call("POST", "/dashboard/api/send", target, nil); code != 200 {
			t.Fatalf("send %v: %d", target, code)
		}
		if got := onB.data(); got != target["data"] {
			t.Fatalf("the client on b got %q, want %q", got, target["data"])
		}
	}
	var cv dashboard.ConnView
	if code := d.call("GET", "/dashboard/api/conn?hub=chat&id="+url.QueryEscape(onB.id), nil, &cv); code != 200 || cv.Node != "b" || cv.Local ||
		cv.User != "bea" || strings.Join(cv.Groups, ",") != "far" || cv.Protocol != "json.webpubsub.azure.v1" || cv.Dialect != "json" {
		t.Fatalf("inspect a conn on b from a: %d %+v", code, cv)
	}
	var e map[string]any
	if code := d.call("GET", "/dashboard/api/conn?hub=chat&id=c_nobody", nil, &e); code != 404 {
		t.Fatalf("inspect an unknown conn on c from a: %d %v", code, e)
	}
	if code := d.call("POST", "/dashboard/api/close", map[string]any{"hub": "chat", "id": onB.id, "reason": "bye from a"}, nil); code != 200 {
		t.Fatalf("close %d", code)
	}
	if m := onB.next(); m["event"] != "disconnected" || m["message"] != "bye from a" {
		t.Fatalf("the client on b got %v", m)
	}
	if e := nextEvent(t, events, "disconnected"); e.Node != "b" || e.Conn != onB.id || e.Reason != "bye from a" {
		t.Fatalf("a's trace shows %+v, want the close on b with its reason", e)
	}
	// Once a stops watching, b and c stop publishing (nothing crosses NATS).
	d.stopTraces()
	eventually.True(t, "b and c stop tracing", 10*time.Second, func() bool {
		return !n[1].Tracer().Watching() && !n[2].Tracer().Watching()
	})
}

// TestDashboardOff: with dashboard.enabled false, neither / nor /dashboard
// answer.
func TestDashboardOff(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"dashboard.enabled=false"}})
	for _, p := range []string{"/", "/dashboard/", "/dashboard/login"} {
		resp, err := http.Get(strings.TrimRight(srv.Endpoint(), "/") + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestDashboardTracesEventHandlerCalls: a hub's connected event reaches its
// handler; the trace shows the call with its status, and the overview's
// event-handler health counts it.
func TestDashboardTracesEventHandlerCalls(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions { // abuse protection
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer backend.Close()
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte("hubs:\n  chat:\n    event_handlers:\n      - url_template: \""+backend.URL+"/{hub}/{event}?code=secret\"\n        system_events: [connected]\n"), 0o600)
	srv := servertest.Start(t, servertest.Options{ConfigFile: file, Settings: []string{"auth.access_keys=" + clusterKey}})
	d := dashLogin(t, srv, clusterKey)
	events := d.trace("user=ann")
	ann := dialWPS(t, srv, "ann")
	e := nextEvent(t, events, "webhook")
	if e.Hub != "chat" || e.Conn != ann.id || e.Status != http.StatusNoContent || e.Event != "connected" ||
		e.URL != backend.URL+"/chat/connected" {
		t.Fatalf("webhook event %+v (the URL's query must not show)", e)
	}
	var o dashboard.Overview
	d.call("GET", "/dashboard/api/overview", nil, &o)
	if o.Upstream.Requests["204"] < 1 {
		t.Fatalf("event-handler health %+v", o.Upstream)
	}
}

// TestDashboardSendsToSignalR: the console's invocation reaches a SignalR
// client; a body that is not an invocation is a 400 naming the problem.
func TestDashboardSendsToSignalR(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"auth.access_keys=" + clusterKey}})
	d := dashLogin(t, srv, clusterKey)
	c := negotiateSR(t, srv, "sam")
	c.open(srv)
	c.ws.WriteText([]byte(`{"protocol":"json","version":1}` + "\x1e"))
	c.expect("{}")
	var res map[string]any
	if code := d.call("POST", "/dashboard/api/send", map[string]any{"ns": "signalr", "hub": "chat", "target": "user", "name": "sam",
		"content_type": "application/json", "data": `{"target":"news","arguments":["from the console"]}`}, &res); code != 200 {
		t.Fatalf("send %d %v", code, res)
	}
	c.expect(`{"type":1,"target":"news","arguments":["from the console"]}`)
	if code := d.call("POST", "/dashboard/api/send", map[string]any{"ns": "signalr", "hub": "chat", "target": "all",
		"content_type": "text/plain", "data": "hi"}, &res); code != 400 || !strings.Contains(res["error"].(string), "invocation") {
		t.Fatalf("a text send to SignalR: %d %v", code, res)
	}
}

// TestDashboardTraceOutlivesReadTimeout: the trace stream still carries
// events after server.read_timeout has passed since it opened.
func TestDashboardTraceOutlivesReadTimeout(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{Settings: []string{"auth.access_keys=" + clusterKey, "server.read_timeout=500ms"}})
	d := dashLogin(t, srv, clusterKey)
	events := d.trace("hub=chat")
	time.Sleep(1500 * time.Millisecond) // three read timeouts
	ann := dialWPS(t, srv, "ann")
	if e := nextEvent(t, events, "connected"); e.Conn != ann.id {
		t.Fatalf("event %+v", e)
	}
}
