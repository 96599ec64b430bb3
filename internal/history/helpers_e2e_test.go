package history_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/server/servertest"
	"github.com/switchboardhq/switchboard/internal/wstest"
)

const testKey = "history-test-key"

// historyConfig is the YAML of the test servers: hub chat keeps history for
// room:* (large), small:* (3 messages) and brief:* (a short max age).
const historyConfig = `hubs:
  chat:
    history:
      - {pattern: "room:*", max_messages: 100000, max_age: 720h}
      - {pattern: "small:*", max_messages: 3, max_age: 720h}
      - {pattern: "brief:*", max_messages: 1000, max_age: 300ms}
`

func writeConfig(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(historyConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startServer runs a whole server with data directory dir.
func startServer(t testing.TB, dir string, settings ...string) *servertest.Server {
	t.Helper()
	return servertest.Start(t, servertest.Options{
		ConfigFile: writeConfig(t),
		Settings: append([]string{"server.data_dir=" + dir, "auth.access_keys=" + testKey,
			"history.trim_interval=50ms", "history.max_replay=100000"}, settings...),
	})
}

// restClient calls the REST API of endpoint with server tokens.
type restClient struct {
	endpoint string
	keys     *auth.KeyRing
	http     *http.Client
}

func newREST(endpoint string) *restClient {
	keys, _ := auth.NewKeyRing(testKey)
	return &restClient{endpoint: endpoint, keys: keys, http: &http.Client{Timeout: 20 * time.Second}}
}

type sendResult struct {
	status   int
	offset   uint64
	epoch    string
	replayed bool
}

// send posts text to the group's :send, with an Idempotency-Key when key is
// not "".
func (c *restClient) send(group, text, key string) (sendResult, error) {
	u := c.endpoint + "/api/hubs/chat/groups/" + group + "/:send"
	tok, _ := c.keys.MintServerToken(u, time.Hour)
	req, _ := http.NewRequest(http.MethodPost, u+"?api-version=2024-12-01", strings.NewReader(text))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "text/plain")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return sendResult{}, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r := sendResult{status: resp.StatusCode, epoch: resp.Header.Get("X-Switchboard-Epoch"), replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
	r.offset, _ = strconv.ParseUint(resp.Header.Get("X-Switchboard-Offset"), 10, 64)
	return r, nil
}

type catchUp struct {
	Group    string `json:"group"`
	Epoch    string `json:"epoch"`
	Offset   uint64 `json:"offset"`
	Oldest   uint64 `json:"oldest"`
	Code     string `json:"code"`
	Messages []struct {
		Offset   uint64 `json:"offset"`
		DataType string `json:"dataType"`
		Data     string `json:"data"`
	} `json:"messages"`
	NextLink *string `json:"nextLink"`
}

// messages reads one page of the group's history.
func (c *restClient) messages(group string, after uint64, limit int, epoch string) (int, catchUp, error) {
	u := c.endpoint + "/api/hubs/chat/groups/" + group + "/messages"
	tok, _ := c.keys.MintServerToken(u, time.Hour)
	q := fmt.Sprintf("?after=%d&limit=%d", after, limit)
	if epoch != "" {
		q += "&epoch=" + epoch
	}
	req, _ := http.NewRequest(http.MethodGet, u+q, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, catchUp{}, err
	}
	defer resp.Body.Close()
	var page catchUp
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &page); err != nil {
		return resp.StatusCode, page, fmt.Errorf("%w: %s", err, b)
	}
	return resp.StatusCode, page, nil
}

// all pages through the whole retained history of group.
func (c *restClient) all(t testing.TB, group string) catchUp {
	t.Helper()
	var out catchUp
	var after uint64
	for {
		st, page, err := c.messages(group, after, 1000, "")
		if err != nil || st != http.StatusOK {
			t.Fatalf("catch-up read of %s after %d: %d %v %+v", group, after, st, err, page)
		}
		out.Epoch, out.Offset, out.Oldest = page.Epoch, page.Offset, page.Oldest
		out.Messages = append(out.Messages, page.Messages...)
		if page.NextLink == nil {
			return out
		}
		after = page.Messages[len(page.Messages)-1].Offset
	}
}

// frame is one server frame of the JSON subprotocol, the fields the tests use.
type frame struct {
	Type      string  `json:"type"`
	Event     string  `json:"event"`
	AckID     uint64  `json:"ackId"`
	Success   bool    `json:"success"`
	Recovered *bool   `json:"recovered"`
	Offset    *uint64 `json:"offset"`
	Epoch     string  `json:"epoch"`
	Oldest    uint64  `json:"oldest"`
	Group     string  `json:"group"`
	Data      json.RawMessage
	Error     *struct{ Name, Message string }
	More      bool `json:"more"`
	Messages  []struct {
		Offset uint64          `json:"offset"`
		Data   json.RawMessage `json:"data"`
	} `json:"messages"`
}

// wsClient is a json.webpubsub.azure.v1 client.
type wsClient struct {
	ws     *wstest.Client
	frames chan frame
	done   chan struct{}
}

func dial(t testing.TB, endpoint string) *wsClient {
	t.Helper()
	return dialRoles(t, endpoint, "webpubsub.joinLeaveGroup")
}

// dialRoles connects a client with the given roles.
func dialRoles(t testing.TB, endpoint string, roles ...string) *wsClient {
	t.Helper()
	c, err := tryDialRoles(t, endpoint, roles...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDial, tryWrite and tryNext are dial, write and next for goroutines
// other than the test's, which must not call t.Fatal: they return the
// failure. tryDial uses t only to close the client when the test ends.
func tryDial(t testing.TB, endpoint string) (*wsClient, error) {
	return tryDialRoles(t, endpoint, "webpubsub.joinLeaveGroup")
}

// tryDialRoles is tryDial with the given roles.
func tryDialRoles(t testing.TB, endpoint string, roles ...string) (*wsClient, error) {
	keys, _ := auth.NewKeyRing(testKey)
	tok, _ := keys.MintClientToken(auth.ClientAudience(endpoint, "chat"), auth.MintOptions{Roles: roles})
	u := "ws" + strings.TrimPrefix(endpoint, "http") + "/client/hubs/chat?access_token=" + tok
	wc, err := wstest.DialErr(t, u, "json.webpubsub.azure.v1")
	if err != nil {
		return nil, err
	}
	wc.ReadTimeout = 0 // the reader below ends with the connection; tryNext bounds the wait
	c := &wsClient{ws: wc, frames: make(chan frame, 1<<16), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.frames)
		for {
			p, _, err := c.ws.ReadErr()
			if err != nil {
				return
			}
			var f frame
			if err := json.Unmarshal(p, &f); err != nil {
				panic(fmt.Sprintf("bad frame %s: %v", p, err))
			}
			c.frames <- f
		}
	}()
	t.Cleanup(c.drop)
	f, err := c.tryNext()
	if err != nil {
		return nil, err
	}
	if f.Event != "connected" {
		return nil, fmt.Errorf("first frame %+v", f)
	}
	return c, nil
}

func (c *wsClient) write(t testing.TB, v any) {
	t.Helper()
	if err := c.tryWrite(v); err != nil {
		t.Fatal(err)
	}
}

func (c *wsClient) tryWrite(v any) error {
	b, _ := json.Marshal(v)
	return c.ws.WriteFrame(ws.OpText, b)
}

// next returns the next frame, failing after a generous deadline.
func (c *wsClient) next(t testing.TB) frame {
	t.Helper()
	f, err := c.tryNext()
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (c *wsClient) tryNext() (frame, error) {
	select {
	case f, ok := <-c.frames:
		if !ok {
			return frame{}, errors.New("connection closed")
		}
		return f, nil
	case <-time.After(30 * time.Second):
		return frame{}, errors.New("no frame within 30s")
	}
}

// drop closes the TCP connection without a close frame.
func (c *wsClient) drop() {
	c.ws.Close()
	<-c.done
}

// joinReq is a joinGroup request.
func joinReq(group string, ack uint64, offset *uint64, epoch string) map[string]any {
	m := map[string]any{"type": "joinGroup", "group": group, "ackId": ack}
	if offset != nil {
		m["offset"] = *offset
		m["epoch"] = epoch
	}
	return m
}

// textOf decodes a text message's data.
func textOf(raw json.RawMessage) string {
	var s string
	json.Unmarshal(raw, &s)
	return s
}
