package server_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/switchboardhq/switchboard/internal/natstest"
)

// TestClusterGroupChangesWaitForEarlierSends: sends to a group accepted by
// node a, then the removal through a of a conn from the group (a conn on b:
// a request to b; one on a: run there; a user with a conn on c: a request
// to every node), then more sends: each removed conn gets every send
// accepted before the removal's answer and none after, round after round.
// Before requests waited for the ops their node published before them
// (cluster/order.go), the removal often ran on b, c, even a, before the
// last sends were delivered there, and the conn missed them.
func TestClusterGroupChangesWaitForEarlierSends(t *testing.T) {
	ns := natstest.Start(t, 0)
	n := startCluster(t, ns.URL(), "a", "b", "c")
	waitForView(t, n)
	onB := dialWPS(t, n[1], "bea")
	onA := dialWPS(t, n[0], "abe")
	onC := dialWPS(t, n[2], "zed")
	stays := dialWPS(t, n[2], "cy", "g")

	const rounds, before, after = 15, 20, 3
	var want, all []string
	for r := range rounds {
		mustREST(t, n[0], http.MethodPut, "/groups/g/connections/"+onB.id, "", http.StatusOK)
		mustREST(t, n[0], http.MethodPut, "/groups/g/connections/"+onA.id, "", http.StatusOK)
		mustREST(t, n[0], http.MethodPut, "/users/zed/groups/g", "", http.StatusOK)
		for i := range before {
			d := fmt.Sprintf("r%d-%d", r, i)
			want, all = append(want, d), append(all, d)
			mustREST(t, n[0], http.MethodPost, "/groups/g/:send", `"`+d+`"`, http.StatusAccepted)
		}
		mustREST(t, n[0], http.MethodDelete, "/groups/g/connections/"+onB.id, "", http.StatusNoContent)
		mustREST(t, n[0], http.MethodDelete, "/groups/g/connections/"+onA.id, "", http.StatusNoContent)
		mustREST(t, n[0], http.MethodDelete, "/users/zed/groups/g", "", http.StatusNoContent)
		for i := range after {
			d := fmt.Sprintf("r%d-after-%d", r, i)
			all = append(all, d)
			mustREST(t, n[0], http.MethodPost, "/groups/g/:send", `"`+d+`"`, http.StatusAccepted)
		}
	}
	mustREST(t, n[0], http.MethodPost, "/:send", `"end"`, http.StatusAccepted)
	onB.expect("conn on b, removed through a", want)
	onA.expect("conn on a, removed through a", want)
	onC.expect("user's conn on c, removed through a", want)
	stays.expect("member on c", all)
}
