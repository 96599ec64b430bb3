package signalr_test

import (
	"net/http"
	"testing"
)

// TestCallsOnAHubNobodyUsesMakeNone: the calls that can answer without a
// hub (sends nobody receives, existence checks, listings, removals, closes)
// answer as for an empty hub and make none; on main every call made its hub.
// A user–group tag is hub state: it makes the hub.
func TestCallsOnAHubNobodyUsesMakeNone(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, rq := range []struct {
		method, target, body string
		want                 int
	}{
		{"POST", "/api/hubs/ghost/:send?api-version=2022-06-01", invocation, http.StatusAccepted},
		{"POST", "/api/v1/hubs/ghost/groups/g", invocation, http.StatusAccepted},
		{"HEAD", "/api/hubs/ghost/connections/c1", "", http.StatusNotFound},
		{"HEAD", "/api/hubs/ghost/users/u1", "", http.StatusNotFound},
		{"HEAD", "/api/hubs/ghost/groups/g", "", http.StatusNotFound},
		{"HEAD", "/api/hubs/ghost/users/u1/groups/g", "", http.StatusNotFound},
		{"GET", "/api/hubs/ghost/groups/g/connections?api-version=2024-12-01", "", http.StatusOK},
		{"DELETE", "/api/hubs/ghost/users/u1/groups/g", "", http.StatusNoContent},
		{"DELETE", "/api/hubs/ghost/users/u1/groups", "", http.StatusNoContent},
		{"DELETE", "/api/hubs/ghost/connections/c1", "", http.StatusOK},
		{"POST", "/api/hubs/ghost/:closeConnections", "", http.StatusNoContent},
		{"PUT", "/api/hubs/ghost/users/u1/groups/g?ttl=0", "", http.StatusOK}, // ttl=0: no tag kept
		{"POST", "/api/hubs/ghost/:execute", `[{"type":"JoinGroup","group":"g"}]`, http.StatusAccepted},
	} {
		if r := e.req(rq.method, rq.target, rq.body); r.status != rq.want {
			t.Fatalf("%s %s: %d %s, want %d", rq.method, rq.target, r.status, r.body, rq.want)
		}
	}
	if hubs := e.node.Hubs(); len(hubs) != 0 {
		t.Fatalf("calls on a hub nobody uses made %v", hubs)
	}
	if r := e.req("PUT", "/api/hubs/ghost/users/u1/groups/g?ttl=60", ""); r.status != http.StatusOK {
		t.Fatalf("tag: %d %s", r.status, r.body)
	}
	if hubs := e.node.Hubs(); len(hubs) != 1 {
		t.Fatalf("a tag with a ttl kept no hub: %v", hubs)
	}
	if r := e.req("HEAD", "/api/hubs/ghost/users/u1/groups/g", ""); r.status != http.StatusOK {
		t.Fatalf("tagged user not in group: %d", r.status)
	}
}
