package webpubsub

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPresenceEndpoints: the users of a group and of a hub, paged with
// nextLinks, with connection counts; the hub's counts; a server token is
// required; bad paging is 400.
func TestPresenceEndpoints(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.connect("chat", "ann", "room")
	e.connect("chat", "ann", "room", "lobby")
	e.connect("chat", "bob", "room")
	e.connect("chat", "", "room")
	e.connect("chat", "carl", "lobby")

	type page struct {
		Value []struct {
			UserID      string `json:"userId"`
			Connections int    `json:"connections"`
		} `json:"value"`
		NextLink string `json:"nextLink"`
	}
	list := func(first string) (got []string, pages int) {
		t.Helper()
		for next := first; next != ""; pages++ {
			res := e.do(request{method: "GET", target: next})
			if res.status != 200 || res.header.Get("Content-Type") != "application/json; charset=utf-8" {
				t.Fatalf("GET %s: %d %s", next, res.status, res.body)
			}
			var p page
			if err := json.Unmarshal([]byte(res.body), &p); err != nil {
				t.Fatal(err)
			}
			for _, v := range p.Value {
				got = append(got, v.UserID+":"+string(rune('0'+v.Connections)))
			}
			next = p.NextLink
			if pages > 10 {
				t.Fatal("paging does not end")
			}
		}
		return got, pages
	}
	if got, pages := list("/api/hubs/chat/groups/room/users?api-version=2024-12-01&maxpagesize=1"); strings.Join(got, " ") != "ann:2 bob:1" || pages != 2 {
		t.Errorf("room: %v in %d pages", got, pages)
	}
	if got, _ := list("/api/hubs/chat/groups/room/users?top=1"); strings.Join(got, " ") != "ann:2" {
		t.Errorf("room, top=1: %v", got)
	}
	if got, _ := list("/api/hubs/Chat/users"); strings.Join(got, " ") != "ann:2 bob:1 carl:1" {
		t.Errorf("hub: %v", got)
	}
	if got, _ := list("/api/hubs/nobody/groups/none/users"); len(got) != 0 {
		t.Errorf("unknown hub: %v", got)
	}

	res := e.do(request{method: "GET", target: "/api/hubs/chat/presence?api-version=2024-12-01"})
	if res.status != 200 || res.body != `{"hub":"chat","connections":5,"users":3,"groups":2,"approximate":false}` {
		t.Errorf("presence: %d %s", res.status, res.body)
	}
	if res := e.do(request{method: "GET", target: "/api/hubs/chat/presence", token: "-"}); res.status != 401 {
		t.Errorf("presence without a token: %d", res.status)
	}
	if res := e.do(request{method: "GET", target: "/api/hubs/chat/users?continuationToken=!!"}); res.status != 400 {
		t.Errorf("bad continuationToken: %d %s", res.status, res.body)
	}
	if res := e.do(request{method: "GET", target: "/api/hubs/chat/groups/room/users?maxpagesize=0"}); res.status != 400 {
		t.Errorf("bad maxpagesize: %d %s", res.status, res.body)
	}
}
