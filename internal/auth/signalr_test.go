package auth_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// The spec's test vector (§3.2): the emulator key, HS256, compact JSON as Newtonsoft writes it.
const (
	emulatorKey   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
	specVectorJWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhc3JzLnMudWlkIjoidXNlcjEiLCJuYmYiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMzYwMCwiaWF0IjoxNzAwMDAwMDAwLCJhdWQiOiJodHRwOi8vbG9jYWxob3N0L2NsaWVudC8_aHViPWNoYXQifQ.coRic5HEHnNf2hrMjEgNSS7EO7CIAOdnlY2Di9aopzY"
)

func TestVerifySignalRClientTokenSpecVector(t *testing.T) {
	ring := mustRing(t, "some-other-key", emulatorKey)
	now := time.Unix(1700000100, 0)
	c, err := ring.VerifySignalRClientToken(specVectorJWT, "Chat", now)
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "user1" || c.Expires.Unix() != 1700003600 || len(c.Claims) != 0 {
		t.Fatalf("claims = %+v", c)
	}
	_, err = ring.VerifySignalRClientToken(specVectorJWT, "other", now)
	checkReason(t, err, auth.ErrTokenAudience)
	_, err = ring.VerifySignalRClientToken(specVectorJWT, "chat", time.Unix(1700003600, 0).Add(auth.ClockSkew+time.Second))
	checkReason(t, err, auth.ErrTokenExpired)
	_, err = mustRing(t, "wrong").VerifySignalRClientToken(specVectorJWT, "chat", now)
	checkReason(t, err, auth.ErrTokenSignature)
}

func signalRClaimsJSON(extra map[string]any) string {
	c := map[string]any{
		"aud": "http://sr.example.com/client/?hub=chat",
		"exp": testNow.Add(time.Hour).Unix(),
		"iat": testNow.Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestVerifySignalRClientTokenAudience(t *testing.T) {
	ring := mustRing(t, testKey)
	for _, tc := range []struct {
		name string
		aud  any
		ok   bool
	}{
		{"sdk form, port dropped", "https://sr.example.com/client/?hub=chat", true},
		{"docs form keeps hub casing", "http://localhost:8081/client/?hub=Chat", true},
		{"no trailing slash", "http://localhost/client?hub=chat", true},
		{"extra query", "http://localhost/client/?hub=chat&asrs.op=%2Fchat", true},
		{"array with one match", []string{"http://x/api/hubs/chat", "http://x/client/?hub=chat"}, true},
		{"other hub", "http://localhost/client/?hub=chat2", false},
		{"no hub", "http://localhost/client/", false},
		{"web pubsub path", "http://localhost/client/hubs/chat", false},
		{"rest path", "http://localhost/api/hubs/chat", false},
		{"missing", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := handToken(hs256Header, signalRClaimsJSON(map[string]any{"aud": tc.aud}), hmacSigner(sha256.New, testKey))
			_, err := ring.VerifySignalRClientToken(tok, "chat", testNow)
			if tc.ok && err != nil {
				t.Fatal(err)
			}
			if !tc.ok {
				checkReason(t, err, auth.ErrTokenAudience)
			}
		})
	}
}

func TestVerifySignalRClientTokenRules(t *testing.T) {
	ring := mustRing(t, testKey, testKey2)
	// HS512 with a kid header, signed by the secondary key: kid never selects a key.
	tok := handToken(`{"alg":"HS512","typ":"JWT","kid":"-123456"}`, signalRClaimsJSON(nil), hmacSigner(sha512.New, testKey2))
	if _, err := ring.VerifySignalRClientToken(tok, "chat", testNow); err != nil {
		t.Fatalf("HS512 + kid: %v", err)
	}
	// exp is required.
	tok = handToken(hs256Header, signalRClaimsJSON(map[string]any{"exp": nil}), hmacSigner(sha256.New, testKey))
	_, err := ring.VerifySignalRClientToken(tok, "chat", testNow)
	checkReason(t, err, auth.ErrTokenMalformed)
	// alg none.
	tok = handToken(`{"alg":"none","typ":"JWT"}`, signalRClaimsJSON(nil), nil)
	_, err = ring.VerifySignalRClientToken(tok, "chat", testNow)
	checkReason(t, err, auth.ErrTokenAlgorithm)
	// A bad transports mask is malformed.
	tok = handToken(hs256Header, signalRClaimsJSON(map[string]any{"asrs.s.htt": "9"}), hmacSigner(sha256.New, testKey))
	_, err = ring.VerifySignalRClientToken(tok, "chat", testNow)
	checkReason(t, err, auth.ErrTokenMalformed)
}

func TestVerifySignalRClientTokenClaims(t *testing.T) {
	ring := mustRing(t, testKey)
	for _, tc := range []struct {
		name   string
		extra  map[string]any
		user   string
		claims [][2]string
		htt    int
		derr   bool
	}{
		{name: "asrs.s.uid wins", extra: map[string]any{"asrs.s.uid": "u1", "nameid": "n1", "sub": "s1"}, user: "u1",
			claims: [][2]string{{"nameid", "n1"}, {"sub", "s1"}}},
		{name: "nameid before sub", extra: map[string]any{"nameid": "n1", "sub": "s1"}, user: "n1",
			claims: [][2]string{{"nameid", "n1"}, {"sub", "s1"}}},
		{name: "long name identifier", extra: map[string]any{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier": "l1"}, user: "l1",
			claims: [][2]string{{"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier", "l1"}}},
		{name: "sub alone", extra: map[string]any{"sub": "s1"}, user: "s1", claims: [][2]string{{"sub", "s1"}}},
		{name: "anonymous", extra: nil, user: ""},
		{name: "arrays, renamed user claims, system claims dropped",
			extra:  map[string]any{"role": []string{"a", "b"}, "asrs.u.aud": "mine", "asrs.s.htt": 5, "asrs.s.derror": "True", "n": 3},
			claims: [][2]string{{"aud", "mine"}, {"n", "3"}, {"role", "a"}, {"role", "b"}}, htt: 5, derr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := handToken(hs256Header, signalRClaimsJSON(tc.extra), hmacSigner(sha256.New, testKey))
			c, err := ring.VerifySignalRClientToken(tok, "chat", testNow)
			if err != nil {
				t.Fatal(err)
			}
			if c.UserID != tc.user || !reflect.DeepEqual(c.Claims, tc.claims) || c.Transports != tc.htt || c.DetailedErrors != tc.derr {
				t.Fatalf("got user %q claims %v htt %d derror %v; want %q %v %d %v", c.UserID, c.Claims, c.Transports, c.DetailedErrors,
					tc.user, tc.claims, tc.htt, tc.derr)
			}
		})
	}
}

func TestMintSignalRClientToken(t *testing.T) {
	ring := mustRing(t, testKey)
	aud := auth.SignalRClientAudience("http://localhost:8081/", "Chat Room")
	if aud != "http://localhost:8081/client/?hub=Chat+Room" {
		t.Fatalf("audience = %q", aud)
	}
	tok, err := ring.MintSignalRClientToken(auth.SignalRClientAudience("http://localhost:8081", "chat"), "u1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ring.VerifySignalRClientToken(tok, "CHAT", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "u1" || time.Until(c.Expires) > time.Minute+time.Second {
		t.Fatalf("claims = %+v", c)
	}
	if _, err := ring.MintSignalRClientToken("", "u", 0); err == nil {
		t.Fatal("empty audience accepted")
	}
	if _, err := ring.MintSignalRClientToken(aud, "u", -time.Second); err == nil {
		t.Fatal("negative ttl accepted")
	}
}
