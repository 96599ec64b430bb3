package server_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// TestClusterGroupStream: on a three-node cluster a stream opened by a
// client of a reaches the group's members on b and c with its fragments'
// stream places, in order, and its end.
func TestClusterGroupStream(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	rb, rc := dialWPS(t, n[1], "rb", "g"), dialWPS(t, n[2], "rc", "g")
	tx := dialWPS(t, n[0], "tx")
	tx.ws.WriteText([]byte(`{"type":"sendToGroup","group":"g","noEcho":true,"stream":{"streamId":"s"}}`))
	if m := tx.next(); m["type"] != "streamAck" || m["expectedSequenceId"] != 1.0 {
		t.Fatalf("open: %v", m)
	}
	for i := 1; i <= 20; i++ {
		tx.ws.WriteText([]byte(`{"type":"streamData","streamId":"s","streamSequenceId":` + itoa(i) + `,"dataType":"text","data":"` + itoa(i) + `"}`))
		if m := tx.next(); m["type"] != "streamAck" || m["expectedSequenceId"] != float64(i+1) {
			t.Fatalf("fragment %d: %v", i, m)
		}
	}
	tx.ws.WriteText([]byte(`{"type":"streamEnd","streamId":"s"}`))
	for _, r := range []*wpsClient{rb, rc} {
		var got []string
		for {
			m := r.next()
			st, _ := m["stream"].(map[string]any)
			if st == nil || st["streamId"] != "s" {
				t.Fatalf("%s got %v, want a fragment of stream s", r.id, m)
			}
			if st["endOfStream"] == true {
				if st["streamSequenceId"] != 21.0 {
					t.Fatalf("end %v", m)
				}
				break
			}
			if st["streamSequenceId"] != float64(len(got)+1) {
				t.Fatalf("%s: fragment %v after %d", r.id, st["streamSequenceId"], len(got))
			}
			got = append(got, m["data"].(string))
		}
		if len(got) != 20 || got[0] != "1" || got[19] != "20" {
			t.Fatalf("%s got %v", r.id, got)
		}
	}
}

// TestGroupStreamToHistoryGroupRefused: fragments are not kept in history,
// so a stream to a group that keeps history is refused (the client sends
// such messages with sendToGroup).
func TestGroupStreamToHistoryGroupRefused(t *testing.T) {
	srv := servertest.Start(t, servertest.Options{ConfigFile: historyConfig(t)})
	tx := dialWPS(t, srv, "tx")
	tx.ws.WriteText([]byte(`{"type":"sendToGroup","group":"room:1","stream":{"streamId":"h"}}`))
	b, _ := json.Marshal(tx.next())
	if !strings.Contains(string(b), `"type":"streamClosed"`) || !strings.Contains(string(b), `keeps history`) {
		t.Fatalf("got %s, want streamClosed naming the history", b)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }
