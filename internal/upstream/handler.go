package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// System event names, as in Handler.SystemEvents and ce-eventName.
const (
	EventConnect      = "connect"
	EventConnected    = "connected"
	EventDisconnected = "disconnected"
)

// Group presence event names, as in Handler.GroupPresenceEvents and ce-eventName (ce-type
// azure.webpubsub.gp.<name>).
const (
	EventJoined = "joined"
	EventLeft   = "left"
)

// DefaultTimeout bounds one request to a handler whose Timeout is 0.
const DefaultTimeout = 30 * time.Second

// Handler is one event handler of a hub. The zero value takes no events.
type Handler struct {
	// URLTemplate is the handler's http or https URL. The placeholders {hub} and {event}
	// are replaced by the hub and event names, path-escaped; they are not allowed in the
	// host. A secret may ride in the query (e.g. "?code=…"); it is never logged.
	URLTemplate string
	// UserEvents are the user events the handler takes: nil or empty for none, "*" for
	// all, else event names (case-insensitive). An entry may be a comma-separated list.
	UserEvents []string
	// SystemEvents are the system events the handler takes, among connect, connected and
	// disconnected (case-insensitive).
	SystemEvents []string
	// GroupPresenceEvents are the group presence events the handler takes, among joined
	// and left (case-insensitive), as Azure's groupPresenceEvents. Nil or empty: none.
	GroupPresenceEvents []string
	// AuthHeader, if set, is sent as the Authorization header of every request.
	AuthHeader string
	// Timeout bounds each request to the handler, 0 meaning DefaultTimeout (30s).
	Timeout time.Duration
}

// Validate reports every problem of h, joined; nil when h is usable.
func (h Handler) Validate() error {
	var errs []error
	if err := checkTemplate(h.URLTemplate, "{hub}", "{event}"); err != nil {
		errs = append(errs, err)
	}
	for _, entry := range h.UserEvents {
		for name := range strings.SplitSeq(entry, ",") {
			name = strings.TrimSpace(name)
			if name != "*" && !ValidEventName(name) {
				errs = append(errs, fmt.Errorf("userEvents: %q is neither \"*\" nor an event name "+
					"(a letter, then up to 127 letters, digits, '_', '.' or '-')", name))
			}
		}
	}
	for _, name := range h.SystemEvents {
		if !isSystemEvent(name) {
			errs = append(errs, fmt.Errorf("systemEvents: %q is not one of connect, connected, disconnected", name))
		}
	}
	for _, name := range h.GroupPresenceEvents {
		if !strings.EqualFold(name, EventJoined) && !strings.EqualFold(name, EventLeft) {
			errs = append(errs, fmt.Errorf("groupPresenceEvents: %q is not one of joined, left", name))
		}
	}
	if !validHeaderValue(h.AuthHeader) {
		errs = append(errs, errors.New("auth header: contains a control character"))
	}
	if h.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %v is negative", h.Timeout))
	}
	return errors.Join(errs...)
}

// ValidEventName reports whether name is a valid user event name: a letter, then up to
// 127 letters, digits, '_', '.' or '-'.
func ValidEventName(name string) bool {
	if len(name) == 0 || len(name) > 128 {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		switch {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z':
		case i > 0 && ('0' <= b && b <= '9' || b == '_' || b == '.' || b == '-'):
		default:
			return false
		}
	}
	return true
}

func isSystemEvent(name string) bool {
	return strings.EqualFold(name, EventConnect) || strings.EqualFold(name, EventConnected) ||
		strings.EqualFold(name, EventDisconnected)
}

// checkTemplate reports what is wrong with a URL template whose placeholders may be
// those of known (each written with its braces): an http or https URL once expanded, with
// no placeholder in the host.
func checkTemplate(t string, known ...string) error {
	if t == "" {
		return errors.New("urlTemplate: empty")
	}
	for rest := t; ; {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Errorf("urlTemplate %q: unclosed '{'", t)
		}
		if p := rest[i : i+j+1]; !slices.Contains(known, p) {
			return fmt.Errorf("urlTemplate %q: unknown placeholder %s (only %s)", t, p, listPlaceholders(known))
		}
		rest = rest[i+j+1:]
	}
	if scheme, rest, ok := strings.Cut(t, "://"); ok && !strings.ContainsAny(scheme, "/?#{") {
		host := rest
		if i := strings.IndexAny(host, "/?#"); i >= 0 {
			host = host[:i]
		}
		if strings.Contains(host, "{") {
			return fmt.Errorf("urlTemplate %q: placeholders are not allowed in the host", t)
		}
	}
	sample := make([]string, 0, 2*len(known))
	for _, p := range known {
		sample = append(sample, p, strings.Trim(p, "{}"))
	}
	u, err := url.Parse(strings.NewReplacer(sample...).Replace(t))
	if err != nil {
		return fmt.Errorf("urlTemplate %q: %w", t, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("urlTemplate %q: scheme must be http or https", t)
	}
	if u.Host == "" {
		return fmt.Errorf("urlTemplate %q: no host", t)
	}
	return nil
}

// listPlaceholders renders known as "{a}, {b} and {c}".
func listPlaceholders(known []string) string {
	if len(known) < 2 {
		return strings.Join(known, "")
	}
	return strings.Join(known[:len(known)-1], ", ") + " and " + known[len(known)-1]
}

// expand substitutes hub and event into a URL template.
func expand(t, hub, event string) string {
	if !strings.Contains(t, "{") {
		return t
	}
	return strings.NewReplacer("{hub}", url.PathEscape(hub), "{event}", url.PathEscape(event)).Replace(t)
}

// timeout returns the effective request timeout.
func (h *Handler) timeout() time.Duration {
	if h.Timeout <= 0 {
		return DefaultTimeout
	}
	return h.Timeout
}

func (h *Handler) takesSystem(event string) bool {
	for _, name := range h.SystemEvents {
		if strings.EqualFold(name, event) {
			return true
		}
	}
	return false
}

func (h *Handler) takesGroupPresence(event string) bool {
	for _, name := range h.GroupPresenceEvents {
		if strings.EqualFold(name, event) {
			return true
		}
	}
	return false
}

func (h *Handler) takesUser(event string) bool {
	for _, entry := range h.UserEvents {
		for name := range strings.SplitSeq(entry, ",") {
			name = strings.TrimSpace(name)
			if name == "*" || strings.EqualFold(name, event) {
				return true
			}
		}
	}
	return false
}

// validHeaderValue reports whether s can be sent as an HTTP header value: no control
// characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}
