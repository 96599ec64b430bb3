package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestUserEventRequest(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/api/{hub}/{event}"))})
	conn := testConn
	conn.State = "eyJrIjoidiJ9"
	tests := []struct {
		event, contentType, wantContentType string
		data                                []byte
	}{
		{"chat", "text/plain", "text/plain", []byte("hi")},
		{"chat", "application/json", "application/json", []byte(`{"a":1}`)},
		{"message", "application/octet-stream", "application/octet-stream", []byte{0, 1, 2, 255}},
		{"proto", "application/x-protobuf", "application/x-protobuf", []byte{8, 1}},
		{"raw", "", "application/octet-stream", []byte{}},
	}
	for i, tt := range tests {
		if _, err := c.UserEvent(context.Background(), conn, tt.event, tt.contentType, tt.data); err != nil {
			t.Fatal(err)
		}
		got := b.gotPosts()[i]
		checkCommonHeaders(t, got, conn, "azure.webpubsub.user."+tt.event, tt.event)
		if ct := got.header.Get("Content-Type"); ct != tt.wantContentType {
			t.Errorf("%s: Content-Type = %q, want %q", tt.event, ct, tt.wantContentType)
		}
		if !bytes.Equal(got.body, tt.data) {
			t.Errorf("%s: body = %q, want %q", tt.event, got.body, tt.data)
		}
		if got.path != "/api/chat/"+tt.event {
			t.Errorf("%s: path = %q", tt.event, got.path)
		}
	}
	// Every event of the connection has its own ce-id.
	ids := map[string]bool{}
	for _, p := range b.gotPosts() {
		ids[p.header.Get("ce-id")] = true
	}
	if len(ids) != len(tests) {
		t.Errorf("%d distinct ce-id values for %d events", len(ids), len(tests))
	}
	if got := testutil.ToFloat64(c.metrics.requests.WithLabelValues("user", "204")); got != float64(len(tests)) {
		t.Errorf("requests_total{user,204} = %v", got)
	}
}

func TestUserEventResponses(t *testing.T) {
	t.Parallel()
	str := func(s string) *string { return &s }
	tests := []struct {
		name         string
		status       int
		contentType  string
		state        []string // ce-connectionState values
		body         string
		wantDataType string
		want         *EventResponse
		reject       *RejectError
		wantErr      error
	}{
		{name: "text", status: 200, contentType: "text/plain; charset=utf-8", body: "hello", wantDataType: "text",
			want: &EventResponse{Status: 200, ContentType: "text/plain; charset=utf-8", Body: []byte("hello")}},
		{name: "json", status: 200, contentType: "application/json; charset=utf-8", body: `{"x":1}`, wantDataType: "json",
			want: &EventResponse{Status: 200, ContentType: "application/json; charset=utf-8", Body: []byte(`{"x":1}`)}},
		{name: "binary", status: 200, contentType: "application/octet-stream", body: "\x00\x01", wantDataType: "binary",
			want: &EventResponse{Status: 200, ContentType: "application/octet-stream", Body: []byte("\x00\x01")}},
		{name: "no content type", status: 200, body: "\x00\x01", wantDataType: "binary",
			want: &EventResponse{Status: 200, Body: []byte("\x00\x01")}},
		{name: "204", status: 204, wantDataType: "binary", want: &EventResponse{Status: 204}},
		{name: "empty 200", status: 200, contentType: "text/plain", wantDataType: "text",
			want: &EventResponse{Status: 200, ContentType: "text/plain"}},
		{name: "state set", status: 204, state: []string{"bmV3"}, wantDataType: "binary",
			want: &EventResponse{Status: 204, State: str("bmV3")}},
		{name: "state cleared", status: 204, state: []string{""}, wantDataType: "binary",
			want: &EventResponse{Status: 204, State: str("")}},
		{name: "two states", status: 204, state: []string{"a", "b"}, wantErr: ErrBadResponse},
		{name: "400", status: 400, body: "no such thing", reject: &RejectError{Status: 400, Reason: "no such thing"}},
		{name: "503", status: 503, reject: &RejectError{Status: 503}},
		{name: "oversized", status: 200, body: string(make([]byte, 65)), wantErr: ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				if tt.contentType != "" {
					w.Header().Set("Content-Type", tt.contentType)
				} else {
					w.Header()["Content-Type"] = nil // no sniffing
				}
				for _, s := range tt.state {
					w.Header().Add("ce-connectionState", s)
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), MaxResponseBytes: 64})
			got, err := c.UserEvent(context.Background(), testConn, "echo", "text/plain", []byte("hi"))
			switch {
			case tt.reject != nil:
				var re *RejectError
				if !errors.As(err, &re) || *re != *tt.reject {
					t.Fatalf("UserEvent() = %v, %v; want %#v", got, err, tt.reject)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("UserEvent() = %v, %v; want %v", got, err, tt.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if !equalEventResponse(got, tt.want) {
					gj, _ := json.Marshal(got)
					wj, _ := json.Marshal(tt.want)
					t.Fatalf("UserEvent() = %s, want %s", gj, wj)
				}
				if dt := got.DataType(); dt != tt.wantDataType {
					t.Errorf("DataType() = %q, want %q", dt, tt.wantDataType)
				}
			}
		})
	}
}

func equalEventResponse(a, b *EventResponse) bool {
	if a.Status != b.Status || a.ContentType != b.ContentType || !bytes.Equal(a.Body, b.Body) || (a.Body == nil) != (b.Body == nil) {
		return false
	}
	if (a.State == nil) != (b.State == nil) {
		return false
	}
	return a.State == nil || *a.State == *b.State
}

func TestEventResponseDataType(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]string{
		"text/plain":                      "text",
		"Text/Plain; charset=utf-8":       "text",
		"application/json":                "json",
		"application/json; charset=utf-8": "json",
		"application/cloudevents+json":    "json",
		"application/octet-stream":        "binary",
		"application/x-protobuf":          "binary",
		"":                                "binary",
		"text/html":                       "binary",
		"not a media type;;":              "binary",
	} {
		if got := (&EventResponse{ContentType: ct}).DataType(); got != want {
			t.Errorf("DataType(%q) = %q, want %q", ct, got, want)
		}
	}
}

func TestUserEventNoHandler(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	h := b.handler("/")
	h.UserEvents = []string{"chat"}
	c, _ := newClient(t, Config{Handlers: handlers(h)})
	if _, err := c.UserEvent(context.Background(), testConn, "message", "text/plain", nil); !errors.Is(err, ErrNoHandler) {
		t.Fatalf("UserEvent() = %v, want ErrNoHandler", err)
	}
	if c.HasUserHandler("chat", "message") || !c.HasUserHandler("chat", "CHAT") {
		t.Error("HasUserHandler disagrees with the handler's UserEvents")
	}
}

func TestUserEventInvalidHeaderValue(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/"))})
	conn := testConn
	conn.UserID = "bad\nuser"
	_, err := c.UserEvent(context.Background(), conn, "message", "text/plain", nil)
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("UserEvent() = %v, want an invalid-header error", err)
	}
	if len(b.gotPosts()) != 0 {
		t.Fatal("request sent")
	}
}
