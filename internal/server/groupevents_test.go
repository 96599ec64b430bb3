package server_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/eventually"
	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// gpBackend is an event handler that records, per connection, the events it
// gets as "<node> <ce-eventName> <body>" (the node is the first path segment
// of its URL template), checking each signature. The first joined event it
// sees is answered with a 500, so that the server must retry it.
type gpBackend struct {
	keys *auth.KeyRing

	mu       sync.Mutex
	byConn   map[string][]string
	badSig   int
	failed   bool
	badTypes []string
}

func newGPBackend(t *testing.T, keys *auth.KeyRing) (*gpBackend, *httptest.Server) {
	b := &gpBackend{keys: keys, byConn: map[string][]string{}}
	hs := httptest.NewServer(b)
	t.Cleanup(hs.Close)
	return b, hs
}

func (b *gpBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.Header().Set("WebHook-Allowed-Origin", "*")
		return
	}
	body, _ := io.ReadAll(r.Body)
	id, name, typ := r.Header.Get("ce-connectionId"), r.Header.Get("ce-eventName"), r.Header.Get("ce-type")
	node, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.keys.CheckSignature(id, r.Header.Get("ce-signature")) {
		b.badSig++
	}
	switch name {
	case "joined", "left":
		if typ != "azure.webpubsub.gp."+name {
			b.badTypes = append(b.badTypes, typ)
		}
	}
	if name == "connect" {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"groups":["fromhandler"]}`)
		return
	}
	if name == "joined" && !b.failed {
		b.failed = true
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	b.byConn[id] = append(b.byConn[id], node+" "+name+" "+string(body))
	w.WriteHeader(http.StatusNoContent)
}

func (b *gpBackend) events(id string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.byConn[id]...)
}

// waitEvents waits until conn id's last event is last, then returns them all.
func (b *gpBackend) waitEvents(t *testing.T, id, last string) []string {
	t.Helper()
	eventually.Nil(t, 20*time.Second, func() error {
		if ev := b.events(id); len(ev) == 0 || ev[len(ev)-1] != last {
			return fmt.Errorf("events of %s: %q, waiting for %q", id, ev, last)
		}
		return nil
	})
	b.mu.Lock()
	if b.badSig > 0 || len(b.badTypes) > 0 {
		t.Errorf("%d events with a bad signature, bad ce-types %q", b.badSig, b.badTypes)
	}
	b.mu.Unlock()
	return b.events(id)
}

// gpConfig writes a config whose hub chat sends connect, connected,
// disconnected, joined and left to hs under /<node>/.
func gpConfig(t *testing.T, hs *httptest.Server, node string) string {
	file := filepath.Join(t.TempDir(), node+".yaml")
	os.WriteFile(file, []byte(`hubs:
  chat:
    event_handlers:
      - url_template: "`+hs.URL+`/`+node+`/{event}"
        system_events: [connect, connected, disconnected]
        group_presence_events: [joined, left]
