package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/cristalhq/jwt/v4"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

const (
	// ClockSkew is how far exp and nbf may be off and a token still be accepted.
	ClockSkew = 5 * time.Minute
	// DefaultTokenTTL is the lifetime of minted tokens when none is given, as in the SDKs.
	DefaultTokenTTL = time.Hour
	// MaxTokenLength bounds the tokens Verify* will parse; longer ones are malformed.
	MaxTokenLength = 64 << 10
)

// Claim names with a meaning of their own in Web PubSub client tokens.
const (
	claimAudience  = "aud"
	claimExpires   = "exp"
	claimIssuedAt  = "iat"
	claimNotBefore = "nbf"
	claimSubject   = "sub"
	claimRole      = "role"
	claimGroup     = "webpubsub.group"
	// claimNameID is the .NET name-identifier claim, a fallback for sub.
	claimNameID = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"
)

// ClientClaims is what a verified client access token says about the connection.
type ClientClaims struct {
	// UserID is the "sub" claim (or the .NET name-identifier claim); empty for anonymous users.
	UserID string
	// Roles is the "role" claim, which may be a string or an array of strings.
	Roles []string
	// Groups is the "webpubsub.group" claim (string or array): groups to join on connect.
	Groups []string
	// Extra holds every other claim, for the upstream connect event; it excludes aud, exp,
	// iat, nbf, sub, role and webpubsub.group. Numbers are json.Number. Nil when empty.
	Extra map[string]any
	// Expires is the "exp" claim; zero when the token has none.
	Expires time.Time
}

// MintOptions describes a client access token.
type MintOptions struct {
	UserID string   // "sub"; empty for an anonymous user
	Roles  []string // "role", e.g. "webpubsub.joinLeaveGroup"
	Groups []string // "webpubsub.group": groups joined on connect
	// TTL is the token's lifetime; 0 means DefaultTokenTTL (1h). Negative is an error.
	TTL time.Duration
	// Now is the issue time; zero means time.Now().
	Now time.Time
}

// ClientPath returns the request path of the Web PubSub client endpoint for hub,
// "/client/hubs/{hub}", in the decoded form that http.Request.URL.Path has: the expected
// path for [KeyRing.VerifyClientToken].
func ClientPath(hub string) string { return "/client/hubs/" + hub }

// ClientAudience returns the aud the SDKs put in client tokens for hub:
// endpoint (http or https, trailing '/' dropped) + "/client/hubs/" + hub (escaped).
func ClientAudience(endpoint, hub string) string {
	return strings.TrimRight(endpoint, "/") + "/client/hubs/" + url.PathEscape(hub)
}

// MintClientToken returns an HS256 client access token signed with the primary key, with
// aud = audience (see [ClientAudience]), iat, exp, and sub, role and webpubsub.group when set.
func (k *KeyRing) MintClientToken(audience string, o MintOptions) (string, error) {
	if audience == "" {
		return "", errors.New("auth: mint client token: empty audience")
	}
	if o.TTL < 0 {
		return "", fmt.Errorf("auth: mint client token: negative TTL %v", o.TTL)
	}
	claims := k.baseClaims(audience, o.Now, o.TTL)
	if o.UserID != "" {
		claims[claimSubject] = o.UserID
	}
	if len(o.Roles) > 0 {
		claims[claimRole] = append([]string(nil), o.Roles...)
	}
	if len(o.Groups) > 0 {
		claims[claimGroup] = append([]string(nil), o.Groups...)
	}
	return k.sign(claims)
}

// MintServerToken returns an HS256 token for a REST call, signed with the primary key, with
// aud = audience (the request URL) and exp = now + ttl; ttl 0 means DefaultTokenTTL.
func (k *KeyRing) MintServerToken(audience string, ttl time.Duration) (string, error) {
	if audience == "" {
		return "", errors.New("auth: mint server token: empty audience")
	}
	if ttl < 0 {
		return "", fmt.Errorf("auth: mint server token: negative TTL %v", ttl)
	}
	return k.sign(k.baseClaims(audience, time.Time{}, ttl))
}

