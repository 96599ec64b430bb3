package signalr_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPresenceEndpoints: the SignalR API answers the same presence reads as
// the Web PubSub API, on both generations of paths.
func TestPresenceEndpoints(t *testing.T) {
	e := newEnv(t, envOptions{})
	h := e.hub("chat")
	for _, u := range []string{"ann", "ann", "bob", ""} {
		c := e.connect("chat", u)
		if err := h.JoinGroup(c.Conn, "room"); err != nil {
			t.Fatal(err)
		}
	}
	e.connect("chat", "carl")

	type page struct {
		Value []struct {
			UserID      string `json:"userId"`
			Connections int    `json:"connections"`
		} `json:"value"`
		NextLink *string `json:"nextLink"`
	}
	var got []string
	pages := 0
	for next := "/api/hubs/chat/groups/room/users?api-version=2024-12-01&maxpagesize=1"; next != ""; pages++ {
		r := e.req("GET", next, "")
		if r.status != 200 {
			t.Fatalf("GET %s: %d %s", next, r.status, r.body)
		}
		var p page
		if err := json.Unmarshal([]byte(r.body), &p); err != nil {
			t.Fatal(err)
		}
		for _, v := range p.Value {
			got = append(got, v.UserID+":"+string(rune('0'+v.Connections)))
		}
		next = ""
		if p.NextLink != nil {
			next = strings.TrimPrefix(*p.NextLink, e.srv.URL)
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if strings.Join(got, " ") != "ann:2 bob:1" || pages != 2 {
		t.Errorf("room: %v in %d pages", got, pages)
	}
	if r := e.req("GET", "/api/v1/hubs/chat/users", ""); r.status != 200 || !strings.Contains(r.body, `{"userId":"carl","connections":1}`) {
		t.Errorf("hub users: %d %s", r.status, r.body)
	}
	if r := e.req("GET", "/api/hubs/chat/presence", ""); r.status != 200 || r.body != `{"hub":"chat","connections":5,"users":3,"groups":1,"approximate":false}` {
		t.Errorf("presence: %d %s", r.status, r.body)
	}
	if r := e.req("GET", "/api/hubs/chat/presence", "", "Authorization", "-"); r.status != 401 {
		t.Errorf("presence without a token: %d", r.status)
	}
}
