package server_test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// natsReceived returns the Web PubSub operations srv received from NATS.
func natsReceived(t *testing.T, srv *servertest.Server) float64 {
	t.Helper()
	lines := metricsWith(t, srv, `switchboard_cluster_messages_received_total{namespace="wps"}`)
	if len(lines) != 1 {
		t.Fatalf("metric lines %q", lines)
	}
	f := strings.Fields(lines[0])
	v, err := strconv.ParseFloat(f[len(f)-1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestClusterGroupSendsCrossNATSOnlyToNodesWithMembers: REST sends to a
// group through node a cross NATS to b, which holds the group's two
// members, once each, and not to c, which holds none, nor back to a; every member
// gets each once. A client that joins groups on c with joinGroup gets every
// send through a accepted after its ack.
func TestClusterGroupSendsCrossNATSOnlyToNodesWithMembers(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	m1, m2 := dialWPS(t, n[1], "m1", "g"), dialWPS(t, n[1], "m2", "g")
	other := dialWPS(t, n[2], "o")
	var before [3]float64
	for i := range n {
		before[i] = natsReceived(t, n[i])
	}
	var want []string
	for i := range 20 {
		d := fmt.Sprintf("g%d", i)
		want = append(want, d)
		mustREST(t, n[0], http.MethodPost, "/groups/g/:send", `"`+d+`"`, http.StatusAccepted)
	}
	mustREST(t, n[0], http.MethodPost, "/:send", `"end"`, http.StatusAccepted)
	m1.expect("m1 (node b)", want)
	m2.expect("m2 (node b)", want)
	other.expect("o (node c)", nil)
	for i, w := range []float64{0, 21, 1} { // the broadcast reaches every other node; a delivers its own
		if got := natsReceived(t, n[i]) - before[i]; got != w {
			t.Errorf("node %s received %v operations from NATS, want %v (20 group sends only where members are, once per node, and the broadcast)",
				[]string{"a", "b", "c"}[i], got, w)
		}
	}

	// Joins on c answered to the client, each followed by a send through a.
	want = nil
	var got []string
	for i := range 30 {
		g := fmt.Sprintf("j%d", i)
		other.ws.WriteText([]byte(`{"type":"joinGroup","group":"` + g + `","ackId":` + strconv.Itoa(i+1) + `}`))
		for {
			m := other.next()
			if m["type"] == "message" { // an earlier group's send
				got = append(got, m["data"].(string))
				continue
			}
			if m["type"] != "ack" || m["ackId"] != float64(i+1) || m["success"] != true {
				t.Fatalf("got %v, want the ack of join %d", m, i+1)
			}
			break
		}
		want = append(want, g)
		mustREST(t, n[0], http.MethodPost, "/groups/"+g+"/:send", `"`+g+`"`, http.StatusAccepted)
	}
	mustREST(t, n[0], http.MethodPost, "/:send", `"end"`, http.StatusAccepted)
	for d := other.data(); d != "end"; d = other.data() {
		got = append(got, d)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("o got %q after its joins, want %q", got, want)
	}
}
