package auth

import (
	"fmt"
	"sync"
	"time"
)

// tokenCacheSize bounds the verified server tokens a KeyRing remembers.
const tokenCacheSize = 4096

// tokenCache remembers the server tokens a KeyRing has verified, so that a REST caller
// sending many requests with one token pays for the signature and the JSON once: the
// server SDKs mint a token per request URL whose claims change once a second, and a
// backend publishing to one group sends the same token many times a second. The key is
// the whole token, signature included, so only a token that verified is ever found; its
// exp and nbf are checked again on every use, and its aud against each request's path.
// When full, the cache is emptied.
type tokenCache struct {
	mu sync.Mutex
	m  map[string]verifiedToken
}

// verifiedToken is what a server token's verification needs again.
type verifiedToken struct {
	aud      audience
	exp, nbf time.Time // zero when absent (exp is required, so never zero here)
}

func (c *tokenCache) get(token string) (verifiedToken, bool) {
	c.mu.Lock()
	v, ok := c.m[token]
	c.mu.Unlock()
	return v, ok
}

func (c *tokenCache) put(token string, v verifiedToken) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= tokenCacheSize {
		c.m = make(map[string]verifiedToken, 64)
	}
	c.m[token] = v
	c.mu.Unlock()
}

// newVerifiedToken extracts what a later check of the same token needs from its claims.
func newVerifiedToken(mc claims) (verifiedToken, error) {
	var v verifiedToken
	auds, err := stringsClaim(mc, claimAudience)
	if err != nil {
		return v, err
	}
	v.aud = parseAudience(auds)
	if v.exp, err = mc.numericDate(claimExpires); err != nil {
		return v, err
	}
	if v.nbf, err = mc.numericDate(claimNotBefore); err != nil {
		return v, err
	}
	return v, nil
}

// checkTimes applies the parser's rules for exp and nbf, with ClockSkew, at now.
func (v verifiedToken) checkTimes(now time.Time) error {
	if !v.exp.IsZero() && !now.Before(v.exp.Add(ClockSkew)) {
		return fmt.Errorf("%w: token is expired", ErrTokenExpired)
	}
	if !v.nbf.IsZero() && now.Add(ClockSkew).Before(v.nbf) {
		return fmt.Errorf("%w: token is not valid yet", ErrTokenExpired)
	}
	return nil
}
