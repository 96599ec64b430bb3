//go:build linux

package history_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

// answer is a REST send's answer as the disk tests read it.
type answer struct {
	status int
	code   string // x-ms-error-code
	body   string
}

// post sends text to group by REST (no Idempotency-Key).
func (c *restClient) post(group, text string) (answer, error) {
	u := c.endpoint + "/api/hubs/chat/groups/" + group + "/:send"
	tok, _ := c.keys.MintServerToken(u, time.Hour)
	req, _ := http.NewRequest(http.MethodPost, u+"?api-version=2024-12-01", strings.NewReader(text))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/plain")
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, code: resp.Header.Get("x-ms-error-code"), body: string(b)}, nil
}

// get returns the status and body of an unauthenticated GET of path.
func get(t *testing.T, endpoint, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(endpoint + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric returns the value of the sample named series (name plus labels,
// as exposed) from /metrics; -1 when it is absent.
func metric(t *testing.T, endpoint, series string) float64 {
	t.Helper()
	_, body := get(t, endpoint, "/metrics")
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return -1
}

const (
	unavailableCode = "Error.History.Unavailable"
	noSpace         = "no space left on device"
	availableGauge  = "switchboard_history_available"
	noSpaceFailures = `switchboard_history_write_failures_total{cause="no_space"}`
)

// ledger records how each send was answered: accepted (2xx) or refused
// (503 Error.History.Unavailable). Anything else is an error.
type ledger struct {
	mu       sync.Mutex
	accepted map[string]bool
	refused  map[string]bool
	other    []string
}

func newLedger() *ledger { return &ledger{accepted: map[string]bool{}, refused: map[string]bool{}} }

func (l *ledger) note(text string, a answer, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.other = append(l.other, fmt.Sprintf("%s: %v", text, err))
	case a.status/100 == 2:
		l.accepted[text] = true
	case a.status == http.StatusServiceUnavailable && a.code == unavailableCode:
		l.refused[text] = true
	default:
		l.other = append(l.other, fmt.Sprintf("%s: %d %s %s", text, a.status, a.code, a.body))
	}
}

func (l *ledger) counts() (accepted, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.accepted), len(l.refused)
}

// TestDiskFullRefusesDurableSendsAndRecovers fills the data directory's file
// system while REST publishers send to a history group and a subscriber
// listens: durable sends are refused with 503 Error.History.Unavailable
// naming the cause, a client's sendToGroup gets a HistoryUnavailable ack,
// /api/health/ready says 503 (liveness stays 200), the metrics say so, and
// sends to groups without history still work. Once the ballast is deleted,
// durable sends are accepted again without a restart; every send answered
// 2xx is in the history and no refused one is, with gapless offsets, and the
// subscriber received exactly that stream. On main the refusals were 500
// Error.InternalServerError and nothing was accepted again before a restart.
func TestDiskFullRefusesDurableSendsAndRecovers(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	srv := startServer(t, dir, "history.probe_interval=20ms")
	ep := srv.Endpoint()
	rest := newREST(ep)
	const group = "room:disk"

	sub := dial(t, ep)
	sub.write(t, joinReq(group, 1, nil, ""))
	if f := sub.next(t); f.Type != "ack" || !f.Success {
		t.Fatalf("join: %+v", f)
	}

	led := newLedger()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				text := fmt.Sprintf("p%d-%d-%s", p, n, strings.Repeat("x", 200))
				a, err := rest.post(group, text)
				led.note(text, a, err)
				if a.status == http.StatusServiceUnavailable {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	eventually.True(t, "publishers accepted", 30*time.Second, func() bool { n, _ := led.counts(); return n >= 30 })

	free := fill(t, dir)
	eventually.True(t, "durable sends refused on a full disk", 30*time.Second, func() bool { _, n := led.counts(); return n >= 5 })

	// The refusal names the cause.
	var a answer
	for i := 0; ; i++ {
		text := fmt.Sprintf("main-full-%d", i)
		var err error
		a, err = rest.post(group, text)
		led.note(text, a, err)
		if err != nil || a.status != http.StatusAccepted || i > 100 {
			break
		}
	}
	if a.status != http.StatusServiceUnavailable || a.code != unavailableCode || !strings.Contains(a.body, noSpace) {
		t.Errorf("durable send on a full disk: %d %q %s; want 503 %s naming %q", a.status, a.code, a.body, unavailableCode, noSpace)
	}
	// Sends to a group without history still work.
	if a, err := rest.post("plain", "not durable"); err != nil || a.status != http.StatusAccepted {
		t.Errorf("send to a group without history on a full disk: %+v %v", a, err)
	}
	// A client's sendToGroup is refused with an ack naming the cause.
	cl := dialRoles(t, ep, "webpubsub.sendToGroup")
	var ack frame
	for i := uint64(1); ; i++ {
		text := fmt.Sprintf("ws-full-%d", i)
		cl.write(t, map[string]any{"type": "sendToGroup", "group": group, "dataType": "text", "data": text, "ackId": i})
		ack = cl.next(t)
		if ack.Success {
			led.note(text, answer{status: http.StatusOK}, nil)
		}
		if !ack.Success || i > 100 {
			if !ack.Success {
				led.note(text, answer{status: http.StatusServiceUnavailable, code: unavailableCode}, nil)
			}
			break
		}
	}
	if ack.Type != "ack" || ack.Success || ack.Error == nil || ack.Error.Name != "HistoryUnavailable" || !strings.Contains(ack.Error.Message, noSpace) {
		t.Errorf("client sendToGroup on a full disk: %+v %+v; want error HistoryUnavailable naming %q", ack, ack.Error, noSpace)
	}
	// Readiness says why; liveness stays up.
	if st, body := get(t, ep, "/api/health/ready"); st != http.StatusServiceUnavailable || !strings.Contains(body, noSpace) {
		t.Errorf("readiness on a full disk: %d %s", st, body)
	}
	if st, _ := get(t, ep, "/api/health"); st != http.StatusOK {
		t.Errorf("liveness on a full disk: %d", st)
	}
	if v := metric(t, ep, availableGauge); v != 0 {
		t.Errorf("%s = %v on a full disk, want 0", availableGauge, v)
	}
	if v := metric(t, ep, noSpaceFailures); v < 1 {
		t.Errorf("%s = %v on a full disk, want ≥ 1", noSpaceFailures, v)
	}

	// Space returns: accepted again, no restart.
	free()
	accepted, _ := led.counts()
	eventually.True(t, "durable sends accepted after space returned", 30*time.Second, func() bool {
		text := fmt.Sprintf("main-after-%d", time.Now().UnixNano())
		a, err := rest.post(group, text)
		led.note(text, a, err)
		return err == nil && a.status == http.StatusAccepted
	})
	eventually.True(t, "publishers accepted again", 30*time.Second, func() bool { n, _ := led.counts(); return n >= accepted+30 })
	cl.write(t, map[string]any{"type": "sendToGroup", "group": group, "dataType": "text", "data": "ws-after", "ackId": 1000})
	if f := cl.next(t); !f.Success {
		t.Errorf("client sendToGroup after space returned: %+v %+v", f, f.Error)
	} else {
		led.note("ws-after", answer{status: http.StatusOK}, nil)
	}
	if st, body := get(t, ep, "/api/health/ready"); st != http.StatusOK {
		t.Errorf("readiness after space returned: %d %s", st, body)
	}
	if v := metric(t, ep, availableGauge); v != 1 {
		t.Errorf("%s = %v after space returned, want 1", availableGauge, v)
	}
	close(stop)
	wg.Wait()

	// Nothing accepted lost, nothing refused kept, no gap.
	led.mu.Lock()
	defer led.mu.Unlock()
	for _, o := range led.other {
		t.Errorf("unexpected answer: %s", o)
	}
	if len(led.refused) == 0 {
		t.Fatal("no send was refused")
	}
	hist := rest.all(t, group)
	seen := map[string]bool{}
	for i, m := range hist.Messages {
		text := m.Data
		if m.Offset != uint64(i+1) {
			t.Fatalf("history message %d has offset %d: a gap", i, m.Offset)
		}
		switch {
		case led.refused[text]:
			t.Errorf("refused send %.12q… is in the history at offset %d", text, m.Offset)
		case !led.accepted[text]:
			t.Errorf("history holds %.12q…, which no send was answered 2xx for", text)
		}
		seen[text] = true
	}
	for text := range led.accepted {
		if !seen[text] {
			t.Errorf("accepted send %.12q… is missing from the history", text)
		}
	}
	// The subscriber got exactly the stream, in order.
	for i := range hist.Messages {
		var f frame
		for f.Type != "message" {
			f = sub.next(t)
		}
		if f.Offset == nil || *f.Offset != hist.Messages[i].Offset || textOf(f.Data) != hist.Messages[i].Data {
			t.Fatalf("subscriber's message %d: %+v, want offset %d", i, f, hist.Messages[i].Offset)
		}
	}
	t.Logf("%d sends accepted, %d refused, %d in the history", len(led.accepted), len(led.refused), len(hist.Messages))
}

// TestStartWithDiskFull restarts a server whose data directory's file
// system is full: it starts (on main it exited: the log could not open),
// sends to groups without history work, durable ones are refused with 503
// Error.History.Unavailable and readiness is 503; once space returns, the
// log opens in the background and durable sends continue the stream.
func TestStartWithDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "2m")
	srv := startServer(t, dir, "history.probe_interval=20ms")
	rest := newREST(srv.Endpoint())
	var first sendResult
	for i := range 3 {
		r, err := rest.send("room:start", fmt.Sprintf("before-%d", i), "")
		if err != nil || r.status != http.StatusAccepted {
			t.Fatalf("send before: %+v %v", r, err)
		}
		first = r
	}
	srv.Stop()
	free := fill(t, dir)

	srv = startServer(t, dir, "history.probe_interval=20ms")
	ep := srv.Endpoint()
	rest = newREST(ep)
	if a, err := rest.post("plain", "not durable"); err != nil || a.status != http.StatusAccepted {
		t.Errorf("send to a group without history: %+v %v", a, err)
	}
	if a, err := rest.post("room:start", "refused"); err != nil || a.status != http.StatusServiceUnavailable || a.code != unavailableCode || !strings.Contains(a.body, noSpace) {
		t.Errorf("durable send with the log not open: %+v %v; want 503 %s naming %q", a, err, unavailableCode, noSpace)
	}
	cl := dialRoles(t, ep, "webpubsub.sendToGroup")
	cl.write(t, map[string]any{"type": "sendToGroup", "group": "room:start", "dataType": "text", "data": "refused-ws", "ackId": 1})
	if f := cl.next(t); f.Success || f.Error == nil || f.Error.Name != "HistoryUnavailable" {
		t.Errorf("client sendToGroup with the log not open: %+v %+v", f, f.Error)
	}
	if st, body := get(t, ep, "/api/health/ready"); st != http.StatusServiceUnavailable || !strings.Contains(body, noSpace) {
		t.Errorf("readiness with the log not open: %d %s", st, body)
	}
	if v := metric(t, ep, availableGauge); v != 0 {
		t.Errorf("%s = %v with the log not open, want 0", availableGauge, v)
	}

	free()
	var after sendResult
	eventually.True(t, "durable send accepted after space returned", 30*time.Second, func() bool {
		r, err := rest.send("room:start", "after", "")
		after = r
		return err == nil && r.status == http.StatusAccepted
	})
	if after.offset != first.offset+1 || after.epoch != first.epoch {
		t.Errorf("first send after recovery: offset %d epoch %s, want %d %s", after.offset, after.epoch, first.offset+1, first.epoch)
	}
	if st, body := get(t, ep, "/api/health/ready"); st != http.StatusOK {
		t.Errorf("readiness after space returned: %d %s", st, body)
	}
	hist := rest.all(t, "room:start")
	var got []string
	for _, m := range hist.Messages {
		got = append(got, m.Data)
	}
	if want := "before-0 before-1 before-2 after"; strings.Join(got, " ") != want {
		t.Errorf("history %q, want %q", got, want)
	}
}
