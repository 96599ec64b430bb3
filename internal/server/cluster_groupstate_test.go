package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// send writes a JSON request.
func (c *wpsClient) send(req string) {
	c.t.Helper()
	c.ws.WriteText([]byte(req))
}

// nextOf returns the next message of type typ, failing on any other.
func (c *wpsClient) nextOf(typ string) map[string]any {
	c.t.Helper()
	m := c.next()
	if m["type"] != typ {
		c.t.Fatalf("got %v, want a %s", m, typ)
	}
	return m
}

// ackOf checks that the next message is the ack of id with error name
// errName ("" for success).
func (c *wpsClient) ackOf(id int, errName string) {
	c.t.Helper()
	m := c.nextOf("ack")
	e, _ := m["error"].(map[string]any)
	name, _ := e["name"].(string)
	if int(m["ackId"].(float64)) != id || name != errName || (errName == "") != (m["success"] == true) {
		c.t.Fatalf("got %v, want ack %d with error %q", m, id, errName)
	}
}

// items renders a group state frame's items as "conn-owner:state".
func items(t *testing.T, m map[string]any, names map[string]string) string {
	t.Helper()
	var out []string
	for _, x := range m["items"].([]any) {
		it := x.(map[string]any)
		st, _ := json.Marshal(it["state"])
		if it["state"] == nil {
			st = []byte("-")
		}
		if _, ok := it["updatedAt"].(float64); !ok {
			t.Fatalf("item without updatedAt: %v", it)
		}
		out = append(out, fmt.Sprintf("%s/%v:%s", names[it["connectionId"].(string)], it["userId"], st))
	}
	return strings.Join(out, " ")
}

// TestClusterGroupState: members on three nodes set their state, a member
// subscribes and gets the snapshot of all of them, then each change,
// leave and disconnect (a cleared item); the permission and limit
// failures are error acks.
func TestClusterGroupState(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	a := dialWPS(t, n[0], "ann", "room")
	b := dialWPS(t, n[1], "bob", "room")
	c := dialWPS(t, n[2], "cat", "room")
	names := map[string]string{a.id: "a", b.id: "b", c.id: "c"}

	b.send(`{"type":"setGroupState","group":"room","state":{"status":"typing"},"ackId":1}`)
	b.ackOf(1, "")
	c.send(`{"type":"setGroupState","group":"room","state":{"status":"away","mood":"ok"},"ackId":1}`)
	c.ackOf(1, "")

	a.send(`{"type":"subscribeGroupState","group":"room","ackId":1}`)
	a.ackOf(1, "")
	snap := a.nextOf("groupStateSnapshot")
	want := map[string]string{b.id: `b/bob:{"status":"typing"}`, c.id: `c/cat:{"mood":"ok","status":"away"}`}
	wantSnap := want[b.id] + " " + want[c.id]
	if b.id > c.id {
		wantSnap = want[c.id] + " " + want[b.id]
	}
	if snap["group"] != "room" || items(t, snap, names) != wantSnap {
		t.Fatalf("snapshot %v, want %s", snap, wantSnap)
	}

	b.send(`{"type":"setGroupState","group":"room","state":{"status":"idle"},"ackId":2}`)
	b.ackOf(2, "")
	if got := items(t, a.nextOf("groupStateUpdate"), names); got != `b/bob:{"status":"idle"}` {
		t.Fatalf("b's change: %s", got)
	}
	b.send(`{"type":"setGroupState","group":"room","ackId":3}`) // cleared
	b.ackOf(3, "")
	if got := items(t, a.nextOf("groupStateUpdate"), names); got != `b/bob:-` {
		t.Fatalf("b's clear: %s", got)
	}
	c.send(`{"type":"leaveGroup","group":"room","ackId":2}`)
	c.ackOf(2, "")
	if got := items(t, a.nextOf("groupStateUpdate"), names); got != `c/cat:-` {
		t.Fatalf("c left: %s", got)
	}
	b.send(`{"type":"setGroupState","group":"room","state":{"status":"back"},"ackId":4}`)
	b.ackOf(4, "")
	if got := items(t, a.nextOf("groupStateUpdate"), names); got != `b/bob:{"status":"back"}` {
		t.Fatalf("b back: %s", got)
	}
	b.ws.Close()
	if got := items(t, a.nextOf("groupStateUpdate"), names); got != `b/bob:-` {
		t.Fatalf("b disconnected: %s", got)
	}

	// Failures: not a member, bad states, no permission to send.
	for i, req := range []string{
		`{"type":"setGroupState","group":"elsewhere","state":{"a":"b"},"ackId":%d}`,
		`{"type":"subscribeGroupState","group":"elsewhere","ackId":%d}`,
	} {
		c.send(fmt.Sprintf(req, 10+i))
		c.ackOf(10+i, "Forbidden")
	}
	for i, st := range []string{`{"a":1}`, `"x"`, `{"":"v"}`, `{"k":"` + strings.Repeat("v", 1100) + `"}`} {
		a.send(fmt.Sprintf(`{"type":"setGroupState","group":"room","state":%s,"ackId":%d}`, st, 20+i))
		a.ackOf(20+i, "BadRequest")
	}
	reader := dialWPSRoles(t, n[0], "rita", []string{"webpubsub.joinLeaveGroup"}, "room")
	reader.send(`{"type":"setGroupState","group":"room","state":{"a":"b"},"ackId":1}`)
	reader.ackOf(1, "Forbidden")
	a.send(`{"type":"unsubscribeGroupState","group":"room","ackId":30}`)
	a.ackOf(30, "")
}

// TestClusterGroupStateOutlivesABlip: a reliable member's entry stays
// while it drops and recovers (through another node), and goes, announced
// as cleared, only when a drop outlasts its recovery window.
func TestClusterGroupStateOutlivesABlip(t *testing.T) {
	ns := natstest.Start(t, 0)
	var n []*servertest.Server
	for _, id := range []string{"a", "b"} {
		n = append(n, servertest.Start(t, servertest.Options{Settings: []string{"cluster.nats_url=" + ns.URL(), "server.node_id=" + id,
			"auth.access_keys=" + clusterKey, "reliable.recovery_window=1s"}}))
	}
	r := dialReliable(t, n[0], "room")
	r.ws.WriteText([]byte(`{"type":"setGroupState","group":"room","state":{"s":"here"},"ackId":1}`))
	r.receive(func() bool { return r.acks[1] })
	w := dialWPS(t, n[1], "watcher", "room")
	w.send(`{"type":"subscribeGroupState","group":"room","ackId":1}`)
	w.ackOf(1, "")
	if got := items(t, w.nextOf("groupStateSnapshot"), map[string]string{r.id: "r"}); got != `r/rel:{"s":"here"}` {
		t.Fatalf("snapshot %s", got)
	}
	r.recoverOn(n[1]) // a blip: dropped, back within the window on the other node
	r.ws.WriteText([]byte(`{"type":"sendToGroup","group":"room","dataType":"text","data":"back","ackId":2}`))
	if m := w.next(); m["type"] != "message" || m["data"] != "back" {
		t.Fatalf("after the blip the watcher got %v, want r's message (and no cleared entry)", m)
	}
	r.ws.Close() // gone for good
	if got := items(t, w.nextOf("groupStateUpdate"), map[string]string{r.id: "r"}); got != `r/rel:-` {
		t.Fatalf("after the window: %s", got)
	}
}
