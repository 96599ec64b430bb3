package auth

import (
	"crypto/sha256"
	"strings"
)

// ASRSSignature returns the X-ASRS-Signature header value of SignalR upstream requests for
// connection connID: "sha256=<UPPERCASE hex HMAC-SHA256(key, connID)>" for each key,
// primary first, joined by a bare ',' (the Azure Functions trigger splits the header on ','
// without trimming). As for every other use of the ring, the HMAC key is the UTF-8 bytes
// of the access key string. It depends only on connID and the keys, so callers may cache it.
func (k *KeyRing) ASRSSignature(connID string) string {
	const digits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(k.keyBytes) * (len("sha256=") + 2*sha256.Size + 1))
	for i, key := range k.keyBytes {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("sha256=")
		for _, x := range mac(key, connID) {
			b.WriteByte(digits[x>>4])
			b.WriteByte(digits[x&0x0f])
		}
	}
	return b.String()
}
