package history_test

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestGaplessRecoveryUnderConcurrentPublishers: several REST publishers write
// one history group while subscribers join mid-stream with their last
// offset, and some drop their TCP connection and come back with it. Every
// subscriber must end with the full stream 1…N exactly once, in order, each
// offset carrying the payload its publisher was told (202 + offset header).
func TestGaplessRecoveryUnderConcurrentPublishers(t *testing.T) {
	srv := startServer(t, t.TempDir())
	rest := newREST(srv.Endpoint())
	const publishers, perPublisher, subscribers = 4, 150, 6
	const total = publishers * perPublisher
	const group = "room:gapless"

	var mu sync.Mutex
	sent := map[uint64]string{} // offset → payload, from the 202s
	var published atomic.Int64
	var pubWG sync.WaitGroup
	for p := range publishers {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for i := range perPublisher {
				payload := fmt.Sprintf("p%d-%d", p, i)
				r, err := rest.send(group, payload, "")
				if err != nil || r.status != http.StatusAccepted || r.offset == 0 {
					t.Errorf("send %s: %+v %v", payload, r, err)
					return
				}
				mu.Lock()
				if prev, dup := sent[r.offset]; dup {
					t.Errorf("offset %d given to %s and %s", r.offset, prev, payload)
				}
				sent[r.offset] = payload
				mu.Unlock()
				published.Add(1)
			}
		}()
	}

	type got struct {
		offsets []uint64
		data    []string
	}
	results := make([]got, subscribers)
	var subWG sync.WaitGroup
	for s := range subscribers {
		subWG.Add(1)
		go func() {
			defer subWG.Done()
			rng := rand.New(rand.NewPCG(uint64(s), 7))
			// Join at a random point of the publishing.
			start := int64(rng.IntN(total / 2))
			for published.Load() < start {
				time.Sleep(time.Millisecond)
			}
			res := &results[s]
			var last uint64
			var epoch string
			first := true
			drops := 0
			for last < total {
				c, err := tryDial(t, srv.Endpoint())
				if err != nil {
					t.Errorf("subscriber %d: %v", s, err)
					return
				}
				var from *uint64
				if !first {
					v := last
					from = &v
				} else if s%2 == 0 {
					zero := uint64(0) // from the beginning of the stream
					from = &zero
				}
				if err := c.tryWrite(joinReq(group, 1, from, epoch)); err != nil {
					t.Errorf("subscriber %d: %v", s, err)
					return
				}
				dropAfter := -1
				if s%3 == 0 && drops < 3 {
					dropAfter = 20 + rng.IntN(60) // this one drops and comes back
				}
				n := 0
				for last < total && n != dropAfter {
					f, err := c.tryNext()
					if err != nil {
						t.Errorf("subscriber %d: %v", s, err)
						return
					}
					switch f.Type {
					case "ack":
						if !f.Success || f.Offset == nil {
							t.Errorf("subscriber %d: join ack %+v", s, f)
							return
						}
						if from != nil && (f.Recovered == nil || !*f.Recovered) {
							t.Errorf("subscriber %d: join from %d not recovered: %+v", s, *from, f)
							return
						}
						epoch = f.Epoch
						if first && from == nil {
							// A fresh join starts where the stream stood at the
							// join; live messages may precede the ack.
							if len(res.offsets) == 0 {
								last = *f.Offset
							} else if res.offsets[0] != *f.Offset+1 {
								t.Errorf("subscriber %d: joined at %d, first live message %d", s, *f.Offset, res.offsets[0])
								return
							}
						}
					case "message":
						if f.Offset == nil {
							t.Errorf("subscriber %d: message without offset", s)
							return
						}
						freshStart := first && from == nil && len(res.offsets) == 0 && last == 0
						if *f.Offset != last+1 && !freshStart {
							t.Errorf("subscriber %d: offset %d after %d", s, *f.Offset, last)
							return
						}
						last = *f.Offset
						res.offsets = append(res.offsets, last)
						res.data = append(res.data, textOf(f.Data))
						n++
					}
				}
				first = false
				c.drop()
				drops++
			}
		}()
	}
	pubWG.Wait()
	subWG.Wait()
	if t.Failed() {
		return
	}
	if len(sent) != total {
		t.Fatalf("%d offsets acknowledged, want %d", len(sent), total)
	}
	for s, r := range results {
		if len(r.offsets) == 0 {
			t.Errorf("subscriber %d got nothing", s)
			continue
		}
		// Even subscribers joined from offset 0: they must have everything.
		start := r.offsets[0]
		if s%2 == 0 && start != 1 {
			t.Errorf("subscriber %d joined from 0 but started at %d", s, start)
		}
		for i, off := range r.offsets {
			want := start + uint64(i)
			if off != want {
				t.Fatalf("subscriber %d: message %d has offset %d, want %d (gap or duplicate)", s, i, off, want)
			}
			if r.data[i] != sent[off] {
				t.Fatalf("subscriber %d: offset %d carries %q, the publisher was told %q", s, off, r.data[i], sent[off])
			}
		}
		if last := r.offsets[len(r.offsets)-1]; last != total {
			t.Errorf("subscriber %d ended at %d, want %d", s, last, total)
		}
	}
	// The history holds the same stream.
	h := rest.all(t, group)
	if len(h.Messages) != total {
		t.Fatalf("history has %d messages, want %d", len(h.Messages), total)
	}
	for i, m := range h.Messages {
		if m.Offset != uint64(i+1) || m.Data != sent[m.Offset] {
			t.Fatalf("history message %d: offset %d data %q, want %d %q", i, m.Offset, m.Data, i+1, sent[uint64(i+1)])
		}
	}
}

