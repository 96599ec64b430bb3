package webpubsub

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// TestHugeInputRejectionIsSmall: a handshake or a request whose rejection
// quotes a huge client value (a subprotocol, a group name from the token, a
// token's alg, a message type, event name, group or dataType) is answered in
// under 1 KiB, still naming the problem; the value used to be quoted whole.
func TestHugeInputRejectionIsSmall(t *testing.T) {
	big := strings.Repeat("x", 40000)
	s := startServer(t, serverOptions{})
	hsURL := s.url + "/client/hubs/h?access_token="
	algToken := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"`+big+`","typ":"JWT"}`)) + ".e30.c2ln"
	handshakes := []struct {
		name, url, protocol string
		status              int
		want                string
	}{
		{"subprotocol", hsURL + s.token(t, "h", auth.MintOptions{}), "protobuf." + big + "webpubsub.azure.v1", 400, `subprotocol "protobuf.xxx`},
		{"group claim", hsURL + s.token(t, "h", auth.MintOptions{Groups: []string{big[:20000]}}), "", 400, `invalid group name "xxx`},
		{"token alg", hsURL + algToken, "", 401, `alg "xxx`},
	}
	for _, tt := range handshakes {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			if tt.protocol != "" {
				req.Header.Set("Sec-WebSocket-Protocol", tt.protocol)
			}
			resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req) // a 101 would hang
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || len(b) > 1024 || !strings.Contains(string(b), tt.want) || !strings.Contains(string(b), "xxx…") {
				t.Fatalf("%d, %d bytes: %.300s; want %d, under 1 KiB, saying %s…", resp.StatusCode, len(b), b, tt.status, tt.want)
			}
		})
	}

	tok := s.token(t, "h", auth.MintOptions{Roles: []string{"webpubsub.sendToGroup.g"}})
	c := mustDial(t, s.wsURL("h", tok), ProtocolJSON)
	c.read() // connected
	requests := []struct{ name, frame, want string }{
		{"type", `{"type":"` + big + `","ackId":1}`, "unknown message type"},
		{"event name", `{"type":"event","event":"` + big + ` ","ackId":2,"dataType":"text","data":""}`, "invalid event name"},
		{"group", `{"type":"sendToGroup","group":"` + big[:1024] + `","ackId":3,"dataType":"text","data":""}`, "no permission to send to group"},
		{"dataType", `{"type":"sendToGroup","group":"g","ackId":4,"dataType":"` + big + `","data":""}`, "unknown dataType"},
	}
	for _, tt := range requests {
		t.Run(tt.name, func(t *testing.T) {
			c.send(tt.frame)
			ack := c.read()
			if len(ack) > 1024 || !utf8.ValidString(ack) || !strings.Contains(ack, tt.want) || !strings.Contains(ack, "xxx…") {
				t.Fatalf("ack of %d bytes: %.300s; want under 1 KiB, saying %s…", len(ack), ack, tt.want)
			}
		})
	}

	// Without an ackId an unknown type closes the socket: the reason fits a
	// close frame and stays valid UTF-8 with a multi-byte value.
	c.send(`{"type":"` + strings.Repeat("é", 20000) + `"}`)
	if ce := c.expectClose(); ce.code != 1007 || len(ce.reason) > 123 || !utf8.ValidString(ce.reason) || !strings.HasPrefix(ce.reason, `unknown message type "éé`) {
		t.Fatalf("closed %d with a %d-byte reason %.200q, want 1007 and at most 123 bytes of valid UTF-8", ce.code, len(ce.reason), ce.reason)
	}
}
