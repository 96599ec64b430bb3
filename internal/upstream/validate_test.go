package upstream

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/eventually"
)

func TestValidationOncePerHost(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	h := b.handler("/api/{hub}/{event}?code=s")
	h.AuthHeader = "Bearer x"
	c, _ := newClient(t, Config{Handlers: handlers(h)})

	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			conn := Conn{Hub: []string{"chat", "other"}[i%2], ID: "c"}
			if i%4 < 2 {
				_, err := c.Connect(context.Background(), ConnectRequest{Conn: conn})
				errs <- err
			} else {
				_, err := c.UserEvent(context.Background(), conn, "message", "text/plain", []byte("x"))
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	vs := b.gotValidations()
	if len(vs) != 1 {
		t.Fatalf("%d validation requests, want 1", len(vs))
	}
	v := vs[0]
	if v.method != http.MethodOptions {
		t.Errorf("validation method %s", v.method)
	}
	if v.path != "/api/chat/validate" && v.path != "/api/other/validate" || v.query != "code=s" {
		t.Errorf("validation URL %s?%s, want /api/{hub}/validate?code=s", v.path, v.query)
	}
	for k, want := range map[string]string{"WebHook-Request-Origin": testOrigin, "ce-awpsversion": "1.0", "Authorization": "Bearer x"} {
		if got := v.header.Get(k); got != want {
			t.Errorf("validation %s = %q, want %q", k, got, want)
		}
	}
	if got := len(b.gotPosts()); got != 40 {
		t.Errorf("%d POSTs, want 40", got)
	}
	// A second host is validated on its own.
	b2 := newBackend(t, nil)
	c2, _ := newClient(t, Config{Handlers: func(hub string) []Handler {
		if hub == "two" {
			return []Handler{b2.handler("/{event}")}
		}
		return []Handler{h}
	}})
	for _, hub := range []string{"chat", "two", "two"} {
		if _, err := c2.Connect(context.Background(), ConnectRequest{Conn: Conn{Hub: hub, ID: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n, n2 := len(b.gotValidations()), len(b2.gotValidations()); n != 2 || n2 != 1 {
		t.Errorf("validations: first host %d (want 2: one per client), second host %d (want 1)", n, n2)
	}
}

func TestValidationAllowedOrigin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		allow  string
		status int
		ok     bool
	}{
		{"*", 0, true},
		{testOrigin, 0, true},
		{"PubSub.Example.com", 0, true},
		{testOrigin + ":8443", 0, true},
		{"https://" + testOrigin, 0, true},
		{"other.example.com, " + testOrigin, 0, true},
		{"", 0, false},
		{"other.example.com", 0, false},
		{"example.com", 0, false},
		{"*", http.StatusForbidden, false},
	}
	for _, tt := range tests {
		t.Run(tt.allow, func(t *testing.T) {
			t.Parallel()
			b := newBackend(t, nil)
			b.setValidation(tt.allow, tt.status)
			c, _ := newClient(t, Config{Handlers: handlers(b.handler("/"))})
			_, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn})
			if tt.ok && err != nil {
				t.Fatalf("Connect() = %v", err)
			}
			if !tt.ok && (!errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrRefused)) {
				t.Fatalf("Connect() = %v, want ErrUnavailable and ErrRefused", err)
			}
		})
	}
}

func TestValidationFallsBackToGet(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/"))})
	// OPTIONS gets 404 (no WebHook-Allowed-Origin); GET gets the origin.
	b.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			b.mu.Lock()
			b.validations = append(b.validations, recorded{method: r.Method})
			b.mu.Unlock()
			http.NotFound(w, r)
			return
		}
		b.serve(w, r)
	})
	if _, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn}); err != nil {
		t.Fatal(err)
	}
	vs := b.gotValidations()
	if len(vs) != 2 || vs[0].method != http.MethodOptions || vs[1].method != http.MethodGet {
		t.Fatalf("validations %v, want OPTIONS then GET", vs)
	}
}

func TestValidationRefused(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	b.setValidation("someone-else.example.com", 0)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), RevalidateAfter: time.Hour})

	for range 3 {
		_, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn})
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrRefused) {
			t.Fatalf("Connect() = %v, want ErrUnavailable and ErrRefused", err)
		}
		if _, err := c.UserEvent(context.Background(), testConn, "message", "text/plain", nil); !errors.Is(err, ErrRefused) {
			t.Fatalf("UserEvent() = %v, want ErrRefused", err)
		}
	}
	c.Connected(testConn)
	c.Disconnected(testConn, "bye")
	eventually.True(t, "async events dropped", 10*time.Second, func() bool {
		return counter(c.metrics.dropped.WithLabelValues("connected", dropRefused)) == 1 &&
			counter(c.metrics.dropped.WithLabelValues("disconnected", dropRefused)) == 1
	})
	if n := len(b.gotPosts()); n != 0 {
		t.Errorf("refused host got %d events", n)
	}
	if n := len(b.gotValidations()); n != 1 {
		t.Errorf("%d validation requests, want 1 (refusal cached)", n)
	}
	if got := counter(c.metrics.validationFailures); got != 1 {
		t.Errorf("validation_failures_total = %v, want 1", got)
	}
}

func TestValidationRefusalExpires(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	b.setValidation("", 0)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), RevalidateAfter: 20 * time.Millisecond})
	if _, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn}); !errors.Is(err, ErrRefused) {
		t.Fatalf("Connect() = %v, want ErrRefused", err)
	}
	b.setValidation("*", 0)
	eventually.True(t, "revalidation", 10*time.Second, func() bool {
		_, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn})
		return err == nil
	})
}

func TestValidationTransientFailureNotCached(t *testing.T) {
	t.Parallel()
	b := newBackend(t, nil)
	b.setValidation("*", http.StatusServiceUnavailable)
	c, _ := newClient(t, Config{Handlers: handlers(b.handler("/")), RevalidateAfter: time.Hour})
	_, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrRefused) {
		t.Fatalf("Connect() = %v, want ErrUnavailable, not refused", err)
	}
	b.setValidation("*", 0)
	if _, err := c.Connect(context.Background(), ConnectRequest{Conn: testConn}); err != nil {
		t.Fatalf("Connect() after the host recovered = %v", err)
	}
	if got := counter(c.metrics.validationFailures); got != 1 {
		t.Errorf("validation_failures_total = %v, want 1", got)
	}
}

func TestOriginAllowed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		values []string
		origin string
		want   bool
	}{
		{[]string{"*"}, "h", true},
		{[]string{"h"}, "h", true},
		{[]string{"H"}, "h", true},
		{[]string{"h:8080"}, "h", true},
		{[]string{"a", "h"}, "h", true},
		{[]string{"a,h"}, "h", true},
		{[]string{"http://h:80/"}, "h", true},
		{[]string{"a"}, "h", false},
		{[]string{""}, "h", false},
		{nil, "h", false},
		{[]string{"hh"}, "h", false},
	}
	for _, tt := range tests {
		if got := originAllowed(tt.values, tt.origin); got != tt.want {
			t.Errorf("originAllowed(%q, %q) = %v, want %v", tt.values, tt.origin, got, tt.want)
		}
	}
}
