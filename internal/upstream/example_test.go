package upstream_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/upstream"
)

// A backend that rejects user "mallory" and puts everyone else in group "lobby".
func ExampleClient_Connect() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions { // abuse protection
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		if r.Header.Get("ce-userId") == "mallory" {
			http.Error(w, "banned", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"groups":["lobby"]}`)
	}))
	defer backend.Close()

	keys, _ := auth.NewKeyRing("access-key")
	c, err := upstream.New(upstream.Config{
		Keys:   keys,
		Origin: "localhost",
		Handlers: func(hub string) []upstream.Handler {
			return []upstream.Handler{{URLTemplate: backend.URL + "/api/{hub}/{event}", SystemEvents: []string{"connect"}}}
		},
	})
	if err != nil {
		panic(err)
	}
	defer c.Close(context.Background())

	for _, user := range []string{"alice", "mallory"} {
		resp, err := c.Connect(context.Background(), upstream.ConnectRequest{
			Conn: upstream.Conn{Hub: "chat", ID: "conn-" + user, UserID: user},
		})
		var reject *upstream.RejectError
		switch {
		case errors.As(err, &reject):
			fmt.Printf("%s: reject the handshake with %d %q\n", user, reject.Status, reject.Reason)
		case errors.Is(err, upstream.ErrNoHandler):
			fmt.Printf("%s: accept with the token's values\n", user)
		case err != nil:
			fmt.Printf("%s: answer 500: %v\n", user, err)
		default:
			fmt.Printf("%s: accept, join %v\n", user, resp.Groups)
		}
	}
	// Output:
	// alice: accept, join [lobby]
	// mallory: reject the handshake with 401 "banned"
}
