package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// waitForView waits until every node sees all len(n) nodes in heartbeats:
// user- and group-wide requests ask the nodes a node knows of.
func waitForView(t *testing.T, n []*servertest.Server) {
	t.Helper()
	for _, srv := range n {
		adminURL := strings.TrimRight(srv.Endpoint(), "/") + "/admin/cluster"
		eventually.True(t, "every node sees the others", 20*time.Second, func() bool {
			_, b := restDo(t, srv, http.MethodGet, adminURL, "")
			var st struct{ Nodes []json.RawMessage }
			json.Unmarshal(b, &st)
			return len(st.Nodes) == len(n)
		})
	}
}

// status makes a Web PubSub REST call and returns its status code.
func status(t *testing.T, srv *servertest.Server, method, path, body string) int {
	t.Helper()
	resp, _ := wpsREST(t, srv, method, path, body)
	return resp.StatusCode
}

// TestClusterConnOpsOnOtherNodes: group membership, existence and
// permissions of a conn held by node b, through REST calls to a and c.
func TestClusterConnOpsOnOtherNodes(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	ann := dialWPSRoles(t, n[1], "ann", nil) // on b, no roles

	// Added to g through a, ann on b gets a group send accepted by c.
	mustREST(t, n[0], http.MethodPut, "/groups/g/connections/"+ann.id, "", http.StatusOK)
	mustREST(t, n[2], http.MethodPost, "/groups/g/:send", `"to-g"`, http.StatusAccepted)
	if d := ann.data(); d != "to-g" {
		t.Fatalf("ann got %q, want to-g", d)
	}
	// Removed through c, it no longer does.
	mustREST(t, n[2], http.MethodDelete, "/groups/g/connections/"+ann.id, "", http.StatusNoContent)
	mustREST(t, n[0], http.MethodPost, "/groups/g/:send", `"after-leave"`, http.StatusAccepted)
	// Removed from all groups through a.
	mustREST(t, n[0], http.MethodPut, "/groups/h/connections/"+ann.id, "", http.StatusOK)
	mustREST(t, n[2], http.MethodDelete, "/connections/"+ann.id+"/groups", "", http.StatusNoContent)
	mustREST(t, n[0], http.MethodPost, "/groups/h/:send", `"after-leave-all"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/:send", `"end"`, http.StatusAccepted)
	ann.expect("ann (node b)", nil)

	// Existence, from every node; a conn id of a live node that has no
	// such conn, and of a node that does not exist, are 404.
	for _, srv := range n {
		for path, want := range map[string]int{
			"/connections/" + ann.id:     http.StatusOK,
			"/connections/b_nosuchconn":  http.StatusNotFound,
			"/connections/zz_nosuchconn": http.StatusNotFound,
			"/connections/*_wildcard":    http.StatusNotFound, // never a NATS wildcard subject
			"/connections/b.c_dotted":    http.StatusNotFound,
		} {
			if got := status(t, srv, http.MethodHead, path, ""); got != want {
				t.Errorf("HEAD %s: %d, want %d", path, got, want)
			}
		}
	}
	mustREST(t, n[0], http.MethodPut, "/groups/g/connections/b_nosuchconn", "", http.StatusNotFound)

	// A permission granted through a lets ann join on b; checked through c;
	// revoked through c, checked through a.
	join := func(ack int) map[string]any {
		ann.ws.WriteText([]byte(`{"type":"joinGroup","group":"pg","ackId":` + string(rune('0'+ack)) + `}`))
		return ann.next()
	}
	if m := join(1); m["type"] != "ack" || m["success"] != false {
		t.Fatalf("join without the permission: %v", m)
	}
	perm := "/permissions/joinLeaveGroup/connections/" + ann.id + "?targetName=pg"
	mustREST(t, n[2], http.MethodHead, perm, "", http.StatusNotFound)
	mustREST(t, n[0], http.MethodPut, perm, "", http.StatusOK)
	mustREST(t, n[2], http.MethodHead, perm, "", http.StatusOK)
	if m := join(2); m["type"] != "ack" || m["success"] != true {
		t.Fatalf("join with the permission granted through node a: %v", m)
	}
	mustREST(t, n[2], http.MethodDelete, perm, "", http.StatusNoContent)
	mustREST(t, n[0], http.MethodHead, perm, "", http.StatusNotFound)
	mustREST(t, n[0], http.MethodPut, "/permissions/joinLeaveGroup/connections/b_nosuchconn", "", http.StatusNotFound)
}

// TestClusterUserAndGroupOpsOnEveryNode: user and group existence, adding
// and removing a user's conns on b and c, and the filtered bulk group
// operations, through REST calls to a.
func TestClusterUserAndGroupOpsOnEveryNode(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	waitForView(t, n)
	ub := dialWPS(t, n[1], "u")
	uc := dialWPS(t, n[2], "u")
	other := dialWPS(t, n[2], "o", "og")

	for _, srv := range n {
		for path, want := range map[string]int{
			"/users/u":      http.StatusOK,
			"/users/nobody": http.StatusNotFound,
			"/groups/og":    http.StatusOK,
			"/groups/empty": http.StatusNotFound,
		} {
			if got := status(t, srv, http.MethodHead, path, ""); got != want {
				t.Errorf("HEAD %s: %d, want %d", path, got, want)
			}
		}
	}

	mustREST(t, n[0], http.MethodPut, "/users/u/groups/ug", "", http.StatusOK)
	mustREST(t, n[0], http.MethodPut, "/users/nobody/groups/ug", "", http.StatusNotFound)
	mustREST(t, n[0], http.MethodHead, "/groups/ug", "", http.StatusOK)
	mustREST(t, n[0], http.MethodPost, "/groups/ug/:send", `"ug1"`, http.StatusAccepted)
	for _, c := range []*wpsClient{ub, uc} { // delivered before the removal
		if d := c.data(); d != "ug1" {
			t.Fatalf("got %q, want ug1", d)
		}
	}
	mustREST(t, n[0], http.MethodDelete, "/users/u/groups/ug", "", http.StatusNoContent)
	mustREST(t, n[0], http.MethodPost, "/groups/ug/:send", `"ug-after-remove"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodHead, "/groups/ug", "", http.StatusNotFound)

	mustREST(t, n[0], http.MethodPut, "/users/u/groups/x1", "", http.StatusOK)
	mustREST(t, n[0], http.MethodPut, "/users/u/groups/x2", "", http.StatusOK)
	mustREST(t, n[0], http.MethodDelete, "/users/u/groups", "", http.StatusNoContent)
	mustREST(t, n[0], http.MethodPost, "/groups/x1/:send", `"x1-after-remove-all"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/groups/x2/:send", `"x2-after-remove-all"`, http.StatusAccepted)

	filter := `{"groups":["f1","f2"],"filter":"userId eq 'u'"}`
	mustREST(t, n[0], http.MethodPost, "/:addToGroups", filter, http.StatusOK)
	mustREST(t, n[0], http.MethodPost, "/groups/f1/:send", `"f1"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/groups/f2/:send", `"f2"`, http.StatusAccepted)
	for _, c := range []*wpsClient{ub, uc} {
		if d1, d2 := c.data(), c.data(); d1 != "f1" || d2 != "f2" {
			t.Fatalf("got %q %q, want f1 f2", d1, d2)
		}
	}
	mustREST(t, n[0], http.MethodPost, "/:removeFromGroups", `{"groups":["f1"],"filter":"userId eq 'u'"}`, http.StatusOK)
	mustREST(t, n[0], http.MethodPost, "/groups/f1/:send", `"f1-after-remove"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/groups/og/:send", `"og"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/:send", `"end"`, http.StatusAccepted)
	for name, c := range map[string]*wpsClient{"u on b": ub, "u on c": uc} {
		c.expect(name, nil)
	}
	other.expect("o on c", []string{"og"})
}

// TestClusterRequestsUnavailable: with NATS down, or a node that does not
// answer in time, an operation on another node's conn and a user-wide one
// answer 503 Error.Cluster.Unavailable, never a local-only answer.
func TestClusterRequestsUnavailable(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b")
	waitForView(t, n)
	ann := dialWPS(t, n[1], "ann")

	// A node "mute" that sends heartbeats and takes requests but never
	// answers them.
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Subscribe("sb.wps.node.mute.req", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	hb, _ := json.Marshal(map[string]any{"node_id": "mute", "instance": "x", "started": time.Now()})
	nc.Publish("sb.nodes.heartbeat", hb)
	nc.Flush()
	adminURL := strings.TrimRight(n[0].Endpoint(), "/") + "/admin/cluster"
	eventually.True(t, "node a sees node mute", 10*time.Second, func() bool {
		_, b := restDo(t, n[0], http.MethodGet, adminURL, "")
		return strings.Contains(string(b), `"mute"`)
	})
	for _, path := range []string{"/connections/mute_abc", "/users/ann"} {
		resp, b := wpsREST(t, n[0], http.MethodHead, path, "")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("x-ms-error-code") != "Error.Cluster.Unavailable" {
			t.Errorf("HEAD %s with a node that does not answer: %d %s %s", path, resp.StatusCode, resp.Header.Get("x-ms-error-code"), b)
		}
	}
	nc.Close()

	ns.Stop()
	for _, path := range []string{"/connections/" + ann.id, "/users/ann", "/groups/g"} {
		eventually.True(t, "HEAD "+path+" with NATS down answers 503", 10*time.Second, func() bool {
			return status(t, n[0], http.MethodHead, path, "") == http.StatusServiceUnavailable
		})
	}
	resp, _ := wpsREST(t, n[0], http.MethodPut, "/groups/g/connections/"+ann.id, "")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("add to group with NATS down: %d", resp.StatusCode)
	}
}

// TestClusterSignalRGroupsAcrossNodes: SignalR REST (2022-06-01) through
// one node on conns and users of others: conn membership and existence,
// and a user–group tag with ttl that applies to the user's NEW conn on
// another node; removing the tag through a third node ends it everywhere.
func TestClusterSignalRGroupsAcrossNodes(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	waitForView(t, n)
	call := func(srv *servertest.Server, method, path string, want int) {
		t.Helper()
		u := srv.SignalREndpoint() + "/api/hubs/chat" + path
		if strings.Contains(path, "?") {
			u += "&api-version=2022-06-01"
		} else {
			u += "?api-version=2022-06-01"
		}
		body := ""
		if strings.HasSuffix(path, ":send") {
			body = `{"target":"t","arguments":["` + path + `"]}`
		}
		if resp, b := restDo(t, srv, method, u, body); resp.StatusCode != want {
			t.Fatalf("%s %s on %s: %d %s, want %d", method, path, srv.Endpoint(), resp.StatusCode, b, want)
		}
	}
	expect := func(name string, c *hubClient, want ...string) {
		t.Helper()
		for _, w := range want {
			m := c.next()
			if m.Kind != hubproto.Invocation || !strings.Contains(string(m.Raw), `"`+w+`"`) {
				t.Fatalf("%s: got %s, want the send %s", name, m.Raw, w)
			}
		}
	}
	cb := dialHub(t, n[1], "chat", hubproto.JSON) // user u1, on b

	call(n[0], http.MethodHead, "/connections/"+cb.id, http.StatusOK)
	call(n[2], http.MethodHead, "/connections/b_nosuchconn", http.StatusNotFound)
	call(n[0], http.MethodHead, "/users/u1", http.StatusOK)
	call(n[0], http.MethodPut, "/groups/cg/connections/"+cb.id, http.StatusOK)
	call(n[2], http.MethodHead, "/groups/cg", http.StatusOK)
	call(n[2], http.MethodPost, "/groups/cg/:send", http.StatusAccepted)
	expect("u1 on b", cb, "/groups/cg/:send")
	call(n[0], http.MethodDelete, "/groups/cg/connections/"+cb.id, http.StatusOK)
	call(n[2], http.MethodHead, "/groups/cg", http.StatusNotFound)

	// A tag with a ttl through a: u1's conn on b joins, and so does the
	// conn u1 opens afterwards on c.
	call(n[0], http.MethodPut, "/users/u1/groups/tg?ttl=600", http.StatusOK)
	cc := dialHub(t, n[2], "chat", hubproto.JSON) // user u1, on c
	call(n[1], http.MethodHead, "/users/u1/groups/tg", http.StatusOK)
	call(n[0], http.MethodPost, "/groups/tg/:send", http.StatusAccepted)
	expect("u1 on b", cb, "/groups/tg/:send")
	expect("u1's new conn on c", cc, "/groups/tg/:send")
	// Removed through c: nobody gets the next send to tg, nor does a new
	// conn on a join it.
	call(n[2], http.MethodDelete, "/users/u1/groups/tg", http.StatusNoContent)
	ca := dialHub(t, n[0], "chat", hubproto.JSON)
	call(n[1], http.MethodHead, "/users/u1/groups/tg", http.StatusNotFound)
	call(n[0], http.MethodPost, "/groups/tg/:send", http.StatusAccepted)
	// :execute JoinGroup with a filter through c reaches u1's conns on a
	// and b.
	u := n[2].SignalREndpoint() + "/api/hubs/chat/:execute?api-version=2022-06-01&filter=" + url.QueryEscape("userId eq 'u1'")
	if resp, b := restDo(t, n[2], http.MethodPost, u, `[{"type":"JoinGroup","group":"eg"}]`); resp.StatusCode != http.StatusAccepted {
		t.Fatalf(":execute: %d %s", resp.StatusCode, b)
	}
	call(n[0], http.MethodPost, "/groups/eg/:send", http.StatusAccepted)
	call(n[0], http.MethodPost, "/:send", http.StatusAccepted)
	for name, c := range map[string]*hubClient{"u1 on a": ca, "u1 on b": cb, "u1 on c": cc} {
		expect(name, c, "/groups/eg/:send")
	}
	expect("u1 on b", cb, "/:send")
	expect("u1's new conn on c", cc, "/:send")
	expect("u1's conn on a after the removal", ca, "/:send")
}

// TestClusterListGroupPagesOverEveryNode: listing a group through c pages
// over its members on a, b and c in conn-id order, each once, following
// nextLink; top bounds the whole listing.
func TestClusterListGroupPagesOverEveryNode(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	waitForView(t, n)
	var want []string
	for i, srv := range []*servertest.Server{n[0], n[0], n[0], n[1], n[1], n[1], n[2], n[2]} {
		want = append(want, dialWPS(t, srv, fmt.Sprintf("u%d", i), "lg").id)
	}
	dialWPS(t, n[1], "outsider", "other")
	slices.Sort(want)
	list := func(u string) (ids []string, pages []int) {
		for u != "" {
			resp, b := restDo(t, n[2], http.MethodGet, u, "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
			}
			var page struct {
				Value []struct {
					ConnectionID string `json:"connectionId"`
				}
				NextLink string `json:"nextLink"`
			}
			json.Unmarshal(b, &page)
			for _, v := range page.Value {
				ids = append(ids, v.ConnectionID)
			}
			pages = append(pages, len(page.Value))
			u = page.NextLink
		}
		return ids, pages
	}
	base := strings.TrimRight(n[2].Endpoint(), "/") + "/api/hubs/chat/groups/lg/connections?api-version=2024-12-01"
	ids, pages := list(base + "&maxpagesize=3")
	if !slices.Equal(ids, want) || !slices.Equal(pages, []int{3, 3, 2}) {
		t.Errorf("listing got %v in pages %v, want %v in 3, 3, 2", ids, pages, want)
	}
	ids, _ = list(base + "&maxpagesize=2&top=5")
	if !slices.Equal(ids, want[:5]) {
		t.Errorf("top 5 got %v, want %v", ids, want[:5])
	}
}
