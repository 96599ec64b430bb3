package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// presence measures what joins and leaves cost: Conns clients, client i of user
// "user<i % Users>", in no group; each REST publisher adds a random user to a random one of
// Groups groups (PUT …/users/{user}/groups/{group}) and removes it again (DELETE), Messages
// times. A server with presence on (hubs.<hub>.presence_notify matching the groups, or an
// event handler taking group_presence_events) does its presence work on each of them; run it
// against one with presence off for the comparison. Latency is the REST call's; the clients
// count the member notifications they get.
func (r *runner) presence(ctx context.Context, res *RunResult) error {
	U := min(r.o.Users, r.o.Conns)
	specs := make([]ConnSpec, r.o.Conns)
	for i := range specs {
		user := fmt.Sprintf("user%d", i%U)
		specs[i] = ConnSpec{ID: i, User: user, Key: user}
	}
	if err := r.connect(ctx, specs, false, res); err != nil {
		return err
	}
	notified := func() int64 {
		var n int64
		r.all(ctx, func(int) Request { return Request{Op: "stats"} }, func(_ int, resp Response) { n += resp.Presence })
		return n
	}
	r.phase.Store("publish")
	return r.measure(ctx, res, func() error {
		before := notified()
		hist := newHist()
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := time.Now()
		var done int64
		for p := range r.o.Publishers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := newHist()
				rnd := rand.New(rand.NewPCG(uint64(p), 7))
				var rc restConn
				defer rc.close()
				n := 0
				for i := 0; i < r.o.Messages && ctx.Err() == nil; i++ {
					u := r.onNode(p, r.membershipURL(fmt.Sprintf("user%d", rnd.IntN(U)), fmt.Sprintf("presence%d", rnd.IntN(r.o.Groups))))
					for _, method := range []string{http.MethodPut, http.MethodDelete} {
						t0 := time.Now()
						if err := r.restDo(ctx, &rc, method, u); err != nil {
							continue
						}
						h.RecordValue(max(time.Since(t0).Microseconds(), 1))
						n++
					}
				}
				mu.Lock()
				hist.Merge(h)
				done += int64(n)
				mu.Unlock()
			}()
		}
		wg.Wait()
		res.Duration = time.Since(start).Seconds()
		if res.Duration > 0 {
			res.OpsPerSec = float64(done) / res.Duration
		}
		res.Latency = latencyOf(hist)
		time.Sleep(200 * time.Millisecond) // the last notifications
		res.Notifications = notified() - before
		if done == 0 {
			return fmt.Errorf("bench: no join or leave succeeded (%v)", r.sendErrors)
		}
		return nil
	})
}

// membershipURL is the Web PubSub REST call that adds user to group (PUT) or removes it
// (DELETE).
func (r *runner) membershipURL(user, group string) string {
	return r.endpoint + "/api/hubs/" + url.PathEscape(r.o.Hub) + "/users/" + url.PathEscape(user) + "/groups/" + url.PathEscape(group) + "?api-version=2024-12-01"
}

// restDo makes a bodiless REST call that must answer 200 or 204.
func (r *runner) restDo(ctx context.Context, rc *restConn, method, u string) error {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.serverToken(u))
	resp, err := rc.do(ctx, req)
	if err != nil {
		r.countSendError(reason(err))
		return err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		r.countSendError("http " + resp.Status)
		return fmt.Errorf("%s", resp.Status)
	}
	r.sent.Add(1)
	return nil
}
