package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// sessions mints and checks the session cookie's value:
// "<expiry unix seconds>.<random nonce>.<HMAC-SHA256 of both>", keyed by a
// key derived from the login secret, so that changing the secret (or the
// primary access key) ends every session.
type sessions struct {
	key []byte
	ttl time.Duration
}

func newSessions(secret string, ttl time.Duration) sessions {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("switchboard dashboard session v1"))
	return sessions{key: m.Sum(nil), ttl: ttl}
}

var (
	errSessionMalformed = errors.New("malformed session")
	errSessionForged    = errors.New("session signature does not match")
	errSessionExpired   = errors.New("session expired")
)

// mint returns a session value that expires ttl after now.
func (s sessions) mint(now time.Time) string {
	var nonce [16]byte
	rand.Read(nonce[:])
	body := strconv.FormatInt(now.Add(s.ttl).Unix(), 10) + "." + base64.RawURLEncoding.EncodeToString(nonce[:])
	return body + "." + s.sign(body)
}

func (s sessions) sign(body string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(body))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// check verifies v's signature (in constant time) and then its expiry.
func (s sessions) check(v string, now time.Time) error {
	if len(v) > 200 {
		return errSessionMalformed
	}
	i := strings.LastIndexByte(v, '.')
	if i < 0 {
		return errSessionMalformed
	}
	body, sig := v[:i], v[i+1:]
	if !hmac.Equal([]byte(sig), []byte(s.sign(body))) {
		return errSessionForged
	}
	exp, rest, ok := strings.Cut(body, ".")
	if !ok || rest == "" {
		return errSessionMalformed
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil {
		return errSessionMalformed
	}
	if !now.Before(time.Unix(unix, 0)) {
		return errSessionExpired
	}
	return nil
}
