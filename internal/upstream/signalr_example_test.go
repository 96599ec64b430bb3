package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// An upstream that answers the "add" invocation with a completion and has no function for
// the others; connection events go to the same URL and are acknowledged with 204.
func ExampleSignalRClient_Invoke() {
	keys, _ := auth.NewKeyRing("access-key")
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !keys.CheckSignature(r.Header.Get("X-ASRS-Connection-Id"), r.Header.Get("X-ASRS-Signature")) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		switch r.Header.Get("X-ASRS-Category") + "/" + r.Header.Get("X-ASRS-Event") {
		case "connections/connected", "connections/disconnected":
			w.WriteHeader(http.StatusNoContent)
		case "messages/add":
			fmt.Printf("upstream got %s\n", body)
			fmt.Fprint(w, "{\"type\":3,\"invocationId\":\"0\",\"result\":3}\x1e")
		default:
			http.NotFound(w, r)
		}
	}))
	defer backend.Close()

	c, err := upstream.NewSignalR(upstream.SignalRConfig{
		Keys: keys,
		Upstreams: func(hub string) []upstream.SignalRUpstream {
			return []upstream.SignalRUpstream{{URLTemplate: backend.URL + "/api/{hub}/{category}/{event}"}}
		},
	})
	if err != nil {
		panic(err)
	}
	defer c.Close(context.Background())

	conn := upstream.SignalRConn{Hub: "calc", ID: "conn-1", UserID: "alice"}
	c.Connected(conn) // queued: never blocks
	for _, target := range []string{"add", "sub"} {
		msg := fmt.Sprintf(`{"type":1,"invocationId":"0","target":%q,"arguments":[1,2]}`, target)
		status, body, err := c.Invoke(context.Background(), conn, target, []byte(msg), false)
		switch {
		case errors.Is(err, upstream.ErrNoHandler):
			fmt.Println("no upstream: ignore the invocation")
		case err != nil:
			fmt.Println("Invocation failed:", err)
		case status/100 == 2:
			fmt.Printf("%d: send %q to the client\n", status, body)
		default:
			fmt.Printf("Invocation failed, status code %d\n", status)
		}
	}
	// Output:
	// upstream got {"type":1,"invocationId":"0","target":"add","arguments":[1,2]}
	// 200: send "{\"type\":3,\"invocationId\":\"0\",\"result\":3}\x1e" to the client
	// Invocation failed, status code 404
}
