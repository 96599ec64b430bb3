package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestReconnectionToken(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	const conn = "conn-abc_123"
	token := k.ReconnectionToken(conn)
	if token == "" || strings.ContainsAny(token, "+/=") {
		t.Fatalf("token %q is not unpadded base64url", token)
	}
	if token != k.ReconnectionToken(conn) {
		t.Fatal("token is not deterministic")
	}
	if strings.Contains(token, conn) {
		t.Fatal("token reveals the connection id")
	}
	if !k.CheckReconnectionToken(conn, token) {
		t.Fatal("own token rejected")
	}

	// Key rotation: a token issued under the old primary is accepted while that key is
	// secondary, and rejected once it is dropped.
	rotated := mustRing(t, testKey2, testKey)
	if !rotated.CheckReconnectionToken(conn, token) {
		t.Error("token from the secondary key rejected")
	}
	if mustRing(t, testKey2).CheckReconnectionToken(conn, token) {
		t.Error("token accepted after its key was dropped")
	}

	other := k.ReconnectionToken("conn-other")
	flipped := []byte(token)
	flipped[0] ^= 'A' ^ 'B'
	if flipped[0] == token[0] {
		flipped[0] = 'C'
	}
	for _, bad := range []string{
		"", other, token[:len(token)-1], token + "A", string(flipped),
		strings.ToUpper(token), strings.Repeat("*", len(token)), token + "==",
		// The webhook signature of conn must not double as its reconnection token.
		strings.TrimPrefix(k.Signature(conn), "sha256="),
	} {
		if bad == token {
			continue
		}
		if k.CheckReconnectionToken(conn, bad) {
			t.Errorf("CheckReconnectionToken(%q, %q) = true", conn, bad)
		}
	}
	if k.CheckReconnectionToken("conn-other", token) {
		t.Error("token accepted for another connection")
	}
	if k.CheckReconnectionToken(conn+"x", token) || k.CheckReconnectionToken("", token) {
		t.Error("token accepted for a longer or empty connection id")
	}
}

func TestSignature(t *testing.T) {
	t.Parallel()
	const conn = "0f6b3c1e-conn"
	sig := func(key string) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write([]byte(conn))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}

	one := mustRing(t, testKey)
	if got, want := one.Signature(conn), sig(testKey); got != want {
		t.Errorf("one key: Signature = %q, want %q", got, want)
	}

	two := mustRing(t, testKey, testKey2)
	got := two.Signature(conn)
	if want := sig(testKey) + "," + sig(testKey2); got != want {
		t.Fatalf("two keys: Signature = %q, want %q", got, want)
	}
	parts := strings.Split(got, ",")
	if len(parts) != 2 || len(parts[0]) != len("sha256=")+64 {
		t.Fatalf("Signature %q: want two sha256=<64 hex> entries", got)
	}
	// Spec §5.6 worked by hand: the value depends only on key and connection id.
	if two.Signature("other") == got {
		t.Error("signature does not depend on the connection id")
	}

	// CheckSignature accepts what an upstream receives, in any case and key order.
	for _, header := range []string{
		got,
		sig(testKey2),
		strings.ToUpper(sig(testKey)),
		"sha256=" + strings.Repeat("0", 64) + ", " + sig(testKey2),
	} {
		if !two.CheckSignature(conn, header) {
			t.Errorf("CheckSignature(%q) = false", header)
		}
	}
	for _, header := range []string{
		"", "sha256=", sig("wrong"), "sha1=" + strings.TrimPrefix(sig(testKey), "sha256="),
		strings.TrimPrefix(sig(testKey), "sha256="), sig(testKey)[:70], sig(testKey) + "00",
		"sha256=" + strings.Repeat("zz", 32),
	} {
		if two.CheckSignature(conn, header) {
			t.Errorf("CheckSignature(%q) = true", header)
		}
	}
	if two.CheckSignature("other", got) {
		t.Error("signature accepted for another connection")
	}
}
