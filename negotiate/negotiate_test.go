package negotiate_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/negotiate"
)

const key = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"

func TestHandlerRedirectsToTheService(t *testing.T) {
	cs := auth.SignalRConnectionString("http://localhost:8081", key)
	if cs != "Endpoint=http://localhost;Port=8081;AccessKey="+key+";Version=1.0;" {
		t.Fatalf("connection string = %q", cs)
	}
	svc, err := negotiate.New(cs)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler("Chat", func(r *http.Request) string { return r.Header.Get("X-User") }))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/negotiate?negotiateVersion=1", nil)
	req.Header.Set("X-User", "alice")
	req.Header.Set("Origin", "http://app.example")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(got) != 2 || got["url"] != "http://localhost:8081/client/?hub=Chat" {
		t.Fatalf("status %d body %v", resp.StatusCode, got)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://app.example" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("CORS headers %v", resp.Header)
	}
	ring, _ := auth.NewKeyRing(key)
	c, err := ring.VerifySignalRClientToken(got["accessToken"].(string), "chat", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "alice" {
		t.Fatalf("user = %q", c.UserID)
	}

	get, err := http.Get(srv.URL + "/negotiate")
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET status %d", get.StatusCode)
	}
}

func TestNewRejectsBadConnectionStrings(t *testing.T) {
	for _, cs := range []string{"", "Endpoint=http://x", "AccessKey=k", "Endpoint=ftp://x;AccessKey=k", "Endpoint=http://x;Port=0;AccessKey=k"} {
		if _, err := negotiate.New(cs); err == nil {
			t.Errorf("New(%q) accepted", cs)
		}
	}
}
