package auth

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// TokenKind is what a token is for, as its aud names it.
type TokenKind string

// Token kinds Inspect tells apart.
const (
	KindClient        TokenKind = "Web PubSub client"    // aud …/client/hubs/{hub}
	KindSignalRClient TokenKind = "SignalR client"       // aud …/client/?hub={hub}
	KindServer        TokenKind = "REST (server)"        // aud: the URL of a REST call
	KindUnknown       TokenKind = "unknown (no aud URL)" // no aud the server would accept anywhere
)

// Inspection is what a token says and whether this ring accepts it for what its aud names
// (or, for a client token, for the hub the caller names instead).
type Inspection struct {
	Header    map[string]any
	Claims    map[string]any // numbers as json.Number
	Audiences []string
	Kind      TokenKind
	Hub       string // the client kinds: the hub checked
	Path      string // KindServer: the REST path of the aud
	// Verdict: nil when the ring accepts the token for Kind (and Hub), else the reason,
	// wrapping one of the ErrToken… sentinels as the server's answer would.
	Verdict error
}

// Inspect decodes token without trusting it, works out what it is for from its aud, and
// verifies it as the server would for that use at now: a client token for hub (its aud's
// hub when hub is ""), a SignalR client token, or a REST token for its aud's path. It fails
// only when the token cannot be decoded at all (then nothing more can be said).
func (k *KeyRing) Inspect(token, hub string, now time.Time) (*Inspection, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: want three dot-separated parts, got %d", ErrTokenMalformed, len(parts))
	}
	in := &Inspection{}
	for i, dst := range []*map[string]any{&in.Header, &in.Claims} {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[i], "="))
		if err != nil {
			return nil, fmt.Errorf("%w: part %d is not base64url: %v", ErrTokenMalformed, i+1, err)
		}
		d := json.NewDecoder(strings.NewReader(string(b)))
		d.UseNumber()
		if err := d.Decode(dst); err != nil {
			return nil, fmt.Errorf("%w: part %d is not a JSON object: %v", ErrTokenMalformed, i+1, err)
		}
	}
	in.Audiences, _ = stringsClaim(in.Claims, claimAudience)
	in.Kind, in.Hub, in.Path = classify(in.Audiences)
	if hub != "" && (in.Kind == KindClient || in.Kind == KindSignalRClient) {
		in.Hub = hub
	}
	switch in.Kind {
	case KindClient:
		_, in.Verdict = k.VerifyClientToken(token, ClientPath(in.Hub), now)
	case KindSignalRClient:
		_, in.Verdict = k.VerifySignalRClientToken(token, in.Hub, now)
	case KindServer:
		in.Verdict = k.VerifyServerToken(token, in.Path, now)
	default:
		if _, _, err := k.parse(token, now, false); err != nil {
			in.Verdict = err
		} else {
			in.Verdict = fmt.Errorf("%w: aud names no Switchboard endpoint (want …/client/hubs/{hub}, …/client/?hub={hub} or a REST URL)", ErrTokenAudience)
		}
	}
	return in, nil
}

// classify tells the kind of token from its first aud that is a URL.
func classify(auds []string) (kind TokenKind, hub, path string) {
	for _, aud := range auds {
		u, err := url.Parse(aud)
		if err != nil || u.Path == "" {
			continue
		}
		p := normalizePath(u.Path)
		switch {
		case strings.HasPrefix(strings.ToLower(p), "/client/hubs/"):
			return KindClient, p[strings.LastIndex(p, "/")+1:], ""
		case strings.EqualFold(p, normalizePath(SignalRClientPath)) && u.Query().Get("hub") != "":
			return KindSignalRClient, u.Query().Get("hub"), ""
		default:
			return KindServer, "", u.Path
		}
	}
	return KindUnknown, "", ""
}
