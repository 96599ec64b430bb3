package upstream

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// SignalR upstream categories (X-ASRS-Category, the {category} placeholder).
const (
	CategoryConnections = "connections" // events connected and disconnected
	CategoryMessages    = "messages"    // client invocations; the event is the target
)

// DefaultSignalRTimeout bounds one request to a SignalR upstream whose Timeout is 0.
const DefaultSignalRTimeout = 10 * time.Second

// SignalRUpstream is one entry of a hub's ordered upstream list (SignalR spec §8.1): an
// event goes to the first entry whose three patterns all match it; with none, it is not
// sent. The zero value takes every event but has no URL (Validate fails).
type SignalRUpstream struct {
	// URLTemplate is the absolute http or https URL the events are posted to. The
	// placeholders {hub}, {category} and {event} are replaced by their values, escaped as
	// URI data (every byte but A-Z a-z 0-9 - _ . ~ percent-encoded), so a value cannot
	// change the URL's structure; they are not allowed in the host. A secret may ride in
	// the query (e.g. "?code=…"); it is never logged.
	URLTemplate string
	// HubPattern, CategoryPattern and EventPattern select the events the entry takes: ""
	// or "*" for any; otherwise a comma-separated list of values (items trimmed, "*"
	// allowed among them), compared case-insensitively as SignalR compares hub and method
	// names. Categories are "connections" and "messages"; events are "connected",
	// "disconnected" or the invocation target.
	HubPattern      string
	CategoryPattern string
	EventPattern    string
	// AuthHeader, if set, is sent as the Authorization header of every request.
	AuthHeader string
	// Timeout bounds each request, 0 meaning DefaultSignalRTimeout (10s).
	Timeout time.Duration
}

// Validate reports every problem of u, joined; nil when u is usable.
func (u SignalRUpstream) Validate() error {
	var errs []error
	if err := checkTemplate(u.URLTemplate, "{hub}", "{category}", "{event}"); err != nil {
		errs = append(errs, err)
	}
	for _, p := range []struct{ name, pattern string }{
		{"hubPattern", u.HubPattern}, {"categoryPattern", u.CategoryPattern}, {"eventPattern", u.EventPattern},
	} {
		if err := checkPattern(p.pattern); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", p.name, p.pattern, err))
		}
	}
	if checkPattern(u.CategoryPattern) == nil {
		for item := range strings.SplitSeq(u.CategoryPattern, ",") {
			item = strings.TrimSpace(item)
			if item != "" && item != "*" && !strings.EqualFold(item, CategoryConnections) && !strings.EqualFold(item, CategoryMessages) {
				errs = append(errs, fmt.Errorf("categoryPattern %q: %q is not one of connections, messages", u.CategoryPattern, item))
			}
		}
	}
	if !validHeaderValue(u.AuthHeader) {
		errs = append(errs, errors.New("auth header: contains a control character"))
	}
	if u.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %v is negative", u.Timeout))
	}
	return errors.Join(errs...)
}

// checkPattern reports what is wrong with a pattern: an empty item of a list, or a
// control character.
func checkPattern(p string) error {
	if strings.TrimSpace(p) == "" {
		return nil
	}
	for item := range strings.SplitSeq(p, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return errors.New("empty item in the list")
		}
		if !validHeaderValue(item) || strings.ContainsRune(item, '\t') {
			return fmt.Errorf("item %q contains a control character", item)
		}
	}
	return nil
}

// takes reports whether u takes the event of category in hub.
func (u *SignalRUpstream) takes(hub, category, event string) bool {
	return matchPattern(u.HubPattern, hub) && matchPattern(u.CategoryPattern, category) &&
		matchPattern(u.EventPattern, event)
}

// matchPattern reports whether value matches pattern ("" and "*" match anything).
func matchPattern(pattern, value string) bool {
	if p := strings.TrimSpace(pattern); p == "" || p == "*" {
		return true
	}
	for item := range strings.SplitSeq(pattern, ",") {
		item = strings.TrimSpace(item)
		if item == "*" || item != "" && strings.EqualFold(item, value) {
			return true
		}
	}
	return false
}

// timeout returns the effective request timeout.
func (u *SignalRUpstream) timeout() time.Duration {
	if u.Timeout <= 0 {
		return DefaultSignalRTimeout
	}
	return u.Timeout
}

// expandSignalR substitutes hub, category and event into a URL template, each escaped
// as URI data.
func expandSignalR(t, hub, category, event string) string {
	if !strings.Contains(t, "{") {
		return t
	}
	return strings.NewReplacer(
		"{hub}", escapeDataString(hub),
		"{category}", escapeDataString(category),
		"{event}", escapeDataString(event),
	).Replace(t)
}

// escapeDataString percent-encodes (upper-case hex) every byte of s but the RFC 3986
// unreserved characters, as .NET's Uri.EscapeDataString does for the Azure service.
func escapeDataString(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		if c := s[i]; unreserved(c) {
			b = append(b, c)
		} else {
			b = append(b, '%', hex[c>>4], hex[c&0x0f])
		}
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}
