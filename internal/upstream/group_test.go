package upstream

import (
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

// TestGroupPresenceEvents checks the wire form of joined and left (ce-type
// azure.webpubsub.gp.*, ce-eventName, body {"group":…}, the connection's
// headers and signature), their order with the connection's other events,
// and that a 500 is retried without letting a later event overtake.
func TestGroupPresenceEvents(t *testing.T) {
	t.Parallel()
	var fails atomic.Int32
	fails.Store(1)
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.Header.Get("ce-eventName") == EventJoined && fails.Add(-1) >= 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	h := Handler{URLTemplate: b.URL + "/ev/{event}", SystemEvents: []string{EventConnected, EventDisconnected},
		GroupPresenceEvents: []string{"Joined", "left"}}
	c, reg := newClient(t, Config{Handlers: handlers(h)})
	if !c.ObservesGroups("chat") {
		t.Fatal("ObservesGroups = false with a handler taking joined and left")
	}
	conn := testConn
	conn.State = "st"
	c.Connected(conn)
	c.GroupJoined(conn, `room "1"`)
	c.GroupLeft(conn, `room "1"`)
	c.Disconnected(conn, "bye")

	eventually.Nil(t, 10*time.Second, func() error {
		if n := len(b.gotPosts()); n != 5 {
			return fmt.Errorf("%d posts, want 5 (one joined retried)", n)
		}
		return nil
	})
	var got []string
	for _, p := range b.gotPosts() {
		got = append(got, p.header.Get("ce-type")+" "+p.path+" "+string(p.body))
	}
	want := []string{
		"azure.webpubsub.sys.connected /ev/connected {}",
		`azure.webpubsub.gp.joined /ev/joined {"group":"room \"1\""}`,
		`azure.webpubsub.gp.joined /ev/joined {"group":"room \"1\""}`,
		`azure.webpubsub.gp.left /ev/left {"group":"room \"1\""}`,
		`azure.webpubsub.sys.disconnected /ev/disconnected {"reason":"bye"}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("posts:\n%q\nwant\n%q", got, want)
	}
	keys := testKeys(t)
	for _, p := range b.gotPosts()[1:4] {
		hd := p.header
		for k, v := range map[string]string{"ce-hub": "chat", "ce-connectionId": "conn-1", "ce-userId": "alice",
			"ce-subprotocol": "json.webpubsub.azure.v1", "ce-connectionState": "st", "ce-specversion": "1.0",
			"Content-Type": "application/json", "WebHook-Request-Origin": testOrigin} {
			if got := hd.Get(k); got != v {
				t.Errorf("%s: %s = %q, want %q", hd.Get("ce-type"), k, got, v)
			}
		}
		if name := hd.Get("ce-eventName"); name != EventJoined && name != EventLeft {
			t.Errorf("ce-eventName = %q", name)
		}
		if !keys.CheckSignature("conn-1", hd.Get("ce-signature")) {
			t.Errorf("%s: ce-signature %q does not verify", hd.Get("ce-type"), hd.Get("ce-signature"))
		}
	}
	m, _ := newMetrics(reg, protoWebPubSub)
	if n := counter(m.retries.WithLabelValues(kindJoined)); n != 1 {
		t.Errorf("retries_total{event=joined} = %v, want 1", n)
	}
	if n := counter(m.requests.WithLabelValues(kindLeft, "204")); n != 1 {
		t.Errorf("requests_total{event=left,status=204} = %v, want 1", n)
	}
}

// TestGroupPresenceOptIn checks that a handler without group_presence_events
// gets none, that the first handler taking an event gets it, and that
// Validate refuses an unknown name.
func TestGroupPresenceOptIn(t *testing.T) {
	t.Parallel()
	b1 := newBackend(t, nil)
	b2 := newBackend(t, nil)
	h1 := b1.handler("/")
	h2 := Handler{URLTemplate: b2.URL + "/", GroupPresenceEvents: []string{EventLeft}}
	c, _ := newClient(t, Config{Handlers: handlers(h1, h2)})
	c.GroupJoined(testConn, "g") // nobody takes joined
	c.GroupLeft(testConn, "g")
	c.Connected(testConn) // to b1, after left in the queue
	eventually.Nil(t, 10*time.Second, func() error {
		if len(b1.gotPosts()) != 1 || len(b2.gotPosts()) != 1 {
			return fmt.Errorf("posts: %d to the first handler, %d to the second; want 1 and 1", len(b1.gotPosts()), len(b2.gotPosts()))
		}
		return nil
	})
	if got := b2.gotPosts()[0].header.Get("ce-type"); got != "azure.webpubsub.gp.left" {
		t.Errorf("second handler got %q", got)
	}
	c2, _ := newClient(t, Config{Handlers: handlers(h1)})
	if c2.ObservesGroups("chat") {
		t.Error("ObservesGroups = true without a handler taking group presence events")
	}
	if err := (Handler{URLTemplate: "http://x/", GroupPresenceEvents: []string{"joined", "moved"}}).Validate(); err == nil {
		t.Error("Validate accepted group presence event \"moved\"")
	}
}
