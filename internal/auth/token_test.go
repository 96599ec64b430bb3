package auth_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cristalhq/jwt/v4"
	"github.com/switchboardhq/switchboard/internal/auth"
)

const (
	testKey      = "primary-key-0123456789"
	testKey2     = "secondary-key-9876543210"
	testEndpoint = "https://switchboard.example.com"
	testHubPath  = "/client/hubs/chat"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

var sentinels = []error{
	auth.ErrTokenMissing, auth.ErrTokenMalformed, auth.ErrTokenSignature,
	auth.ErrTokenExpired, auth.ErrTokenAudience, auth.ErrTokenAlgorithm,
}

func mustRing(tb testing.TB, keys ...string) *auth.KeyRing {
	tb.Helper()
	k, err := auth.NewKeyRing(keys...)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// checkReason fails unless err wraps want and no other sentinel.
func checkReason(tb testing.TB, err, want error) {
	tb.Helper()
	if err == nil {
		tb.Fatalf("error = nil, want %v", want)
	}
	var got []error
	for _, s := range sentinels {
		if errors.Is(err, s) {
			got = append(got, s)
		}
	}
	if len(got) != 1 || got[0] != want {
		tb.Fatalf("error %q wraps %v, want exactly %v", err, got, want)
	}
	if !strings.HasPrefix(err.Error(), "auth: ") {
		tb.Errorf("error %q lacks the auth: prefix", err)
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// handToken builds a JWT from raw header and claims JSON; sign computes the signature of
// the signing input (nil: empty signature).
func handToken(header, claims string, sign func(input string) []byte) string {
	input := b64(header) + "." + b64(claims)
	var sig []byte
	if sign != nil {
		sig = sign(input)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func hmacSigner(h func() hash.Hash, key string) func(string) []byte {
	return func(input string) []byte {
		m := hmac.New(h, []byte(key))
		m.Write([]byte(input))
		return m.Sum(nil)
	}
}

// claimsJSON returns claims with aud for the chat hub and exp an hour after testNow, plus extra.
func claimsJSON(extra map[string]any) string {
	c := map[string]any{
		"aud": testEndpoint + testHubPath,
		"iat": testNow.Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
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

const hs256Header = `{"alg":"HS256","typ":"JWT"}`

func TestMintVerifyClientToken(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey, testKey2)
	aud := auth.ClientAudience(testEndpoint+"/", "chat")
	if aud != testEndpoint+testHubPath {
		t.Fatalf("ClientAudience = %q", aud)
	}
	token, err := k.MintClientToken(aud, auth.MintOptions{
		UserID: "alice",
		Roles:  []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.g1"},
		Groups: []string{"g1", "g2"},
		Now:    testNow,
	})
	if err != nil {
		t.Fatal(err)
	}

	// The header is exactly what the SDKs send, and claims use the SDK names.
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	var h map[string]any
	if err := json.Unmarshal(header, &h); err != nil || h["alg"] != "HS256" || h["typ"] != "JWT" {
		t.Errorf("header = %s", header)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var p map[string]any
	if err := json.Unmarshal(payload, &p); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"aud", "exp", "iat", "sub", "role", "webpubsub.group"} {
		if _, ok := p[name]; !ok {
			t.Errorf("payload %s lacks %q", payload, name)
		}
	}
	if p["exp"].(float64) != float64(testNow.Add(time.Hour).Unix()) {
		t.Errorf("exp = %v, want now+1h (default TTL)", p["exp"])
	}

	c, err := k.VerifyClientToken(token, auth.ClientPath("chat"), testNow.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	want := &auth.ClientClaims{
		UserID:  "alice",
		Roles:   []string{"webpubsub.joinLeaveGroup", "webpubsub.sendToGroup.g1"},
		Groups:  []string{"g1", "g2"},
		Expires: time.Unix(testNow.Add(time.Hour).Unix(), 0),
	}
	if !c.Expires.Equal(want.Expires) {
		t.Errorf("Expires = %v, want %v", c.Expires, want.Expires)
	}
	c.Expires = want.Expires
	if !reflect.DeepEqual(c, want) {
		t.Errorf("claims = %+v, want %+v", c, want)
	}
}

func TestMintClientTokenOptions(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	if _, err := k.MintClientToken("", auth.MintOptions{}); err == nil {
		t.Error("empty audience: want error")
	}
	if _, err := k.MintClientToken(testEndpoint+testHubPath, auth.MintOptions{TTL: -time.Second}); err == nil {
		t.Error("negative TTL: want error")
	}

	// Anonymous token, zero Now: valid now, no sub/role/group, custom TTL honoured.
	token, err := k.MintClientToken(testEndpoint+testHubPath, auth.MintOptions{TTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.VerifyClientToken(token, testHubPath, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if c.UserID != "" || c.Roles != nil || c.Groups != nil || c.Extra != nil {
		t.Errorf("anonymous claims = %+v", c)
	}
	if d := time.Until(c.Expires); d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("Expires in %v, want ~10m", d)
	}
	_, err = k.VerifyClientToken(token, testHubPath, time.Now().Add(16*time.Minute))
	checkReason(t, err, auth.ErrTokenExpired)
}

func TestVerifyClientTokenKeys(t *testing.T) {
	t.Parallel()
	old := mustRing(t, testKey2)
	rotated := mustRing(t, testKey, testKey2)
	other := mustRing(t, "some-other-key")

	token, err := old.MintClientToken(testEndpoint+testHubPath, auth.MintOptions{UserID: "u", Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rotated.VerifyClientToken(token, testHubPath, testNow); err != nil {
		t.Errorf("token signed with the secondary key: %v", err)
	}
	_, err = other.VerifyClientToken(token, testHubPath, testNow)
	checkReason(t, err, auth.ErrTokenSignature)

	// A bad signature is reported as such even when the token is also expired.
	_, err = other.VerifyClientToken(token, testHubPath, testNow.Add(24*time.Hour))
	checkReason(t, err, auth.ErrTokenSignature)

	// HS384 and HS512 tokens (hand-built) verify against the secondary key too.
	for _, tc := range []struct {
		alg string
		h   func() hash.Hash
	}{{"HS384", sha512.New384}, {"HS512", sha512.New}, {"HS256", sha256.New}} {
		tok := handToken(`{"alg":"`+tc.alg+`","typ":"JWT"}`, claimsJSON(nil), hmacSigner(tc.h, testKey2))
		if _, err := rotated.VerifyClientToken(tok, testHubPath, testNow); err != nil {
			t.Errorf("%s: %v", tc.alg, err)
		}
		// Same header with a signature computed by the wrong hash.
		tok = handToken(`{"alg":"`+tc.alg+`","typ":"JWT"}`, claimsJSON(nil), hmacSigner(sha256.New224, testKey2))
		_, err := rotated.VerifyClientToken(tok, testHubPath, testNow)
		checkReason(t, err, auth.ErrTokenSignature)
	}
}

func TestVerifyClientTokenTime(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	sign := hmacSigner(sha256.New, testKey)
	tests := []struct {
		name   string
		claims map[string]any
		want   error // nil: accepted
	}{
		{"valid", nil, nil},
		{"expired beyond skew", map[string]any{"exp": testNow.Add(-6 * time.Minute).Unix()}, auth.ErrTokenExpired},
		{"expired within skew", map[string]any{"exp": testNow.Add(-4 * time.Minute).Unix()}, nil},
		{"nbf in future beyond skew", map[string]any{"nbf": testNow.Add(10 * time.Minute).Unix()}, auth.ErrTokenExpired},
		{"nbf in future within skew", map[string]any{"nbf": testNow.Add(4 * time.Minute).Unix()}, nil},
		{"nbf in past", map[string]any{"nbf": testNow.Add(-time.Hour).Unix()}, nil},
		{"iat in future is not checked", map[string]any{"iat": testNow.Add(time.Hour).Unix()}, nil},
		{"no exp accepted for clients", map[string]any{"exp": nil}, nil},
		{"fractional exp", map[string]any{"exp": float64(testNow.Unix()) + 30.5}, nil},
		{"exp as string", map[string]any{"exp": "tomorrow"}, auth.ErrTokenMalformed},
		{"nbf as bool", map[string]any{"nbf": true}, auth.ErrTokenMalformed},
	}
	// Absurd exp values (beyond int64 seconds, or beyond float64) must not panic and must
	// yield a valid result or a single reason.
	for _, exp := range []any{1e300, -1e300, json.Number("1e400"), 9223372036854775807} {
		token := handToken(hs256Header, claimsJSON(map[string]any{"exp": exp}), sign)
		if _, err := k.VerifyClientToken(token, testHubPath, testNow); err != nil {
			n := 0
			for _, s := range sentinels {
				if errors.Is(err, s) {
					n++
				}
			}
			if n != 1 {
				t.Errorf("exp %v: error %v wraps %d reasons", exp, err, n)
			}
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token := handToken(hs256Header, claimsJSON(tt.claims), sign)
			_, err := k.VerifyClientToken(token, testHubPath, testNow)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			checkReason(t, err, tt.want)
		})
	}
}

func TestVerifyClientTokenAudience(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	sign := hmacSigner(sha256.New, testKey)
	tests := []struct {
		name     string
		aud      any
		path     string
		accepted bool
	}{
		{"exact", testEndpoint + testHubPath, testHubPath, true},
		{"trailing slash on aud", testEndpoint + testHubPath + "/", testHubPath, true},
		{"trailing slash on path", testEndpoint + testHubPath, testHubPath + "/", true},
		{"different host and port (reverse proxy)", "https://public.example.org:8443" + testHubPath, testHubPath, true},
		{"http endpoint", "http://localhost:8080" + testHubPath, testHubPath, true},
		{"query ignored", testEndpoint + testHubPath + "?x=1&hub=other", testHubPath, true},
		{"python lower-cases everything", "https://switchboard.example.com/client/hubs/mychat", "/client/hubs/MyChat", true},
		{"upper-case aud", "HTTPS://SWITCHBOARD.EXAMPLE.COM/CLIENT/HUBS/CHAT", testHubPath, true},
		{"double slash from endpoint with slash", testEndpoint + "/" + testHubPath, testHubPath, true},
		{"percent-encoded hub", testEndpoint + "/client/hubs/ch%61t", testHubPath, true},
		{"bare path", testHubPath, testHubPath, true},
		{"array with a match", []string{"https://a/other", testEndpoint + testHubPath}, testHubPath, true},
		{"other hub", testEndpoint + "/client/hubs/other", testHubPath, false},
		{"hub prefix", testEndpoint + "/client/hubs/cha", testHubPath, false},
		{"hub suffix", testEndpoint + "/client/hubs/chat2", testHubPath, false},
		{"rest path", testEndpoint + "/api/hubs/chat", testHubPath, false},
		{"mqtt path", testEndpoint + "/clients/mqtt/hubs/chat", testHubPath, false},
		{"host only", testEndpoint, testHubPath, false},
		{"not a url", "chat", testHubPath, false},
		{"bad escape", testEndpoint + "/client/hubs/%zz", testHubPath, false},
		{"empty", "", testHubPath, false},
		{"array without a match", []string{"https://a/x", "https://b/y"}, testHubPath, false},
		{"missing", nil, testHubPath, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			claims := map[string]any{"aud": tt.aud}
			token := handToken(hs256Header, claimsJSON(claims), sign)
			_, err := k.VerifyClientToken(token, tt.path, testNow)
			if tt.accepted {
				if err != nil {
					t.Fatalf("aud %v for %q rejected: %v", tt.aud, tt.path, err)
				}
				return
			}
			checkReason(t, err, auth.ErrTokenAudience)
		})
	}

	// aud of the wrong JSON type is malformed.
	token := handToken(hs256Header, claimsJSON(map[string]any{"aud": 42}), sign)
	_, err := k.VerifyClientToken(token, testHubPath, testNow)
	checkReason(t, err, auth.ErrTokenMalformed)
}

func TestVerifyClientTokenAlgorithm(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	claims := claimsJSON(nil)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsSigner, err := jwt.NewSignerRS(jwt.RS256, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	rsToken, err := jwt.NewBuilder(rsSigner).Build(map[string]any{
		"aud": testEndpoint + testHubPath, "exp": testNow.Add(time.Hour).Unix(),
	})
	if err != nil {
		t.Fatal(err)
	}
	rs256 := rsToken.String()

	tests := []struct {
		name  string
		token string
	}{
		{"alg none, empty signature", handToken(`{"alg":"none","typ":"JWT"}`, claims, nil)},
		{"alg none, HMAC signature", handToken(`{"alg":"none","typ":"JWT"}`, claims, hmacSigner(sha256.New, testKey))},
		{"alg None", handToken(`{"alg":"None","typ":"JWT"}`, claims, nil)},
		{"alg RS256 with HMAC signature (key confusion)", handToken(`{"alg":"RS256","typ":"JWT"}`, claims, hmacSigner(sha256.New, testKey))},
		{"alg RS256 properly signed", rs256},
		{"alg ES256", handToken(`{"alg":"ES256"}`, claims, hmacSigner(sha256.New, testKey))},
		{"alg EdDSA", handToken(`{"alg":"EdDSA"}`, claims, hmacSigner(sha256.New, testKey))},
		{"alg missing", handToken(`{"typ":"JWT"}`, claims, hmacSigner(sha256.New, testKey))},
		{"alg not a string", handToken(`{"alg":256}`, claims, hmacSigner(sha256.New, testKey))},
		{"alg lower-case", handToken(`{"alg":"hs256"}`, claims, hmacSigner(sha256.New, testKey))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := k.VerifyClientToken(tt.token, testHubPath, testNow)
			checkReason(t, err, auth.ErrTokenAlgorithm)
			err = k.VerifyServerToken(tt.token, testHubPath, testNow)
			checkReason(t, err, auth.ErrTokenAlgorithm)
		})
	}
}

func TestVerifyClientTokenMalformed(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	sign := hmacSigner(sha256.New, testKey)
	valid := handToken(hs256Header, claimsJSON(nil), sign)
	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"empty", "", auth.ErrTokenMissing},
		{"one part", "abc", auth.ErrTokenMalformed},
		{"two parts", "abc.def", auth.ErrTokenMalformed},
		{"four parts", valid + ".x", auth.ErrTokenMalformed},
		{"dots only", "..", auth.ErrTokenMalformed},
		{"spaces", "   ", auth.ErrTokenMalformed},
		{"bearer prefix left on", "Bearer " + valid, auth.ErrTokenMalformed},
		{"header not base64", "!!!." + strings.SplitN(valid, ".", 2)[1], auth.ErrTokenMalformed},
		{"header not json", b64("nope") + "." + b64(claimsJSON(nil)) + ".sig", auth.ErrTokenMalformed},
		{"claims not json", handToken(hs256Header, "{", sign), auth.ErrTokenMalformed},
		// The claims are read only after the signature verified.
		{"claims not json, not signed", b64(hs256Header) + "." + b64("{") + ".sig", auth.ErrTokenSignature},
		{"claims followed by more", handToken(hs256Header, claimsJSON(nil)+"{}", sign), auth.ErrTokenMalformed},
		{"exp a string", handToken(hs256Header, claimsJSON(map[string]any{"exp": "soon"}), sign), auth.ErrTokenMalformed},
		{"claims an array", handToken(hs256Header, `[1,2]`, sign), auth.ErrTokenMalformed},
		{"signature not base64", b64(hs256Header) + "." + b64(claimsJSON(nil)) + ".***", auth.ErrTokenMalformed},
		{"padded segments", strings.ReplaceAll(base64.URLEncoding.EncodeToString([]byte(hs256Header))+"."+b64(claimsJSON(nil)), "=", "") + ".=", auth.ErrTokenMalformed},
		{"too long", strings.Repeat("a", auth.MaxTokenLength+1), auth.ErrTokenMalformed},
		{"valid but truncated signature", valid[:len(valid)-4], auth.ErrTokenSignature},
		{"signature of other claims", strings.SplitN(valid, ".", 2)[0] + "." + b64(claimsJSON(map[string]any{"sub": "mallory"})) + "." + strings.Split(valid, ".")[2], auth.ErrTokenSignature},
		{"sub a number", handToken(hs256Header, claimsJSON(map[string]any{"sub": 7}), sign), auth.ErrTokenMalformed},
		{"role an object", handToken(hs256Header, claimsJSON(map[string]any{"role": map[string]any{}}), sign), auth.ErrTokenMalformed},
		{"group holds a number", handToken(hs256Header, claimsJSON(map[string]any{"webpubsub.group": []any{"a", 1}}), sign), auth.ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := k.VerifyClientToken(tt.token, testHubPath, testNow)
			if c != nil {
				t.Errorf("claims = %+v, want nil", c)
			}
			checkReason(t, err, tt.want)
		})
	}
}

func TestVerifyClientTokenClaims(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	sign := hmacSigner(sha256.New, testKey)
	const nameID = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
	tests := []struct {
		name   string
		claims map[string]any
		want   auth.ClientClaims
	}{
		{"role and group as strings", map[string]any{"role": "webpubsub.joinLeaveGroup", "webpubsub.group": "g1"},
			auth.ClientClaims{Roles: []string{"webpubsub.joinLeaveGroup"}, Groups: []string{"g1"}}},
		{"role and group as arrays", map[string]any{"role": []string{"a", "b"}, "webpubsub.group": []string{"g1", "g2"}},
			auth.ClientClaims{Roles: []string{"a", "b"}, Groups: []string{"g1", "g2"}}},
		{"empty entries dropped", map[string]any{"role": []string{"", "a"}, "webpubsub.group": ""},
			auth.ClientClaims{Roles: []string{"a"}}},
		{"empty arrays", map[string]any{"role": []string{}, "webpubsub.group": []string{}},
			auth.ClientClaims{}},
		{"null claims", map[string]any{"sub": json.RawMessage("null"), "role": json.RawMessage("null")},
			auth.ClientClaims{}},
		{"sub", map[string]any{"sub": "bob"}, auth.ClientClaims{UserID: "bob"}},
		{".NET name identifier fallback", map[string]any{nameID: "carol"},
			auth.ClientClaims{UserID: "carol", Extra: map[string]any{nameID: "carol"}}},
		{"sub wins over name identifier", map[string]any{"sub": "bob", nameID: "carol"},
			auth.ClientClaims{UserID: "bob", Extra: map[string]any{nameID: "carol"}}},
		{"extra claims", map[string]any{"nbf": testNow.Unix(), "iss": "me", "tenant": "t1", "n": 12345678901234567, "obj": map[string]any{"a": true}},
			auth.ClientClaims{Extra: map[string]any{"iss": "me", "tenant": "t1", "n": json.Number("12345678901234567"), "obj": map[string]any{"a": true}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token := handToken(hs256Header, claimsJSON(tt.claims), sign)
			c, err := k.VerifyClientToken(token, testHubPath, testNow)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Expires = time.Unix(testNow.Add(time.Hour).Unix(), 0)
			if !c.Expires.Equal(want.Expires) {
				t.Errorf("Expires = %v, want %v", c.Expires, want.Expires)
			}
			c.Expires = want.Expires
			if !reflect.DeepEqual(*c, want) {
				t.Errorf("claims = %#v\nwant     %#v", *c, want)
			}
		})
	}
}

func TestVerifyServerToken(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey, testKey2)
	sign := hmacSigner(sha256.New, testKey2)
	const path = "/api/hubs/chat/users/a b/:send"

	// As the JS SDK sends it: full URL with query, percent-encoded.
	token, err := k.MintServerToken("https://host.example.com/api/hubs/chat/users/a%20b/:send?api-version=2024-12-01", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.VerifyServerToken(token, path, time.Time{}); err != nil {
		t.Fatalf("SDK-style token: %v", err)
	}
	err = k.VerifyServerToken(token, path, time.Now().Add(time.Hour+6*time.Minute))
	checkReason(t, err, auth.ErrTokenExpired)
	if _, err := k.MintServerToken("", 0); err == nil {
		t.Error("empty audience: want error")
	}
	if _, err := k.MintServerToken("https://h/api", -1); err == nil {
		t.Error("negative TTL: want error")
	}

	tests := []struct {
		name   string
		claims map[string]any
		path   string
		want   error
	}{
		{"python, 60s, lower-case, query", map[string]any{"aud": "http://localhost:8080/api/hubs/chat/:send?api-version=2024-12-01", "exp": testNow.Add(time.Minute).Unix()}, "/api/hubs/Chat/:send", nil},
		{".NET with nbf", map[string]any{"aud": "https://h/api/hubs/chat/:send?api-version=2024-12-01", "nbf": testNow.Unix(), "exp": testNow.Add(5 * time.Minute).Unix()}, "/api/hubs/chat/:send", nil},
		{"docs style, no query", map[string]any{"aud": "https://h/api/hubs/chat/:send"}, "/api/hubs/chat/:send", nil},
		{"apim reverse proxy host", map[string]any{"aud": "https://apim.example.net/api/hubs/chat/:send?api-version=2024-12-01"}, "/api/hubs/chat/:send", nil},
		{"missing exp", map[string]any{"aud": "https://h/api/hubs/chat/:send", "exp": nil}, "/api/hubs/chat/:send", auth.ErrTokenMalformed},
		{"expired", map[string]any{"aud": "https://h/api/hubs/chat/:send", "exp": testNow.Add(-10 * time.Minute).Unix()}, "/api/hubs/chat/:send", auth.ErrTokenExpired},
		{"nbf future", map[string]any{"aud": "https://h/api/hubs/chat/:send", "nbf": testNow.Add(10 * time.Minute).Unix()}, "/api/hubs/chat/:send", auth.ErrTokenExpired},
		{"other operation", map[string]any{"aud": "https://h/api/hubs/chat/:closeConnections"}, "/api/hubs/chat/:send", auth.ErrTokenAudience},
		{"other hub", map[string]any{"aud": "https://h/api/hubs/other/:send"}, "/api/hubs/chat/:send", auth.ErrTokenAudience},
		{"no aud", map[string]any{"aud": nil}, "/api/hubs/chat/:send", auth.ErrTokenAudience},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token := handToken(hs256Header, claimsJSON(tt.claims), sign)
			err := k.VerifyServerToken(token, tt.path, testNow)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			checkReason(t, err, tt.want)
		})
	}

	checkReason(t, k.VerifyServerToken("", "/api/hubs/chat/:send", testNow), auth.ErrTokenMissing)
	wrong := handToken(hs256Header, claimsJSON(map[string]any{"aud": "https://h/api/hubs/chat/:send"}), hmacSigner(sha256.New, "nope"))
	checkReason(t, k.VerifyServerToken(wrong, "/api/hubs/chat/:send", testNow), auth.ErrTokenSignature)
}

// A server token that verified is remembered; every later use must still check its
// times and its audience, and a token that differs in any byte is verified afresh.
func TestVerifyServerTokenRemembered(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	const path = "/api/hubs/chat/:send"
	claims := claimsJSON(map[string]any{"aud": "https://h" + path, "nbf": testNow.Add(time.Minute).Unix()})
	token := handToken(hs256Header, claims, hmacSigner(sha256.New, testKey))

	// Not valid yet at first: refused and not remembered.
	checkReason(t, k.VerifyServerToken(token, path, testNow.Add(-10*time.Minute)), auth.ErrTokenExpired)
	if err := k.VerifyServerToken(token, path, testNow); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	for range 3 {
		if err := k.VerifyServerToken(token, path, testNow.Add(time.Minute)); err != nil {
			t.Fatalf("valid token, again: %v", err)
		}
	}
	checkReason(t, k.VerifyServerToken(token, path, testNow.Add(-10*time.Minute)), auth.ErrTokenExpired)
	checkReason(t, k.VerifyServerToken(token, path, testNow.Add(time.Hour+6*time.Minute)), auth.ErrTokenExpired)
	checkReason(t, k.VerifyServerToken(token, "/api/hubs/other/:send", testNow), auth.ErrTokenAudience)

	forged := handToken(hs256Header, claims, hmacSigner(sha256.New, "not-the-key"))
	checkReason(t, k.VerifyServerToken(forged, path, testNow), auth.ErrTokenSignature)
	truncated := token[:len(token)-1]
	if err := k.VerifyServerToken(truncated, path, testNow); err == nil {
		t.Fatal("a token with a byte less was accepted")
	}
}

// The cache of verified tokens is bounded: many distinct tokens neither fail nor grow it
// without end, and each is still checked.
func TestVerifyServerTokenManyTokens(t *testing.T) {
	t.Parallel()
	k := mustRing(t, testKey)
	const path = "/api/hubs/chat/:send"
	for i := range 10_000 {
		token := handToken(hs256Header, claimsJSON(map[string]any{"aud": "https://h" + path, "jti": i}), hmacSigner(sha256.New, testKey))
		if err := k.VerifyServerToken(token, path, testNow); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		checkReason(t, k.VerifyServerToken(token, "/api/hubs/other/:send", testNow), auth.ErrTokenAudience)
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{"Bearer abc.def.ghi", "abc.def.ghi", true},
		{"bearer abc", "abc", true},
		{"BEARER   abc  ", "abc", true},
		{"Bearer\tabc", "abc", true},
		{"  Bearer abc", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Bearerabc", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"abc.def.ghi", "", false},
		{"", "", false},
		{"Bear abc", "", false},
	}
	for _, tt := range tests {
		got, ok := auth.BearerToken(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("BearerToken(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func BenchmarkVerifyClientToken(b *testing.B) {
	k := mustRing(b, testKey, testKey2)
	token, err := k.MintClientToken(testEndpoint+testHubPath, auth.MintOptions{
		UserID: "alice", Roles: []string{"webpubsub.joinLeaveGroup"}, Groups: []string{"g1"},
	})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.VerifyClientToken(token, testHubPath, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyServerToken is a REST caller sending many requests with one token, as a
// backend publishing to one URL does: the signature is checked once.
func BenchmarkVerifyServerToken(b *testing.B) {
	k := mustRing(b, testKey, testKey2)
	u := "https://h.example.com/api/hubs/chat/groups/g1/:send?api-version=2024-12-01"
	token, err := k.MintServerToken(u, 0)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if err := k.VerifyServerToken(token, "/api/hubs/chat/groups/g1/:send", now); err != nil {
			b.Fatal(err)
		}
	}
}
