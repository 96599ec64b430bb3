//go:build linux

package history_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

// postKey sends text to group by REST with an Idempotency-Key; it returns the answer and
// its Idempotent-Replayed header.
func (c *restClient) postKey(t *testing.T, group, key, text string) (answer, string) {
	t.Helper()
	u := c.endpoint + "/api/hubs/chat/groups/" + group + "/:send"
	tok, _ := c.keys.MintServerToken(u, time.Hour)
	req, _ := http.NewRequest(http.MethodPost, u+"?api-version=2024-12-01", strings.NewReader(text))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Idempotency-Key", key)
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, code: resp.Header.Get("x-ms-error-code"), body: string(b)}, resp.Header.Get("Idempotent-Replayed")
}

// TestRefusedIdempotentSendRunsAgain: a send refused for a full disk does not hold its
// Idempotency-Key: the same request retried once space returns runs (202, not replayed,
// not the refusal again), and only then is the key's answer replayed.
func TestRefusedIdempotentSendRunsAgain(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	srv := startServer(t, dir, "history.probe_interval=20ms")
	ep := srv.Endpoint()
	rest := newREST(ep)
	const group = "room:idem"
	if a, _ := rest.postKey(t, group, "warm-up", "first"); a.status != http.StatusAccepted {
		t.Fatalf("send before the disk fills: %+v", a)
	}
	free := fill(t, dir)
	var a answer
	var key string
	for i := 0; ; i++ { // the first sends may still fit
		key = fmt.Sprintf("k%d", i)
		if a, _ = rest.postKey(t, group, key, "retried"); a.status != http.StatusAccepted || i > 1000 {
			break
		}
	}
	if a.code != unavailableCode {
		t.Fatalf("refusal: %+v, want %s", a, unavailableCode)
	}
	free()
	eventually.True(t, "ready again", 30*time.Second, func() bool { s, _ := get(t, ep, "/api/health/ready"); return s == http.StatusOK })
	a, replayed := rest.postKey(t, group, key, "retried")
	if a.status != http.StatusAccepted || replayed == "true" {
		t.Fatalf("the refused send retried with its key once space returned: %+v replayed %q; want a new 202", a, replayed)
	}
	a, replayed = rest.postKey(t, group, key, "retried")
	if a.status != http.StatusAccepted || replayed != "true" {
		t.Fatalf("a second retry: %+v replayed %q; want 202 replayed", a, replayed)
	}
}
