package auth

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ConnectionString formats endpoint and key the way the Azure portal does:
// "Endpoint=http://localhost:8080;AccessKey=…;Version=1.0;". A trailing '/' on endpoint is
// dropped. Neither value is escaped, so neither may contain ';'.
func ConnectionString(endpoint, key string) string {
	return "Endpoint=" + strings.TrimRight(endpoint, "/") + ";AccessKey=" + key + ";Version=1.0;"
}

// ParseConnectionString returns the endpoint and access key of a connection string such as
// "Endpoint=https://host;AccessKey=…;Version=1.0;Port=8080;".
//
// As in the SDKs, the string is split on ';' and each part on its first '=' (keys may
// contain '='); names are case-insensitive and white space around names and values is
// ignored. Endpoint and AccessKey are required; Port, when present, must be 1..65535 and
// replaces the endpoint's port; Version and unknown names are ignored; a repeated name is an
// error. An endpoint without a scheme gets "https://"; only http and https are accepted. The
// returned endpoint has no trailing '/'. Errors wrap [ErrConnectionString].
func ParseConnectionString(s string) (endpoint, key string, err error) {
	var rawEndpoint, port string
	var haveEndpoint, haveKey, havePort bool
	seen := make(map[string]bool, 4)
	for part := range strings.SplitSeq(s, ";") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		name, value, ok := strings.Cut(part, "=")
		if !ok {
			return "", "", fmt.Errorf("%w: segment without '='", ErrConnectionString)
		}
		name = strings.ToLower(strings.TrimSpace(name))
		value = strings.TrimSpace(value)
		if name == "" {
			return "", "", fmt.Errorf("%w: segment without a name", ErrConnectionString)
		}
		if seen[name] {
			return "", "", fmt.Errorf("%w: duplicate %q", ErrConnectionString, name)
		}
		seen[name] = true
		switch name {
		case "endpoint":
			rawEndpoint, haveEndpoint = value, true
		case "accesskey":
			key, haveKey = value, true
		case "port":
			port, havePort = value, true
		}
	}
	if !haveEndpoint || rawEndpoint == "" {
		return "", "", fmt.Errorf("%w: missing Endpoint", ErrConnectionString)
	}
	if !haveKey || key == "" {
		return "", "", fmt.Errorf("%w: missing AccessKey", ErrConnectionString)
	}

	if !strings.Contains(rawEndpoint, "://") {
		rawEndpoint = "https://" + rawEndpoint
	}
	u, err := url.Parse(rawEndpoint)
	if err != nil {
		return "", "", fmt.Errorf("%w: Endpoint: %w", ErrConnectionString, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("%w: Endpoint scheme %q is not http or https", ErrConnectionString, u.Scheme)
	}
	if u.Hostname() == "" {
		return "", "", fmt.Errorf("%w: Endpoint has no host", ErrConnectionString)
	}
	if havePort {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return "", "", fmt.Errorf("%w: Port %q is not 1..65535", ErrConnectionString, port)
		}
		u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(n))
	}
	return strings.TrimRight(u.String(), "/"), key, nil
}

// SignalRConnectionString formats endpoint and key as the SignalR emulator
// prints them, with the port in its own Port part:
// "Endpoint=http://localhost;Port=8081;AccessKey=…;Version=1.0;". The SDKs
// accept it, and ParseConnectionString reads it back.
func SignalRConnectionString(endpoint, key string) string {
	u, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil || u.Port() == "" {
		return ConnectionString(endpoint, key)
	}
	port := u.Port()
	u.Host = u.Hostname()
	if strings.Contains(u.Host, ":") {
		u.Host = "[" + u.Host + "]"
	}
	return "Endpoint=" + u.String() + ";Port=" + port + ";AccessKey=" + key + ";Version=1.0;"
}
