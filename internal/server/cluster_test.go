package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/config"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

const clusterKey = "cluster-test-access-key-0123456789"

// startCluster starts one node per id on the NATS server at natsURL, all
// with one access key.
func startCluster(t testing.TB, natsURL string, ids ...string) []*servertest.Server {
	t.Helper()
	nodes := make([]*servertest.Server, len(ids))
	for i, id := range ids {
		nodes[i] = servertest.Start(t, servertest.Options{Settings: []string{
			"cluster.nats_url=" + natsURL, "server.node_id=" + id, "auth.access_keys=" + clusterKey}})
	}
	return nodes
}

// wpsClient is a json.webpubsub.azure.v1 client whose messages a goroutine
// reads into msgs; msgs is closed when the socket ends.
type wpsClient struct {
	t    *testing.T
	id   string
	ws   *wstest.Client
	msgs chan map[string]any
}

func dialWPS(t *testing.T, srv *servertest.Server, user string, groups ...string) *wpsClient {
	t.Helper()
	return dialWPSRoles(t, srv, user, []string{"webpubsub.sendToGroup", "webpubsub.joinLeaveGroup"}, groups...)
}

// dialWPSRoles dials a client with the given roles.
func dialWPSRoles(t *testing.T, srv *servertest.Server, user string, roles []string, groups ...string) *wpsClient {
	t.Helper()
	ep := strings.TrimRight(srv.Endpoint(), "/")
	tok, err := srv.Keys().MintClientToken(auth.ClientAudience(ep, "chat"), auth.MintOptions{UserID: user, Groups: groups,
		Roles: roles})
	if err != nil {
		t.Fatal(err)
	}
	u := strings.Replace(ep, "http", "ws", 1) + "/client/hubs/chat?access_token=" + tok
	c := &wpsClient{t: t, ws: wstest.Dial(t, u, "json.webpubsub.azure.v1"), msgs: make(chan map[string]any, 4096)}
	go func() { // ends when the socket does (the test's cleanup closes it)
		defer close(c.msgs)
		for {
			p, _, err := c.ws.ReadErr()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue // idle: nothing was read
			}
			if err != nil {
				return
			}
			var m map[string]any
			json.Unmarshal(p, &m)
			c.msgs <- m
		}
	}()
	hello := c.next()
	if hello["event"] != "connected" {
		t.Fatalf("first message %v", hello)
	}
	c.id = hello["connectionId"].(string)
	return c
}

// next returns the next message; the test fails if none comes.
func (c *wpsClient) next() map[string]any {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatal("the connection ended")
		}
		return m
	case <-time.After(wstest.Timeout):
		c.t.Fatal("no message arrived")
	}
	return nil
}

// data returns the data of the next data message.
func (c *wpsClient) data() string {
	c.t.Helper()
	m := c.next()
	if m["type"] != "message" {
		c.t.Fatalf("got %v, want a data message", m)
	}
	s, _ := m["data"].(string)
	return s
}

// expect reads data messages until "end" and checks they are want, in order.
func (c *wpsClient) expect(name string, want []string) {
	c.t.Helper()
	var got []string
	for {
		d := c.data()
		if d == "end" {
			break
		}
		got = append(got, d)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		c.t.Errorf("%s got %d messages %.300q…, want %d %.300q…", name, len(got), got, len(want), want)
	}
}

// wpsREST makes a Web PubSub REST call on srv.
func wpsREST(t *testing.T, srv *servertest.Server, method, path, body string) (*http.Response, []byte) {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return restDo(t, srv, method, strings.TrimRight(srv.Endpoint(), "/")+"/api/hubs/chat"+path+sep+"api-version=2024-12-01", body)
}

func mustREST(t *testing.T, srv *servertest.Server, method, path, body string, status int) {
	t.Helper()
	if resp, b := wpsREST(t, srv, method, path, body); resp.StatusCode != status {
		t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, status)
	}
}

