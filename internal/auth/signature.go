package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// reconnectPrefix separates reconnection-token MACs from every other use of the keys.
const reconnectPrefix = "reconnect:"

// reconnectTokenLen is the length of base64url(raw) of a SHA-256 MAC.
var reconnectTokenLen = base64.RawURLEncoding.EncodedLen(sha256.Size)

// ReconnectionToken returns the token a reliable-protocol client presents, with
// awps_connection_id, to recover connection connID: base64url (unpadded, URL-safe) of
// HMAC-SHA256(primary key, "reconnect:"+connID). It is opaque to clients, valid only for
// connID, and stays valid as long as the signing key is in the ring; whether the connection
// can still be recovered is the caller's business.
func (k *KeyRing) ReconnectionToken(connID string) string {
	return base64.RawURLEncoding.EncodeToString(mac(k.keyBytes[0], reconnectPrefix+connID))
}

// CheckReconnectionToken reports whether token was issued by [KeyRing.ReconnectionToken]
// for connID under any key of the ring. The comparison is constant-time.
func (k *KeyRing) CheckReconnectionToken(connID, token string) bool {
	if len(token) != reconnectTokenLen {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return false
	}
	ok := false
	for _, key := range k.keyBytes {
		// No early exit: the time taken does not depend on which key matched.
		if hmac.Equal(got, mac(key, reconnectPrefix+connID)) {
			ok = true
		}
	}
	return ok
}

// Signature returns the ce-signature header value of upstream webhook requests for
// connection connID: "sha256=<hex HMAC-SHA256(key, connID)>" for each key, primary first,
// joined by ','. It depends only on connID and the keys, so callers may cache it.
func (k *KeyRing) Signature(connID string) string {
	var b strings.Builder
	b.Grow(len(k.keyBytes) * (len("sha256=") + 2*sha256.Size + 1))
	for i, key := range k.keyBytes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("sha256=")
		b.WriteString(hex.EncodeToString(mac(key, connID)))
	}
	return b.String()
}

// CheckSignature reports whether a ce-signature header value holds, for connID, the
// signature of any key in the ring, as an upstream handler checks it: entries are
// comma-separated, "sha256=" is case-insensitive, and so is the hex.
func (k *KeyRing) CheckSignature(connID, header string) bool {
	want := make([][]byte, len(k.keyBytes))
	for i, key := range k.keyBytes {
		want[i] = mac(key, connID)
	}
	ok := false
	for entry := range strings.SplitSeq(header, ",") {
		entry = strings.TrimSpace(entry)
		const prefix = "sha256="
		if len(entry) != len(prefix)+2*sha256.Size || !strings.EqualFold(entry[:len(prefix)], prefix) {
			continue
		}
		got, err := hex.DecodeString(entry[len(prefix):])
		if err != nil {
			continue
		}
		for _, w := range want {
			if hmac.Equal(got, w) {
				ok = true
			}
		}
	}
	return ok
}

func mac(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}
