package auth_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/auth"
)

func TestASRSSignature(t *testing.T) {
	t.Parallel()
	// The emulator's public default key and the test vector of the SignalR spec (§8.2).
	const emulatorKey = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH"
	const other = "second-key/with+base64=chars"
	hexMAC := func(key, msg string) string {
		h := hmac.New(sha256.New, []byte(key))
		h.Write([]byte(msg))
		return strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
	}
	tests := []struct {
		name   string
		keys   []string
		connID string
		want   string
	}{
		{"spec vector", []string{emulatorKey}, "abc",
			"sha256=D4B71F6479906BF45CDC69C969315019A67A52DEAE1EAB86C7A7F3D9B25CD31E"},
		{"two keys, primary first, bare comma", []string{emulatorKey, other}, "abc",
			"sha256=D4B71F6479906BF45CDC69C969315019A67A52DEAE1EAB86C7A7F3D9B25CD31E,sha256=" + hexMAC(other, "abc")},
		{"empty connection id", []string{other}, "", "sha256=" + hexMAC(other, "")},
		{"non-ASCII connection id", []string{other}, "conn-é_1", "sha256=" + hexMAC(other, "conn-é_1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k, err := auth.NewKeyRing(tt.keys...)
			if err != nil {
				t.Fatal(err)
			}
			if got := k.ASRSSignature(tt.connID); got != tt.want {
				t.Errorf("ASRSSignature(%q) = %q, want %q", tt.connID, got, tt.want)
			}
		})
	}
}

// TestASRSSignatureKeyNotDecoded: the HMAC key is the key string's bytes, never its
// base64 decoding, and the hex differs from the Web PubSub signature only in case.
func TestASRSSignatureKeyNotDecoded(t *testing.T) {
	t.Parallel()
	const b64 = "c2VjcmV0LWtleS1ieXRlcw==" // base64 of "secret-key-bytes"
	k, err := auth.NewKeyRing(b64)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := auth.NewKeyRing("secret-key-bytes")
	if err != nil {
		t.Fatal(err)
	}
	got := k.ASRSSignature("c1")
	if got == decoded.ASRSSignature("c1") {
		t.Fatal("signature computed with the base64-decoded key")
	}
	if !strings.EqualFold(got, k.Signature("c1")) {
		t.Fatalf("ASRSSignature %q and Signature %q disagree beyond case", got, k.Signature("c1"))
	}
	if !strings.HasPrefix(got, "sha256=") || strings.ToUpper(got[len("sha256="):]) != got[len("sha256="):] {
		t.Fatalf("%q: want lower-case prefix and upper-case hex", got)
	}
}

func BenchmarkASRSSignature(b *testing.B) {
	k, err := auth.NewKeyRing("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEFGH", "secondary")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = k.ASRSSignature("node1_abcdefghijklmnopqrstuv")
	}
}
