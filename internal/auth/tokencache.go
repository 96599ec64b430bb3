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
	aud audience
	tokenTimes
}

// tokenTimes are a token's exp and nbf; zero when absent (a server token's exp is required).
type tokenTimes struct {
	exp, nbf time.Time
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

// newVerifiedToken is what a later check of the same token needs: its aud, parsed once,
// and its times.
func newVerifiedToken(mc claims, times tokenTimes) (verifiedToken, error) {
	auds, err := stringsClaim(mc, claimAudience)
	if err != nil {
		return verifiedToken{}, err
	}
	return verifiedToken{aud: parseAudience(auds), tokenTimes: times}, nil
}

// checkTimes applies the parser's rules for exp and nbf, with ClockSkew, at now.
func (v tokenTimes) checkTimes(now time.Time) error {
	if !v.exp.IsZero() && !now.Before(v.exp.Add(ClockSkew)) {
		return fmt.Errorf("%w: token is expired", ErrTokenExpired)
	}
	if !v.nbf.IsZero() && now.Add(ClockSkew).Before(v.nbf) {
		return fmt.Errorf("%w: token is not valid yet", ErrTokenExpired)
	}
	return nil
}