// TestClusterSendsReachEveryNodeInOrder: REST sends to all, a group, a user
// and a connection, with excluded and filter, accepted by node a reach the
// matching clients on b and c (and a) exactly once, in the order a accepted
// them.
func TestClusterSendsReachEveryNodeInOrder(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	ann := dialWPS(t, n[1], "ann", "g")
	bob := dialWPS(t, n[2], "bob", "g")
	cat := dialWPS(t, n[2], "cat")
	dan := dialWPS(t, n[0], "dan", "g")

	var groupSeq []string
	for i := range 200 {
		d := fmt.Sprintf("g%d", i)
		groupSeq = append(groupSeq, d)
		mustREST(t, n[0], http.MethodPost, "/groups/g/:send", `"`+d+`"`, http.StatusAccepted)
	}
	mustREST(t, n[0], http.MethodPost, "/:send?excluded="+bob.id, `"all-but-bob"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/:send?filter="+url.QueryEscape("userId eq 'cat' or 'g' in groups")+"&excluded="+dan.id, `"filtered"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/groups/g/:send?filter="+url.QueryEscape("userId ne 'ann'"), `"g-not-ann"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/users/ann/:send", `"to-ann"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/connections/"+bob.id+"/:send", `"to-bob"`, http.StatusAccepted)
	mustREST(t, n[0], http.MethodPost, "/:send", `"end"`, http.StatusAccepted)

	seq := func(extra ...string) []string { return append(append([]string(nil), groupSeq...), extra...) }
	ann.expect("ann (node b)", seq("all-but-bob", "filtered", "to-ann"))
	bob.expect("bob (node c)", seq("filtered", "g-not-ann", "to-bob"))
	cat.expect("cat (node c)", []string{"all-but-bob", "filtered"})
	dan.expect("dan (node a)", seq("all-but-bob", "g-not-ann"))
}

// TestClusterClosesFromAnotherNode: closing a connection, a user's
// connections and a group's connections through node c reaches them on a
// and b, with the reason.
func TestClusterClosesFromAnotherNode(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	x := dialWPS(t, n[0], "xu")
	y := dialWPS(t, n[1], "yu")
	z := dialWPS(t, n[1], "zu", "doomed")
	keep := dialWPS(t, n[0], "keep", "kept")
	mustREST(t, n[2], http.MethodDelete, "/connections/"+x.id+"?reason=r-conn", "", http.StatusNoContent)
	mustREST(t, n[2], http.MethodPost, "/users/yu/:closeConnections?reason=r-user", "", http.StatusNoContent)
	mustREST(t, n[2], http.MethodPost, "/groups/doomed/:closeConnections?reason=r-group", "", http.StatusNoContent)
	for _, tc := range []struct {
		c      *wpsClient
		reason string
	}{{x, "r-conn"}, {y, "r-user"}, {z, "r-group"}} {
		m := tc.c.next()
		if m["event"] != "disconnected" || m["message"] != tc.reason {
			t.Errorf("got %v, want disconnected with %q", m, tc.reason)
		}
		for range tc.c.msgs { // the socket ends
		}
	}
	mustREST(t, n[2], http.MethodPost, "/:send", `"end"`, http.StatusAccepted)
	keep.expect("a connection nobody closed", nil)
}

// TestClusterClientSendToGroup: a client's sendToGroup on node a reaches the
// group's members on b and c; with noEcho the sender does not get it.
func TestClusterClientSendToGroup(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	sender := dialWPS(t, n[0], "s", "g")
	mb := dialWPS(t, n[1], "mb", "g")
	mc := dialWPS(t, n[2], "mc", "g")
	sender.ws.WriteText([]byte(`{"type":"sendToGroup","group":"g","dataType":"text","data":"echo"}`))
	sender.ws.WriteText([]byte(`{"type":"sendToGroup","group":"g","dataType":"text","data":"no-echo","noEcho":true}`))
	sender.ws.WriteText([]byte(`{"type":"sendToGroup","group":"g","dataType":"text","data":"end"}`))
	sender.expect("sender (node a)", []string{"echo"})
	mb.expect("member on b", []string{"echo", "no-echo"})
	mc.expect("member on c", []string{"echo", "no-echo"})
}

// TestClusterNATSOutage: with NATS down a REST send answers 503
// Error.Cluster.Unavailable and nothing is delivered; clients stay
// connected; once NATS is back on its port, sends are delivered again
// without a restart.
func TestClusterNATSOutage(t *testing.T) {
	ns := natstest.Start(t, 0)
	port := ns.Port()
	n := startCluster(t, ns.URL(), "a", "b")
	watch := dialWPS(t, n[1], "w")
	mustREST(t, n[0], http.MethodPost, "/:send", `"before"`, http.StatusAccepted)
	if d := watch.data(); d != "before" {
		t.Fatalf("got %q", d)
	}
	ns.Stop()
	var code string
	var body []byte
	accepted := map[string]bool{} // sends NATS took before the node saw it go
	i := 0
	eventually.True(t, "a send while NATS is down is refused", 10*time.Second, func() bool {
		i++
		d := fmt.Sprintf("lost%d", i)
		resp, b := wpsREST(t, n[0], http.MethodPost, "/:send", `"`+d+`"`)
		code, body = resp.Header.Get("x-ms-error-code"), b
		accepted[d] = resp.StatusCode == http.StatusAccepted
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	if code != "Error.Cluster.Unavailable" || !strings.Contains(string(body), "NATS") {
		t.Errorf("503 with code %q, body %s", code, body)
	}
	natstest.Start(t, port)
	// Poll: the nodes resubscribe on reconnect, so the first sends after
	// NATS is back may go before b listens again.
	eventually.True(t, "a send after NATS came back reaches the client that stayed connected", 30*time.Second, func() bool {
		resp, _ := wpsREST(t, n[0], http.MethodPost, "/:send", `"after"`)
		if resp.StatusCode != http.StatusAccepted {
			return false
		}
		for {
			select {
			case m, ok := <-watch.msgs:
				if !ok {
					t.Fatal("the client was disconnected")
				}
				d, _ := m["data"].(string)
				if d == "after" {
					return true
				}
				if !accepted[d] {
					t.Fatalf("the client got %q, whose send was refused", d)
				}
			case <-time.After(100 * time.Millisecond):
				return false
			}
		}
	})
}

func TestClusterDuplicateNodeIDRefused(t *testing.T) {
	ns := natstest.Start(t, 0)
	startCluster(t, ns.URL(), "twin")
	cfg, err := config.Load("", nil, []string{"server.addr=127.0.0.1:0", "signalr.addr=127.0.0.1:0", "server.data_dir=" + t.TempDir(),
		"cluster.nats_url=" + ns.URL(), "server.node_id=twin", "auth.access_keys=" + clusterKey})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		srv.Close()
	}
	if err == nil || !strings.Contains(err.Error(), `"twin"`) || !strings.Contains(err.Error(), "node id") {
		t.Fatalf("second node twin: %v, want a duplicate node id error", err)
	}
}

func TestAdminClusterListsNodes(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	dialWPS(t, n[1], "u")
	adminURL := strings.TrimRight(n[0].Endpoint(), "/") + "/admin/cluster"
	if resp, err := http.Get(adminURL); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a token: %v %v", resp, err)
	}
	var st struct {
		Enabled bool
		NodeID  string `json:"node_id"`
		NATS    struct{ Status string }
		Nodes   []struct {
			NodeID      string `json:"node_id"`
			Connections int
		}
		JetStream struct{ Enabled bool }
	}
	eventually.True(t, "node a lists a, b and c", 20*time.Second, func() bool {
		resp, b := restDo(t, n[0], http.MethodGet, adminURL, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /admin/cluster: %d %s", resp.StatusCode, b)
		}
		st.Nodes = nil
		json.Unmarshal(b, &st)
		return len(st.Nodes) == 3 && st.Nodes[1].Connections == 1
	})
	if !st.Enabled || st.NodeID != "a" || st.NATS.Status != "CONNECTED" || st.JetStream.Enabled ||
		st.Nodes[0].NodeID != "a" || st.Nodes[1].NodeID != "b" || st.Nodes[2].NodeID != "c" {
		t.Errorf("state %+v", st)
	}
}

// TestClusterSignalRSends: SignalR REST sends to all, a group and a user
// through node a reach SignalR clients on b and c.
func TestClusterSignalRSends(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	cb := dialHub(t, n[1], "chat", hubproto.JSON) // user u1
	cc := dialHub(t, n[2], "chat", hubproto.JSON) // user u1
	sr := func(srv *servertest.Server, path string) string {
		return srv.SignalREndpoint() + "/api/hubs/chat" + path + "?api-version=2022-06-01"
	}
	if resp := restCall(t, n[1], http.MethodPut, sr(n[1], "/groups/g/connections/"+cb.id), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("add to group on the conn's node: %d", resp.StatusCode)
	}
	for _, s := range []struct{ path, arg string }{{"/:send", "all"}, {"/groups/g/:send", "group"}, {"/users/u1/:send", "user"}} {
		if resp := restCall(t, n[0], http.MethodPost, sr(n[0], s.path), `{"target":"t","arguments":["`+s.arg+`"]}`); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("%s: %d", s.path, resp.StatusCode)
		}
	}
	for name, tc := range map[string]struct {
		c    *hubClient
		want []string
	}{"b": {cb, []string{"all", "group", "user"}}, "c": {cc, []string{"all", "user"}}} {
		for _, w := range tc.want {
			m := tc.c.next()
			if m.Kind != hubproto.Invocation || m.Target != "t" || !strings.Contains(string(m.Raw), `"`+w+`"`) {
				t.Errorf("node %s: got %s, want the %s send", name, m.Raw, w)
			}
		}
	}
}

// TestClusterSignalRClientCalls: :invoke and the stream routes through node a reach a
// client on node b and come back with its answer; a client that goes away before it answers
// fails the invocation with its own code, and an unknown connection of b is a 404.
func TestClusterSignalRClientCalls(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b")
	for _, proto := range []hubproto.Protocol{hubproto.JSON, hubproto.MessagePack} {
		t.Run(proto.Name(), func(t *testing.T) { clientCallsRoundTrip(t, n[0], n[1], proto) })
	}

	invoke := func(id string) (chan *http.Response, func() []byte) {
		url := n[0].SignalREndpoint() + "/api/hubs/chat/connections/" + id + "/:invoke?api-version=2024-12-01"
		done := make(chan *http.Response, 1)
		var body []byte
		go func() {
			resp, b := restDo(t, n[0], http.MethodPost, url, `{"target":"ask","arguments":[]}`)
			body = b
			done <- resp
		}()
		return done, func() []byte { return body }
	}
	leaving := dialHub(t, n[1], "chat", hubproto.JSON)
	done, body := invoke(leaving.id)
	if inv := leaving.next(); inv.Kind != hubproto.Invocation || !strings.HasPrefix(inv.InvocationID, "a.") {
		t.Fatalf("invocation %+v: want one with node a's id", inv)
	}
	leaving.ws.Close()
	select {
	case resp := <-done:
		if resp.StatusCode != http.StatusInternalServerError || resp.Header.Get("x-ms-error-code") != "Error.Invocation.ConnectionClosed" {
			t.Errorf("client gone: %d %s %s, want 500 Error.Invocation.ConnectionClosed", resp.StatusCode, resp.Header.Get("x-ms-error-code"), body())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer once the client left")
	}

	done, body = invoke("b_nobody")
	resp := <-done
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("x-ms-error-code") != "Error.Connection.NotExisted" {
		t.Errorf("unknown conn of b: %d %s %s", resp.StatusCode, resp.Header.Get("x-ms-error-code"), body())
	}
	stream := n[0].SignalREndpoint() + "/api/hubs/chat/connections/b_nobody/streams/s/:send?api-version=2024-12-01"
	if resp := restCall(t, n[0], http.MethodPost, stream, `1`); resp.StatusCode != http.StatusNotFound {
		t.Errorf("stream to an unknown conn of b: %d", resp.StatusCode)
	}
}
