package auth_test

import (
	"errors"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// TestInspect: the kind comes from the aud, and the verdict is the server's answer for that
// use, with its reason.
func TestInspect(t *testing.T) {
	ring, err := auth.NewKeyRing("primary-access-key", "secondary-access-key")
	if err != nil {
		t.Fatal(err)
	}
	other, err := auth.NewKeyRing("another-access-key")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	const ep = "https://pubsub.example.com"
	client, err := ring.MintClientToken(auth.ClientAudience(ep, "chat"), auth.MintOptions{UserID: "ann", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	expired, err := ring.MintClientToken(auth.ClientAudience(ep, "chat"), auth.MintOptions{Now: now.Add(-3 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.MintClientToken(auth.ClientAudience(ep, "chat"), auth.MintOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	server, err := ring.MintServerToken(ep+"/api/hubs/chat/:send?api-version=2024-01-01", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	sr, err := ring.MintSignalRClientToken(auth.SignalRClientAudience(ep, "Chat"), "ann", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token, hub string
		at               time.Time
		kind             auth.TokenKind
		wantHub          string
		want             error // nil: accepted
	}{
		{"client", client, "", now, auth.KindClient, "chat", nil},
		{"client for another hub", client, "news", now, auth.KindClient, "news", auth.ErrTokenAudience},
		{"expired", expired, "", now, auth.KindClient, "chat", auth.ErrTokenExpired},
		{"other keys", foreign, "", now, auth.KindClient, "chat", auth.ErrTokenSignature},
		{"server", server, "", time.Now(), auth.KindServer, "", nil},
		{"signalr", sr, "", time.Now(), auth.KindSignalRClient, "Chat", nil},
	} {
		in, err := ring.Inspect(tc.token, tc.hub, tc.at)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if in.Kind != tc.kind || in.Hub != tc.wantHub {
			t.Errorf("%s: kind %q hub %q, want %q %q", tc.name, in.Kind, in.Hub, tc.kind, tc.wantHub)
		}
		if (tc.want == nil) != (in.Verdict == nil) || (tc.want != nil && !errors.Is(in.Verdict, tc.want)) {
			t.Errorf("%s: verdict %v, want %v", tc.name, in.Verdict, tc.want)
		}
	}
	if in, err := ring.Inspect(server, "", time.Now()); err != nil || in.Path != "/api/hubs/chat/:send" {
		t.Errorf("server token path: %+v %v", in, err)
	}
	for _, bad := range []string{"", "a.b", "!!!.e30.sig", "e30.bm90IGpzb24.sig"} {
		if _, err := ring.Inspect(bad, "", now); !errors.Is(err, auth.ErrTokenMalformed) {
			t.Errorf("Inspect(%q) = %v, want ErrTokenMalformed", bad, err)
		}
	}
}
