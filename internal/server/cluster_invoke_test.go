package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/natstest"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
)

// invokeBackend answers every user event with "<node that sent it>:<body>"
// as text; the node is the prefix of the connection id.
func invokeBackend(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.Header().Set("WebHook-Allowed-Origin", "*")
		return
	}
	body, _ := io.ReadAll(r.Body)
	if !strings.HasPrefix(r.Header.Get("ce-type"), "azure.webpubsub.user.") {
		return
	}
	node, _, _ := strings.Cut(r.Header.Get("ce-connectionId"), "_")
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "%s:%s", node, body)
}

// TestClusterInvoke: on a three-node cluster, a client of node b invokes
// and gets its handler's answer; a reliable client whose session is on a
// and whose socket reached c (relayed) invokes through the relay: a sends
// the event and the answer comes back through c, sequenced.
func TestClusterInvoke(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(invokeBackend))
	defer hs.Close()
	file := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(file, []byte(fmt.Sprintf("hubs:\n  chat:\n    event_handlers:\n      - url_template: %q\n        user_events: [\"*\"]\n",
		hs.URL+"/{hub}/{event}")), 0o600)
	ns := natstest.Start(t, 0)
	var n []*servertest.Server
	for _, id := range []string{"a", "b", "c"} {
		n = append(n, servertest.Start(t, servertest.Options{ConfigFile: file, Settings: []string{
			"cluster.nats_url=" + ns.URL(), "server.node_id=" + id, "auth.access_keys=" + clusterKey}}))
	}

	b := dialWPS(t, n[1], "u")
	if !strings.HasPrefix(b.id, "b_") {
		t.Fatalf("conn id %q is not b's", b.id)
	}
	b.ws.WriteText([]byte(`{"type":"invoke","invocationId":"1","target":"event","event":"ask","dataType":"text","data":"hi"}`))
	got, _ := json.Marshal(b.next())
	if want := `{"data":"b:hi","dataType":"text","invocationId":"1","success":true,"type":"invokeResponse"}`; string(got) != want {
		t.Fatalf("client of b got %s, want %s", got, want)
	}

	r := dialReliable(t, n[0])
	r.recoverOn(n[2]) // a's session, through c
	r.ws.WriteText([]byte(`{"type":"invoke","invocationId":"r","target":"event","event":"ask","dataType":"json","data":{"q":1}}`))
	for {
		p := r.ws.Read()
		if strings.Contains(string(p), `"type":"system"`) {
			continue
		}
		if want := `{"sequenceId":1,"type":"invokeResponse","invocationId":"r","success":true,"dataType":"text","data":"a:{\"q\":1}"}`; string(p) != want {
			t.Fatalf("relayed reliable client got %s, want %s", p, want)
		}
		break
	}
}
