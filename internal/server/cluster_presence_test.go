package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

type usersPage struct {
	Value []struct {
		UserID      string `json:"userId"`
		Connections int    `json:"connections"`
	} `json:"value"`
	NextLink string `json:"nextLink"`
}

// listUsersVia pages through url on srv and returns "user:count" entries.
func listUsersVia(t *testing.T, srv *servertest.Server, url string) string {
	t.Helper()
	var got []string
	for next, pages := url, 0; next != ""; pages++ {
		resp, b := restDo(t, srv, http.MethodGet, next, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", next, resp.StatusCode, b)
		}
		var p usersPage
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatal(err)
		}
		for _, v := range p.Value {
			got = append(got, v.UserID+":"+string(rune('0'+v.Connections)))
		}
		next = p.NextLink
		if pages > 20 {
			t.Fatal("paging does not end")
		}
	}
	return strings.Join(got, " ")
}

// TestClusterPresence: on three nodes, with clients of one user on two
// nodes, every node answers the same users (once each, connection counts
// summed, paged one per page across nodes) and counts; a node that stops
// takes its users out of every node's answer; SignalR hubs likewise.
func TestClusterPresence(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	dialWPS(t, n[0], "ann", "room")
	dialWPS(t, n[1], "ann", "room", "lobby")
	dialWPS(t, n[1], "bob", "room")
	dialWPS(t, n[2], "carl", "room")
	dialWPS(t, n[2], "dora", "lobby")
	dialWPS(t, n[2], "", "room")

	wps := func(srv *servertest.Server, path string) string {
		return strings.TrimRight(srv.Endpoint(), "/") + "/api/hubs/chat" + path
	}
	for i, srv := range n {
		if got := listUsersVia(t, srv, wps(srv, "/groups/room/users?maxpagesize=1")); got != "ann:2 bob:1 carl:1" {
			t.Errorf("node %d: room users %q", i, got)
		}
		if got := listUsersVia(t, srv, wps(srv, "/users?maxpagesize=2")); got != "ann:2 bob:1 carl:1 dora:1" {
			t.Errorf("node %d: hub users %q", i, got)
		}
		resp, b := restDo(t, srv, http.MethodGet, wps(srv, "/presence"), "")
		if resp.StatusCode != http.StatusOK || string(b) != `{"hub":"chat","connections":6,"users":4,"groups":2,"approximate":false}` {
			t.Errorf("node %d: presence %d %s", i, resp.StatusCode, b)
		}
	}

	// /admin/presence on a: the cluster's counts and a's share.
	resp, b := restDo(t, n[0], http.MethodGet, strings.TrimRight(n[0].Endpoint(), "/")+"/admin/presence", "")
	var adm map[string]struct {
		Hubs []struct {
			Hub                        string
			Connections, Users, Groups int
			Node                       struct{ Connections, Users, Groups int }
		}
	}
	json.Unmarshal(b, &adm)
	if h := adm["webpubsub"].Hubs; resp.StatusCode != http.StatusOK || len(h) != 1 || h[0].Hub != "chat" || h[0].Connections != 6 || h[0].Users != 4 ||
		h[0].Groups != 2 || h[0].Node.Connections != 1 || h[0].Node.Users != 1 || h[0].Node.Groups != 1 {
		t.Errorf("/admin/presence: %d %s", resp.StatusCode, b)
	}

	// SignalR: two clients of u1 on b and c count as one user.
	dialHub(t, n[1], "chat", hubproto.JSON)
	dialHub(t, n[2], "chat", hubproto.JSON)
	sr := n[0].SignalREndpoint() + "/api/hubs/chat"
	if got := listUsersVia(t, n[0], sr+"/users"); got != "u1:2" {
		t.Errorf("signalr users %q", got)
	}
	if resp, b := restDo(t, n[0], http.MethodGet, sr+"/presence", ""); string(b) != `{"hub":"chat","connections":2,"users":1,"groups":0,"approximate":false}` {
		t.Errorf("signalr presence %d %s", resp.StatusCode, b)
	}

	// Node c stops: carl and dora leave, ann stays with her two.
	if err := n[2].Stop(); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "c's users leave the answers of a and b", 10*time.Second, func() bool {
		return listUsersVia(t, n[0], wps(n[0], "/users")) == "ann:2 bob:1" &&
			listUsersVia(t, n[1], wps(n[1], "/groups/room/users")) == "ann:2 bob:1"
	})
}

// startNotifyCluster starts one node per id whose hub chat notifies the
// members of room:* groups.
func startNotifyCluster(t testing.TB, natsURL string, ids ...string) []*servertest.Server {
	t.Helper()
	file := filepath.Join(t.TempDir(), "switchboard.yaml")
	if err := os.WriteFile(file, []byte("hubs:\n  chat:\n    presence_notify: [\"room:*\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*servertest.Server, len(ids))
	for i, id := range ids {
		nodes[i] = servertest.Start(t, servertest.Options{ConfigFile: file, Settings: []string{
			"cluster.nats_url=" + natsURL, "server.node_id=" + id, "auth.access_keys=" + clusterKey}})
	}
	return nodes
}

// presenceNext returns the next presence notification c gets, skipping
// nothing: any other message fails the test.
func (c *wpsClient) presenceNext() string {
	c.t.Helper()
	m := c.next()
	d, _ := m["data"].(map[string]any)
	if m["type"] != "message" || m["from"] != "server" || m["dataType"] != "json" || d["type"] != "presence" {
		c.t.Fatalf("got %v, want a presence message", m)
	}
	return fmt.Sprintf("%s %s %s", d["event"], d["group"], d["userId"])
}

// quiet checks that c gets nothing more: a marker sent to it through the
// group arrives first.
func (c *wpsClient) quiet(srv *servertest.Server, group string) {
	c.t.Helper()
	mustREST(c.t, srv, http.MethodPost, "/groups/"+url.PathEscape(group)+"/:send", `"marker"`, http.StatusAccepted)
	if d := c.data(); d != "marker" {
		c.t.Fatalf("got %q, want nothing before the marker", d)
	}
}

// TestClusterPresenceNotifications: a watcher on node a is told once when
// ann joins room:1 on b, not when her second tab joins on c, not when
// her first tab leaves, once when her last tab leaves; a user whose node
// stops leaves; a group outside the pattern says nothing.
func TestClusterPresenceNotifications(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startNotifyCluster(t, ns.URL(), "a", "b", "c")
	w := dialWPS(t, n[0], "watcher", "room:1", "other")
	if got := w.presenceNext(); got != "joined room:1 watcher" {
		t.Fatalf("the watcher's own join: %q", got)
	}
	a1 := dialWPS(t, n[1], "ann", "room:1", "other")
	if got := w.presenceNext(); got != "joined room:1 ann" {
		t.Fatalf("ann joined on b: %q", got)
	}
	a2 := dialWPS(t, n[2], "ann", "room:1")
	w.quiet(n[2], "room:1")
	a1.ws.Close()
	room := strings.TrimRight(n[1].Endpoint(), "/") + "/api/hubs/chat/groups/room:1/users"
	eventually.True(t, "b ends ann's first tab", 10*time.Second, func() bool { return listUsersVia(t, n[1], room) == "ann:1 watcher:1" })
	w.quiet(n[1], "room:1")
	mustREST(t, n[0], http.MethodDelete, "/groups/room:1/connections/"+a2.id, "", http.StatusNoContent)
	if got := w.presenceNext(); got != "left room:1 ann" {
		t.Fatalf("ann's last tab left: %q", got)
	}

	// carl on c; c stops: carl leaves.
	dialWPS(t, n[2], "carl", "room:1")
	if got := w.presenceNext(); got != "joined room:1 carl" {
		t.Fatalf("carl joined on c: %q", got)
	}
	if err := n[2].Stop(); err != nil {
		t.Fatal(err)
	}
	if got := w.presenceNext(); got != "left room:1 carl" {
		t.Fatalf("c stopped: %q", got)
	}
	w.quiet(n[1], "room:1")
}

// TestClusterPresenceNotificationsSignalR: SignalR members (JSON and
// MessagePack) get an invocation of "presence" with the same body; the
// user's clients on two nodes join once.
func TestClusterPresenceNotificationsSignalR(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startNotifyCluster(t, ns.URL(), "a", "b")
	sr := func(srv *servertest.Server, path string) string {
		return srv.SignalREndpoint() + "/api/hubs/chat" + path + "?api-version=2022-06-01"
	}
	c1 := dialHub(t, n[0], "chat", hubproto.JSON)
	if resp := restCall(t, n[0], http.MethodPut, sr(n[0], "/groups/room:1/connections/"+c1.id), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("add c1: %d", resp.StatusCode)
	}
	want := `{"type":1,"target":"presence","arguments":[{"type":"presence","event":"joined","group":"room:1","userId":"u1"}]}`
	if m := c1.next(); m.Kind != hubproto.Invocation || string(m.Raw) != want {
		t.Fatalf("c1 got %s, want %s", m.Raw, want)
	}
	c2 := dialHub(t, n[1], "chat", hubproto.MessagePack)
	if resp := restCall(t, n[1], http.MethodPut, sr(n[1], "/groups/room:1/connections/"+c2.id), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("add c2: %d", resp.StatusCode)
	}
	// u1 was in room:1 already (on a): c2 joins silently; a send through
	// b is the next thing both get.
	if resp := restCall(t, n[1], http.MethodPost, sr(n[1], "/groups/room:1/:send"), `{"target":"t","arguments":["after"]}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %d", resp.StatusCode)
	}
	for name, c := range map[string]*hubClient{"c1": c1, "c2": c2} {
		if m := c.next(); m.Kind != hubproto.Invocation || m.Target != "t" {
			t.Errorf("%s got %s (target %q), want the send", name, m.Raw, m.Target)
		}
	}
	// c1 leaves: u1 is still in through c2. c2 leaves: c1 is told? No:
	// c1 is not a member any more; nobody is left to tell.
	if resp := restCall(t, n[0], http.MethodDelete, sr(n[0], "/groups/room:1/connections/"+c1.id), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("remove c1: %d", resp.StatusCode)
	}
	if resp := restCall(t, n[1], http.MethodPost, sr(n[1], "/groups/room:1/:send"), `{"target":"t","arguments":["end"]}`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("send: %d", resp.StatusCode)
	}
	if m := c2.next(); m.Kind != hubproto.Invocation || m.Target != "t" {
		t.Errorf("c2 got %s, want the send (no leave: u1 is still in)", m.Raw)
	}
}
