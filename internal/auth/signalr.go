package auth

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Claim names of Azure SignalR Service client tokens (spec §3.2).
const (
	claimSignalRUserID     = "asrs.s.uid"
	claimSignalRTransports = "asrs.s.htt"
	claimSignalRDetailed   = "asrs.s.derror"
	claimNameIDShort       = "nameid"
	signalRSystemPrefix    = "asrs.s."
	signalRUserPrefix      = "asrs.u."
)

// SignalRClientPath is the decoded request path of the SignalR client endpoints; client
// tokens name it in their aud, with the hub in the query.
const SignalRClientPath = "/client/"

// SignalRClaims is what a verified SignalR client access token says about the connection.
type SignalRClaims struct {
	// UserID is asrs.s.uid, else nameid, else the .NET name-identifier claim, else sub;
	// empty for an anonymous connection.
	UserID string
	// Claims are the token's user claims as (type, value) pairs, sorted by type, for the
	// upstream's X-ASRS-User-Claims header: aud, exp, iat, nbf and asrs.s.* are left out,
	// asrs.u.<name> gets its name back, an array claim gives one pair per element.
	Claims [][2]string
	// Transports is the asrs.s.htt bitmask (WebSockets 1, ServerSentEvents 2,
	// LongPolling 4); 0 when the token does not restrict transports.
	Transports int
	// DetailedErrors is asrs.s.derror: close reasons reach the client.
	DetailedErrors bool
	// Expires is the exp claim.
	Expires time.Time
}

// SignalRClientAudience returns the aud that SDKs put in client tokens for hub:
// endpoint + "/client/?hub=" + hub.
func SignalRClientAudience(endpoint, hub string) string {
	return strings.TrimRight(endpoint, "/") + SignalRClientPath + "?hub=" + url.QueryEscape(hub)
}

// MintSignalRClientToken returns an HS256 SignalR client access token signed with the
// primary key, as the Management SDK's negotiate builds it: aud = audience (see
// [SignalRClientAudience]), iat, nbf, exp = now + ttl (0 means [DefaultTokenTTL]), and the
// user id in asrs.s.uid when set.
func (k *KeyRing) MintSignalRClientToken(audience, userID string, ttl time.Duration) (string, error) {
	if audience == "" {
		return "", errors.New("auth: mint signalr token: empty audience")
	}
	if ttl < 0 {
		return "", fmt.Errorf("auth: mint signalr token: negative TTL %v", ttl)
	}
	claims := k.baseClaims(audience, time.Time{}, ttl)
	claims[claimNotBefore] = claims[claimIssuedAt]
	if userID != "" {
		claims[claimSignalRUserID] = userID
	}
	return k.sign(claims)
}

// VerifySignalRClientToken checks a SignalR client access token for hub (spec §3.2):
// HS256/384/512 by any key of the ring (kid is ignored), exp required, nbf checked, both
// with [ClockSkew]. The aud (a string or an array) must hold a URL whose path is
// "/client" (trailing '/' and case ignored) and whose hub query equals hub ignoring case;
// scheme, host and port are ignored because the SDK drops the port and proxies change the
// host.
//
// The error wraps exactly one of the ErrToken… sentinels.
func (k *KeyRing) VerifySignalRClientToken(token, hub string, now time.Time) (*SignalRClaims, error) {
	mc, times, err := k.parse(token, now, true)
	if err != nil {
		return nil, err
	}
	if err := checkSignalRAudience(mc, hub); err != nil {
		return nil, err
	}
	return signalRClaims(mc, times)
}

func checkSignalRAudience(mc claims, hub string) error {
	auds, err := stringsClaim(mc, claimAudience)
	if err != nil {
		return err
	}
	want := normalizePath(SignalRClientPath)
	for _, aud := range auds {
		u, err := url.Parse(aud)
		if err != nil || !strings.EqualFold(normalizePath(u.Path), want) {
			continue
		}
		if strings.EqualFold(u.Query().Get("hub"), hub) {
			return nil
		}
	}
	return fmt.Errorf("%w: The audience is invalid: aud does not name hub %q", ErrTokenAudience, hub)
}

func signalRClaims(mc claims, times tokenTimes) (*SignalRClaims, error) {
	c := &SignalRClaims{Expires: times.exp}
	for _, name := range []string{claimSignalRUserID, claimNameIDShort, claimNameID, claimSubject} {
		ids, err := stringsClaim(mc, name)
		if err != nil {
			return nil, err
		}
		if len(ids) > 0 {
			c.UserID = ids[0]
			break
		}
	}
	if v, ok := mc[claimSignalRTransports]; ok {
		n, err := intClaim(v)
		if err != nil || n < 0 || n > 7 {
			return nil, fmt.Errorf("%w: %s must be a transport bitmask from 0 to 7", ErrTokenMalformed, claimSignalRTransports)
		}
		c.Transports = n
	}
	if s, _ := mc[claimSignalRDetailed].(string); strings.EqualFold(s, "true") {
		c.DetailedErrors = true
	}
	names := make([]string, 0, len(mc))
	for name := range mc {
		switch name {
		case claimAudience, claimExpires, claimIssuedAt, claimNotBefore:
			continue
		}
		if strings.HasPrefix(name, signalRSystemPrefix) {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		typ := strings.TrimPrefix(name, signalRUserPrefix)
		switch v := mc[name].(type) {
		case []any:
			for _, e := range v {
				c.Claims = append(c.Claims, [2]string{typ, claimText(e)})
			}
		default:
			c.Claims = append(c.Claims, [2]string{typ, claimText(v)})
		}
	}
	return c, nil
}

// intClaim reads a claim that may be a JSON number or a decimal string.
func intClaim(v any) (int, error) {
	switch v := v.(type) {
	case string:
		return strconv.Atoi(v)
	default:
		return strconv.Atoi(claimText(v))
	}
}

// claimText renders a claim value as the upstream claims header shows it.
func claimText(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(v)
	default:
		return fmt.Sprint(v)
	}
}