// TestIdempotentSend: the same key twice gives one message and the first
// result; a different request under the same key is refused; after a
// restart within the window the key is still known.
func TestIdempotentSend(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	rest := newREST(srv.Endpoint())
	sub := dial(t, srv.Endpoint())
	sub.write(t, joinReq("room:idem", 1, nil, ""))
	if f := sub.next(t); f.Type != "ack" || !f.Success {
		t.Fatalf("join: %+v", f)
	}
	first, err := rest.send("room:idem", "hello", "key-1")
	if err != nil || first.status != http.StatusAccepted || first.offset != 1 || first.replayed {
		t.Fatalf("first send: %+v %v", first, err)
	}
	again, err := rest.send("room:idem", "hello", "key-1")
	if err != nil || again.status != http.StatusAccepted || again.offset != first.offset || again.epoch != first.epoch || !again.replayed {
		t.Fatalf("retried send: %+v %v (first %+v)", again, err, first)
	}
	if bad, _ := rest.send("room:idem", "hello", "no spaces allowed"); bad.status != http.StatusBadRequest {
		t.Errorf("invalid key: %d, want 400", bad.status)
	}
	other, _ := rest.send("room:idem", "different", "key-1")
	if other.status != http.StatusUnprocessableEntity {
		t.Errorf("same key, other body: %d, want 422", other.status)
	}
	// Non-durable targets are idempotent too (in memory).
	for range 2 {
		if r, _ := rest.send("lobby", "x", "key-2"); r.status != http.StatusAccepted {
			t.Errorf("send to a group without history: %d", r.status)
		}
	}
	marker, _ := rest.send("room:idem", "marker", "")
	if f := sub.next(t); textOf(f.Data) != "hello" || *f.Offset != 1 {
		t.Fatalf("first delivery %+v", f)
	}
	if f := sub.next(t); textOf(f.Data) != "marker" || *f.Offset != marker.offset {
		t.Fatalf("the retried send was delivered again: got %s at %v", textOf(f.Data), *f.Offset)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	srv2 := startServer(t, dir)
	rest2 := newREST(srv2.Endpoint())
	after, err := rest2.send("room:idem", "hello", "key-1")
	if err != nil || after.offset != first.offset || after.epoch != first.epoch || !after.replayed {
		t.Fatalf("retry after a restart: %+v %v (first %+v)", after, err, first)
	}
	if h := rest2.all(t, "room:idem"); len(h.Messages) != 2 {
		t.Errorf("history after retries: %+v", h.Messages)
	}
}

// TestRetention: count retention keeps the newest messages and answers an
// older offset with 410 and the oldest one; age retention drops messages
// once they are older than max_age.
func TestRetention(t *testing.T) {
	srv := startServer(t, t.TempDir())
	rest := newREST(srv.Endpoint())
	for i := range 5 {
		if r, err := rest.send("small:1", fmt.Sprint("m", i), ""); err != nil || r.offset != uint64(i+1) {
			t.Fatalf("send: %+v %v", r, err)
		}
	}
	st, page, err := rest.messages("small:1", 2, 10, "")
	if err != nil || st != http.StatusOK || len(page.Messages) != 3 || page.Messages[0].Data != "m2" || page.Oldest != 3 || page.Offset != 5 {
		t.Errorf("after 2: %d %+v %v", st, page, err)
	}
	st, page, _ = rest.messages("small:1", 1, 10, "")
	if st != http.StatusGone || page.Code != "Error.History.OffsetGone" || page.Oldest != 3 {
		t.Errorf("after a trimmed offset: %d %+v", st, page)
	}
	st, page, _ = rest.messages("small:1", 4, 10, "0000000000000001")
	if st != http.StatusGone || page.Code != "Error.History.EpochChanged" || page.Epoch == "" {
		t.Errorf("another epoch: %d %+v", st, page)
	}
	if st, page, _ = rest.messages("lobby", 0, 10, ""); st != http.StatusNotFound || page.Code != "Error.History.NotKept" {
		t.Errorf("group without history: %d %+v", st, page)
	}
	// Paging: nextLink carries the next offset and the epoch.
	var paged []string
	after := uint64(2)
	for {
		st, page, err := rest.messages("small:1", after, 2, "")
		if err != nil || st != http.StatusOK {
			t.Fatalf("page after %d: %d %v", after, st, err)
		}
		for _, m := range page.Messages {
			paged = append(paged, m.Data)
		}
		if page.NextLink == nil {
			break
		}
		u, _ := url.Parse(*page.NextLink)
		if u.Query().Get("epoch") != page.Epoch {
			t.Errorf("nextLink %s lacks the epoch", *page.NextLink)
		}
		after, _ = strconv.ParseUint(u.Query().Get("after"), 10, 64)
	}
	if fmt.Sprint(paged) != "[m2 m3 m4]" {
		t.Errorf("paged %v", paged)
	}
	if st, _, _ := rest.messages("small:1", 0, 5000, ""); st != http.StatusBadRequest {
		t.Errorf("limit 5000: %d, want 400", st)
	}
	// The admin endpoint shows the rules.
	adminURL := srv.Endpoint() + "/admin/history"
	tok, _ := rest.keys.MintServerToken(adminURL, time.Hour)
	req, _ := http.NewRequest(http.MethodGet, adminURL, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"pattern": "small:*"`) || !strings.Contains(string(body), `"maxMessages": 3`) {
		t.Errorf("/admin/history: %d %s", resp.StatusCode, body)
	}

	// A joining client that is too far behind is told so.
	c := dial(t, srv.Endpoint())
	one := uint64(1)
	c.write(t, joinReq("small:1", 7, &one, ""))
	if f := c.next(t); f.Type != "ack" || f.Recovered == nil || *f.Recovered || *f.Offset != 5 {
		t.Errorf("join from a trimmed offset: %+v", f)
	}

	// Age: brief:* keeps messages for 300ms.
	rest.send("brief:1", "soon gone", "")
	if _, page, _ := rest.messages("brief:1", 0, 10, ""); len(page.Messages) != 1 {
		t.Fatalf("fresh message not in history: %+v", page)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, page, _ := rest.messages("brief:1", 0, 10, "")
		if st == http.StatusGone && page.Oldest == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("message older than max_age still served: %d %+v", st, page)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Offsets go on after expiry.
	if r, _ := rest.send("brief:1", "next", ""); r.offset != 2 {
		t.Errorf("offset after expiry: %+v", r)
	}
}

// TestEpochAfterDataLoss: a deleted data directory means a new epoch; a
// client resuming with the old one is told recovered: false, and one that
// resumes within the same epoch after a restart recovers.
func TestEpochAfterDataLoss(t *testing.T) {
	dir := t.TempDir()
	srv := startServer(t, dir)
	rest := newREST(srv.Endpoint())
	first, _ := rest.send("room:e", "a", "")
	rest.send("room:e", "b", "")
	srv.Stop()

	// Same data: recovered, and the replay is the missed message.
	srv = startServer(t, dir)
	c := dial(t, srv.Endpoint())
	one := uint64(1)
	c.write(t, joinReq("room:e", 1, &one, first.epoch))
	if f := c.next(t); f.Type != "message" || *f.Offset != 2 || textOf(f.Data) != "b" || f.Epoch != first.epoch {
		t.Fatalf("replay after restart: %+v", f)
	}
	if f := c.next(t); f.Type != "ack" || f.Recovered == nil || !*f.Recovered || *f.Offset != 2 || f.Epoch != first.epoch {
		t.Fatalf("ack after restart: %+v", f)
	}
	srv.Stop()

	// Data lost: a new epoch, recovered: false.
	if err := os.RemoveAll(filepath.Join(dir, "history")); err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, dir)
	rest = newREST(srv.Endpoint())
	again, _ := rest.send("room:e", "c", "")
	if again.offset != 1 || again.epoch == first.epoch {
		t.Fatalf("after data loss: %+v (was %+v)", again, first)
	}
	c = dial(t, srv.Endpoint())
	two := uint64(2)
	c.write(t, joinReq("room:e", 1, &two, first.epoch))
	if f := c.next(t); f.Type != "ack" || f.Recovered == nil || *f.Recovered || f.Epoch != again.epoch || *f.Offset != 1 {
		t.Fatalf("join with the lost epoch: %+v", f)
	}
	// The client's fetchHistory with the old epoch is refused the same way.
	c.write(t, map[string]any{"type": "fetchHistory", "group": "room:e", "offset": 0, "epoch": first.epoch, "ackId": 2})
	if f := c.next(t); f.Type != "ack" || f.Success || f.Error == nil || f.Error.Name != "EpochChanged" || f.Epoch != again.epoch {
		t.Fatalf("fetchHistory with the lost epoch: %+v", f)
	}
	c.write(t, map[string]any{"type": "fetchHistory", "group": "room:e", "offset": 0, "epoch": again.epoch, "ackId": 3})
	if f := c.next(t); f.Type != "history" || len(f.Messages) != 1 || textOf(f.Messages[0].Data) != "c" {
		t.Fatalf("fetchHistory: %+v", f)
	}
}