func (k *KeyRing) baseClaims(audience string, now time.Time, ttl time.Duration) claims {
	if now.IsZero() {
		now = time.Now()
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	return claims{
		claimAudience: audience,
		claimIssuedAt: now.Unix(),
		claimExpires:  now.Add(ttl).Unix(),
	}
}

func (k *KeyRing) sign(c claims) (string, error) {
	t, err := k.builder.Build(c)
	if err != nil {
		return "", fmt.Errorf("auth: sign token: %w", err)
	}
	return t.String(), nil
}

// VerifyClientToken checks a client access token and returns its claims. It accepts HS256,
// HS384 and HS512 signed by any key of the ring, never "none" nor asymmetric algorithms. exp
// (optional for client tokens) and nbf are checked against now with [ClockSkew]; a zero now
// means time.Now(). The token's aud must be a URL whose path, compared case-insensitively
// with repeated and trailing '/' ignored, equals expectedPath, the decoded request path such
// as "/client/hubs/chat" (see [ClientPath]); aud's scheme, host, port and query are ignored
// because reverse proxies change them and Python lower-cases the whole URL.
//
// The error wraps exactly one of the ErrToken… sentinels.
func (k *KeyRing) VerifyClientToken(token, expectedPath string, now time.Time) (*ClientClaims, error) {
	mc, times, err := k.parse(token, now, false)
	if err != nil {
		return nil, err
	}
	auds, err := stringsClaim(mc, claimAudience)
	if err != nil {
		return nil, err
	}
	if err := parseAudience(auds).check(expectedPath); err != nil {
		return nil, err
	}
	return clientClaims(mc, times)
}

// VerifyServerToken checks the bearer token of a REST call, as the server SDKs send it: aud
// is the full request URL including the query. The rules are those of VerifyClientToken
// (path match against requestPath, the decoded request path, ignoring case, trailing '/',
// authority and query) except that exp is required.
//
// The error wraps exactly one of the ErrToken… sentinels.
//
// A token that verified is remembered (see tokenCache): its next uses check exp, nbf and
// aud again but not the signature.
func (k *KeyRing) VerifyServerToken(token, requestPath string, now time.Time) error {
	if now.IsZero() {
		now = time.Now()
	}
	if v, ok := k.verified.get(token); ok {
		if err := v.checkTimes(now); err != nil {
			return err
		}
		return v.aud.check(requestPath)
	}
	mc, times, err := k.parse(token, now, true)
	if err != nil {
		return err
	}
	v, err := newVerifiedToken(mc, times)
	if err != nil {
		return err
	}
	k.verified.put(token, v)
	return v.aud.check(requestPath)
}

// hmacAlgorithms are the algs a token may have: HMAC with a shared access key, as the
// SDKs sign. "none" and the asymmetric algorithms are refused.
var hmacAlgorithms = []jwt.Algorithm{jwt.HS256, jwt.HS384, jwt.HS512}

// claims is a token's payload, decoded with numbers as json.Number.
type claims map[string]any

// parse checks syntax, algorithm and signature, then decodes the claims and checks their
// types, exp and nbf, in that order: the JSON of the claims is read only once a key of the
// ring has verified it. A token with a bad signature is reported as such even when it is
// also expired. It returns the claims and their exp and nbf.
func (k *KeyRing) parse(token string, now time.Time, requireExp bool) (claims, tokenTimes, error) {
	var times tokenTimes
	if token == "" {
		return nil, times, ErrTokenMissing
	}
	if len(token) > MaxTokenLength {
		return nil, times, fmt.Errorf("%w: longer than %d bytes", ErrTokenMalformed, MaxTokenLength)
	}
	if now.IsZero() {
		now = time.Now()
	}
	t, err := jwt.ParseNoVerify([]byte(token))
	if err != nil {
		return nil, times, syntaxError(token, err)
	}
	alg := t.Header().Algorithm
	verifiers := k.verifiers[alg]
	if verifiers == nil {
		return nil, times, fmt.Errorf("%w: alg %s is not HS256, HS384 or HS512", ErrTokenAlgorithm, excerpt.Quote(string(alg)))
	}
	verified := false
	for _, v := range verifiers {
		if v.Verify(t) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, times, fmt.Errorf("%w: no access key verifies the signature", ErrTokenSignature)
	}
	c, err := decodeClaims(t.Claims())
	if err != nil {
		return nil, times, err
	}
	if times.exp, err = c.numericDate(claimExpires); err != nil {
		return nil, times, err
	}
	if times.nbf, err = c.numericDate(claimNotBefore); err != nil {
		return nil, times, err
	}
	if requireExp && times.exp.IsZero() {
		return nil, times, fmt.Errorf("%w: exp is required", ErrTokenMalformed)
	}
	if err := times.checkTimes(now); err != nil {
		return nil, times, err
	}
	return c, times, nil
}

// syntaxError explains why token did not parse: a header that is a JSON object without a
// string alg is an algorithm error, anything else is malformed.
func syntaxError(token string, err error) error {
	head, _, _ := strings.Cut(token, ".")
	if b, derr := base64.RawURLEncoding.DecodeString(head); derr == nil {
		var h map[string]any
		if json.Unmarshal(b, &h) == nil {
			if _, ok := h["alg"].(string); !ok {
				return fmt.Errorf("%w: alg is missing or not a string", ErrTokenAlgorithm)
			}
		}
	}
	return fmt.Errorf("%w: %v", ErrTokenMalformed, err)
}

// decodeClaims decodes a verified payload, which must be one JSON object.
func decodeClaims(payload []byte) (claims, error) {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	var v any // into an interface, encoding/json builds the map without reflection
	err := d.Decode(&v)
	c, ok := v.(map[string]any)
	if err != nil || !ok {
		return nil, fmt.Errorf("%w: the claims are not a JSON object", ErrTokenMalformed)
	}
	if _, err := d.Token(); err == nil {
		return nil, fmt.Errorf("%w: data after the claims object", ErrTokenMalformed)
	}
	return c, nil
}

// maxNumericDate bounds NumericDate claims: 2^53 seconds, some 285 million years.
const maxNumericDate = 1 << 53

// numericDate reads a NumericDate claim (seconds since the epoch, fractions allowed); the
// zero time when the claim is absent or null.
func (c claims) numericDate(name string) (time.Time, error) {
	switch v := c[name].(type) {
	case nil:
		return time.Time{}, nil
	case json.Number:
		f, err := v.Float64()
		if err != nil || math.IsNaN(f) {
			return time.Time{}, fmt.Errorf("%w: %s is not a number", ErrTokenMalformed, name)
		}
		f = max(-maxNumericDate, min(f, maxNumericDate)) // absurd values stay far away, without overflow
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	default:
		return time.Time{}, fmt.Errorf("%w: %s is %s, not a number", ErrTokenMalformed, name, jsonType(v))
	}
}

// audience is a token's aud claim, parsed once: a remembered server token is checked
// against each request's path without parsing its URLs again.
type audience struct {
	claimed bool     // the token has an aud claim
	paths   []string // the normalized paths of the aud values that parse as URLs
}

func parseAudience(auds []string) audience {
	a := audience{claimed: len(auds) > 0}
	for _, aud := range auds {
		if u, err := url.Parse(aud); err == nil {
			a.paths = append(a.paths, normalizePath(u.Path))
		}
	}
	return a
}

// check reports whether any aud entry's path matches path.
func (a audience) check(path string) error {
	if !a.claimed {
		return fmt.Errorf("%w: no aud claim", ErrTokenAudience)
	}
	want := normalizePath(path)
	for _, p := range a.paths {
		if strings.EqualFold(p, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: aud does not name %q", ErrTokenAudience, path)
}

// normalizePath collapses runs of '/' and drops a trailing '/': SDKs that join an endpoint
// ending in '/' with "/client/…" produce "//client/…".
func normalizePath(p string) string {
	if !strings.Contains(p, "//") {
		return strings.TrimRight(p, "/")
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return strings.TrimRight(b.String(), "/")
}

func clientClaims(mc claims, times tokenTimes) (*ClientClaims, error) {
	c := &ClientClaims{Expires: times.exp}
	var err error
	if c.UserID, err = stringClaim(mc, claimSubject); err != nil {
		return nil, err
	}
	if c.UserID == "" {
		if c.UserID, err = stringClaim(mc, claimNameID); err != nil {
			return nil, err
		}
	}
	if c.Roles, err = stringsClaim(mc, claimRole); err != nil {
		return nil, err
	}
	if c.Groups, err = stringsClaim(mc, claimGroup); err != nil {
		return nil, err
	}
	for name, v := range mc {
		switch name {
		case claimAudience, claimExpires, claimIssuedAt, claimNotBefore, claimSubject, claimRole, claimGroup:
			continue
		}
		if c.Extra == nil {
			c.Extra = make(map[string]any, len(mc))
		}
		c.Extra[name] = v
	}
	return c, nil
}

// stringClaim returns a string claim; absent and null are "".
func stringClaim(mc claims, name string) (string, error) {
	switch v := mc[name].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	default:
		return "", fmt.Errorf("%w: %s is %s, not a string", ErrTokenMalformed, name, jsonType(v))
	}
}

// stringsClaim returns a claim that may be a string or an array of strings; empty strings
// are dropped, absent and null are nil.
func stringsClaim(mc claims, name string) ([]string, error) {
	switch v := mc[name].(type) {
	case nil:
		return nil, nil
	case string:
		if v == "" {
			return nil, nil
		}
		return []string{v}, nil
	case []any:
		var out []string
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %s holds %s, not a string", ErrTokenMalformed, name, jsonType(e))
			}
			if s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: %s is %s, not a string or array", ErrTokenMalformed, name, jsonType(v))
	}
}

func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number, float64:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// BearerToken returns the token of an Authorization header value "Bearer <token>"; the
// scheme is case-insensitive. It reports false for other schemes or an empty token.
func BearerToken(headerValue string) (string, bool) {
	const scheme = "bearer"
	h := strings.TrimSpace(headerValue)
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	rest := h[len(scheme):]
	if rest[0] != ' ' && rest[0] != '\t' {
		return "", false
	}
	token := strings.TrimSpace(rest)
	if token == "" {
		return "", false
	}
	return token, true
}