`), 0o600)
	return file
}

// checkEvents compares got with want, where a want entry with several
// events separated by "|" matches them in any order.
func checkEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	var flat []string
	i := 0
	ok := true
	for _, w := range want {
		alts := strings.Split(w, "|")
		flat = append(flat, alts...)
		if i+len(alts) > len(got) {
			ok = false
			break
		}
		seg := slices.Clone(got[i : i+len(alts)])
		slices.Sort(seg)
		slices.Sort(alts)
		if !slices.Equal(seg, alts) {
			ok = false
		}
		i += len(alts)
	}
	if !ok || i != len(got) {
		t.Errorf("events:\n  %q\nwant (| = any order):\n  %q", got, flat)
	}
}

func joinedEv(node, g string) string { return node + ` joined {"group":"` + g + `"}` }
func leftEv(node, g string) string   { return node + ` left {"group":"` + g + `"}` }

// TestGroupPresenceEventsEveryPath: token and connect-handler groups, the
// client's joinGroup/leaveGroup, REST add/remove of the connection and of
// its user, :addToGroups/:removeFromGroups with a filter and the disconnect
// each send joined or left once, in order between connected and
// disconnected; joins of a member and leaves of a non-member send nothing;
// a joined answered with a 500 is retried in place.
func TestGroupPresenceEventsEveryPath(t *testing.T) {
	keys, _ := auth.NewKeyRing(clusterKey)
	b, hs := newGPBackend(t, keys)
	srv := servertest.Start(t, servertest.Options{ConfigFile: gpConfig(t, hs, "n"),
		Settings: []string{"auth.access_keys=" + clusterKey}})
	c := dialWPS(t, srv, "u1", "tok")
	ack := func(req string) {
		t.Helper()
		c.ws.WriteText([]byte(req))
		if m := c.next(); m["type"] != "ack" || m["success"] != true {
			t.Fatalf("%s: %v", req, m)
		}
	}
	ack(`{"type":"joinGroup","group":"g1","ackId":1}`)
	ack(`{"type":"joinGroup","group":"g1","ackId":2}`) // a member already
	mustREST(t, srv, http.MethodPut, "/groups/g2/connections/"+c.id, "", http.StatusOK)
	mustREST(t, srv, http.MethodPut, "/users/u1/groups/g3", "", http.StatusOK)
	mustREST(t, srv, http.MethodPost, "/:addToGroups", `{"groups":["g4","g1"],"filter":"userId eq 'u1'"}`, http.StatusOK)
	ack(`{"type":"leaveGroup","group":"g1","ackId":3}`)
	ack(`{"type":"leaveGroup","group":"g1","ackId":4}`) // not a member any more
	mustREST(t, srv, http.MethodDelete, "/groups/g2/connections/"+c.id, "", http.StatusNoContent)
	mustREST(t, srv, http.MethodPost, "/:removeFromGroups", `{"groups":["g3","nope"],"filter":"userId eq 'u1'"}`, http.StatusOK)
	mustREST(t, srv, http.MethodDelete, "/users/u1/groups/g4", "", http.StatusNoContent)
	mustREST(t, srv, http.MethodDelete, "/connections/"+c.id+"?reason=done", "", http.StatusNoContent)

	got := b.waitEvents(t, c.id, `n disconnected {"reason":"done"}`)
	checkEvents(t, got,
		"n connected {}",
		joinedEv("n", "tok")+"|"+joinedEv("n", "fromhandler"),
		joinedEv("n", "g1"), joinedEv("n", "g2"), joinedEv("n", "g3"), joinedEv("n", "g4"),
		leftEv("n", "g1"), leftEv("n", "g2"), leftEv("n", "g3"), leftEv("n", "g4"),
		leftEv("n", "tok")+"|"+leftEv("n", "fromhandler"),
		`n disconnected {"reason":"done"}`)
}

// TestGroupPresenceEventsCluster: REST operations accepted by node a for a
// connection held by node b are applied by b, so b sends their events (its
// handler URL says so), in order, once; a sends none.
func TestGroupPresenceEventsCluster(t *testing.T) {
	ns := natstest.Start(t, 0)
	keys, _ := auth.NewKeyRing(clusterKey)
	b, hs := newGPBackend(t, keys)
	var n []*servertest.Server
	for _, id := range []string{"a", "b"} {
		n = append(n, servertest.Start(t, servertest.Options{ConfigFile: gpConfig(t, hs, id), Settings: []string{
			"cluster.nats_url=" + ns.URL(), "server.node_id=" + id, "auth.access_keys=" + clusterKey}}))
	}
	c := dialWPS(t, n[1], "cu")
	mustREST(t, n[0], http.MethodPut, "/groups/x/connections/"+c.id, "", http.StatusOK)
	mustREST(t, n[0], http.MethodPut, "/users/cu/groups/y", "", http.StatusOK)
	mustREST(t, n[0], http.MethodPost, "/:addToGroups", `{"groups":["z"],"filter":"userId eq 'cu'"}`, http.StatusOK)
	mustREST(t, n[0], http.MethodDelete, "/groups/x/connections/"+c.id, "", http.StatusNoContent)
	mustREST(t, n[0], http.MethodDelete, "/connections/"+c.id+"?reason=bye", "", http.StatusNoContent)
	got := b.waitEvents(t, c.id, `b disconnected {"reason":"bye"}`)
	checkEvents(t, got,
		"b connected {}", joinedEv("b", "fromhandler"), joinedEv("b", "x"), joinedEv("b", "y"), joinedEv("b", "z"),
		leftEv("b", "x"), leftEv("b", "fromhandler")+"|"+leftEv("b", "y")+"|"+leftEv("b", "z"),
		`b disconnected {"reason":"bye"}`)
}

// TestGroupPresenceEventsReliableRecovery: a reliable client that drops its
// socket and recovers within its window sends no left/joined pair; its
// groups are left once, when it ends.
func TestGroupPresenceEventsReliableRecovery(t *testing.T) {
	keys, _ := auth.NewKeyRing(clusterKey)
	b, hs := newGPBackend(t, keys)
	srv := servertest.Start(t, servertest.Options{ConfigFile: gpConfig(t, hs, "n"),
		Settings: []string{"auth.access_keys=" + clusterKey}})
	c := dialReliable(t, srv, "room")
	eventually.Nil(t, 20*time.Second, func() error {
		if ev := b.events(c.id); len(ev) != 3 {
			return fmt.Errorf("events %q, waiting for connected and two joined", ev)
		}
		return nil
	})
	c.recoverOn(srv)
	mustREST(t, srv, http.MethodPost, "/connections/"+c.id+"/:send", `"after"`, http.StatusAccepted)
	c.receive(func() bool { return len(c.got) == 1 })
	mustREST(t, srv, http.MethodDelete, "/connections/"+c.id+"?reason=end", "", http.StatusNoContent)
	got := b.waitEvents(t, c.id, `n disconnected {"reason":"end"}`)
	checkEvents(t, got, "n connected {}", joinedEv("n", "fromhandler")+"|"+joinedEv("n", "room"),
		leftEv("n", "fromhandler")+"|"+leftEv("n", "room"), `n disconnected {"reason":"end"}`)
}
