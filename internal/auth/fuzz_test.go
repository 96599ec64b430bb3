package auth_test

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// FuzzVerifyClientToken checks that no token or path makes verification panic, that every
// rejection carries exactly one reason, and that accepted tokens yield sane claims. Seeds
// come from the table tests' shapes: SDK tokens, hand-built ones with odd claims, and junk.
func FuzzVerifyClientToken(f *testing.F) {
	k := mustRing(f, testKey, testKey2)
	sign := hmacSigner(sha256.New, testKey)
	minted, err := k.MintClientToken(testEndpoint+testHubPath, auth.MintOptions{
		UserID: "u", Roles: []string{"r"}, Groups: []string{"g"}, Now: testNow,
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		minted,
		handToken(hs256Header, claimsJSON(map[string]any{"role": "a", "webpubsub.group": []any{"x", 1}}), sign),
		handToken(hs256Header, claimsJSON(map[string]any{"aud": []any{"x", testHubPath}, "nbf": "soon"}), sign),
		handToken(hs256Header, `{"exp":1e999,"aud":"/client/hubs/chat"}`, sign),
		handToken(hs256Header, `null`, sign),
		handToken(`{"alg":"none"}`, claimsJSON(nil), nil),
		handToken(`{"alg":"RS256"}`, claimsJSON(nil), sign),
		handToken(`{}`, `{}`, nil),
		"", ".", "..", "...", "a.b.c", "Bearer x", strings.Repeat(".", 100),
	} {
		f.Add(seed, testHubPath)
	}
	f.Add(minted, "")
	f.Add(minted, "/client/hubs/CHAT/")

	f.Fuzz(func(t *testing.T, token, path string) {
		// Other parsers of untrusted strings must not panic either.
		if err := k.VerifyServerToken(token, path, testNow); err == nil && token == "" {
			t.Fatal("empty server token accepted")
		}
		_ = k.CheckReconnectionToken(path, token)
		_ = k.CheckSignature(path, token)
		_, _ = auth.BearerToken(token)
		_, _, _ = auth.ParseConnectionString(token)

		c, err := k.VerifyClientToken(token, path, testNow)
		if err != nil {
			if c != nil {
				t.Fatalf("claims %+v returned with error %v", c, err)
			}
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error %q wraps %d reasons", err, n)
			}
			return
		}
		if c == nil {
			t.Fatal("nil claims without error")
		}
		if !c.Expires.IsZero() && c.Expires.Before(testNow.Add(-auth.ClockSkew)) {
			t.Fatalf("accepted token expired at %v", c.Expires)
		}
	})
}
