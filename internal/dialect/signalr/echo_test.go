package signalr_test

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestHugeInputRejectionIsSmall: a handshake or an invocation whose
// rejection quotes a huge client value (the protocol name, the version, the
// message type, the invocation target) is answered in under 1 KiB, naming
// the problem, and a close frame's reason stays within 123 bytes of valid
// UTF-8; the value used to be quoted whole.
func TestHugeInputRejectionIsSmall(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	big := strings.Repeat("x", 40000)
	handshakes := []struct{ name, request, want string }{
		{"protocol", `{"protocol":"` + big + `","version":1}`, "Requested protocol 'xxx"},
		{"version", `{"protocol":"json","version":` + strings.Repeat("9", 40000) + `}`, "'version' 999"},
	}
	for _, tt := range handshakes {
		t.Run(tt.name, func(t *testing.T) {
			tok := s.token(t, "chat", "")
			c := mustDialWS(t, s.clientURL("chat", "", tok))
			c.sendText(tt.request + rs)
			f := c.read()
			if len(f.data) > 1024 || !strings.Contains(f.data, tt.want) || !strings.Contains(f.data, "…") {
				t.Fatalf("handshake answer of %d bytes: %.300s; want under 1 KiB, saying %s…", len(f.data), f.data, tt.want)
			}
			if ce := c.expectClose(); len(ce.reason) > 123 || !utf8.ValidString(ce.reason) {
				t.Fatalf("closed %d with a %d-byte reason", ce.code, len(ce.reason))
			}
		})
	}
	t.Run("target", func(t *testing.T) {
		s.up.refuse(big)
		c, _ := s.connectJSON(t, "chat", "alice", 1, "")
		c.sendText(`{"type":1,"invocationId":"1","target":"` + big + `","arguments":[]}` + rs)
		f := c.read()
		if len(f.data) > 1024 || !strings.Contains(f.data, "no upstream handles 'xxx") || !strings.Contains(f.data, "xxx…") {
			t.Fatalf("completion of %d bytes: %.300s; want under 1 KiB, naming the target in part", len(f.data), f.data)
		}
	})
	t.Run("type", func(t *testing.T) {
		c, _ := s.connectJSON(t, "chat", "alice", 1, "")
		c.sendText(`{"type":"` + big + `"}` + rs)
		f := c.read()
		if len(f.data) > 1024 || !strings.Contains(f.data, "expected 'type' to be an integer") || !strings.Contains(f.data, "xxx…") {
			t.Fatalf("close message of %d bytes: %.300s; want under 1 KiB, saying what is wrong", len(f.data), f.data)
		}
	})
}
