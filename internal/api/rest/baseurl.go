package rest

import (
	"net/http"
	"net/url"
	"strings"
)

// BaseURL is the public base URL of the links and token audiences an answer gives, as
// "scheme://host" without a trailing '/': public when it is set (the configured
// server.public_endpoint or signalr.public_endpoint, which holds behind a TLS terminator that
// sends no forwarding headers); else the scheme and host the client used, from the Forwarded
// header (RFC 7239), else X-Forwarded-Proto and X-Forwarded-Host, else the request itself.
// Forwarding headers name the first (client-side) proxy hop; a value that is not a plain scheme
// or host is ignored.
func BaseURL(r *http.Request, public string) string {
	if public != "" {
		return strings.TrimRight(public, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	host := r.Host
	fwdProto, fwdHost := forwarded(r.Header.Get("Forwarded"))
	if fwdProto == "" {
		fwdProto = firstHop(r.Header.Get("X-Forwarded-Proto"))
	}
	if fwdHost == "" {
		fwdHost = firstHop(r.Header.Get("X-Forwarded-Host"))
	}
	if p := strings.ToLower(fwdProto); p == "http" || p == "https" {
		scheme = p
	}
	if fwdHost != "" && validHost(fwdHost) {
		host = fwdHost
	}
	if host == "" {
		host = "localhost"
	}
	return scheme + "://" + strings.ToLower(host)
}

// forwarded returns the proto and host parameters of the first element of a Forwarded header
// (RFC 7239 §4: elements are separated by ',', pairs by ';', values may be quoted).
func forwarded(v string) (proto, host string) {
	if v == "" {
		return "", ""
	}
	first, _, _ := strings.Cut(v, ",")
	for pair := range strings.SplitSeq(first, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			continue
		}
		value = plain(strings.Trim(strings.TrimSpace(value), `"`))
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "proto":
			proto = value
		case "host":
			host = value
		}
	}
	return proto, host
}

// firstHop returns the first entry of a comma-separated X-Forwarded-* header.
func firstHop(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return plain(strings.TrimSpace(first))
}

// plain returns v, or "" when v holds a character no scheme or host:port has (a space, a path,
// a query, user info), so that a forged header cannot put a path or credentials into a link.
func plain(v string) string {
	if strings.ContainsAny(v, " /\\?#@\"") {
		return ""
	}
	return v
}

// validHost reports whether a forwarded host is a host[:port] and nothing else: a name or
// address of letters, digits, '.', '-', '_' (an IPv6 address in brackets) and a numeric
// port, as URLs hold it unescaped. Anything else ('%', a space, a second ':') would make a
// link that does not parse, or points elsewhere.
func validHost(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	u, err := url.Parse("http://" + v)
	return err == nil && u.Host == v
}
