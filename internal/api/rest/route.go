package rest

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Params are the path variables of a matched route, percent-decoded. A route's pattern names
// the ones it binds: {hub}, {group}, {user}, {conn}, {perm} and {stream}.
type Params struct {
	Hub, Group, User, Conn, Perm, Stream string
}

// Route is what Method does on the path Pattern below /api/: segments separated by '/', each a
// literal (matched ignoring ASCII case) or one of the variables of Params.
type Route[A any] struct {
	Method  string
	Pattern string
	Action  A
}

// Router finds a request's route among an API's routes. A is the API's own action: its
// operation name, the function that serves it, and whatever else it needs.
type Router[A any] struct {
	routes []route[A]
}

type route[A any] struct {
	method  string
	pattern []string
	action  A
}

var variables = []string{"{hub}", "{group}", "{user}", "{conn}", "{perm}", "{stream}"}

// NewRouter returns the router of routes. It panics on a variable Params does not have: the
// route tables are code, not input.
func NewRouter[A any](routes []Route[A]) *Router[A] {
	rt := &Router[A]{routes: make([]route[A], len(routes))}
	for i, r := range routes {
		segs := strings.Split(r.Pattern, "/")
		for _, s := range segs {
			if strings.HasPrefix(s, "{") && !slices.Contains(variables, s) {
				panic(fmt.Sprintf("rest: route %s %s: unknown variable %s", r.Method, r.Pattern, s))
			}
		}
		rt.routes[i] = route[A]{method: r.Method, pattern: segs, action: r.Action}
	}
	return rt
}

// Match is the outcome of Router.Match.
type Match[A any] struct {
	Action A
	Params Params
	// Pattern is the matched route's segments, so that an API can check its variables in the
	// order the path gives them.
	Pattern []string
	// Found reports that a route has both the path and the method. When only the path matches,
	// Allowed lists the methods that would, sorted (the Allow header of a 405).
	Found   bool
	Allowed []string
}

// Match finds the route of segs (from SplitPath) and method.
func (rt *Router[A]) Match(segs []string, method string) Match[A] {
	var m Match[A]
	for i := range rt.routes {
		r := &rt.routes[i]
		p, ok := bind(r.pattern, segs)
		if !ok {
			continue
		}
		if r.method == method {
			return Match[A]{Action: r.action, Params: p, Pattern: r.pattern, Found: true}
		}
		if !slices.Contains(m.Allowed, r.method) {
			m.Allowed = append(m.Allowed, r.method)
		}
	}
	slices.Sort(m.Allowed)
	return m
}

func bind(pattern, segs []string) (Params, bool) {
	var p Params
	if len(pattern) != len(segs) {
		return p, false
	}
	for i, seg := range segs {
		var dst *string
		switch pattern[i] {
		case "{hub}":
			dst = &p.Hub
		case "{group}":
			dst = &p.Group
		case "{user}":
			dst = &p.User
		case "{conn}":
			dst = &p.Conn
		case "{perm}":
			dst = &p.Perm
		case "{stream}":
			dst = &p.Stream
		default:
			if !strings.EqualFold(pattern[i], seg) {
				return p, false
			}
			continue
		}
		*dst = seg
	}
	return p, true
}

// SplitPath splits an escaped request path into its segments below /api/, percent-decoding
// each segment on its own so that an encoded '/' (%2F, as the SDKs escape ids) stays inside its
// segment. One trailing '/' is ignored, as the services' routing and the token audience check
// do. ok is false for a path outside /api/.
func SplitPath(escaped string) (segs []string, ok bool, err error) {
	rest, found := strings.CutPrefix(escaped, "/api/")
	if !found {
		return nil, false, nil
	}
	if len(rest) > 1 {
		rest = strings.TrimSuffix(rest, "/")
	}
	segs = strings.Split(rest, "/")
	for i, s := range segs {
		if strings.IndexByte(s, '%') < 0 {
			continue
		}
		if segs[i], err = url.PathUnescape(s); err != nil {
			return nil, true, BadRequest("path", "Invalid percent-encoding in path segment %s.", excerpt.Quote(s))
		}
	}
	return segs, true, nil
}

// NoRoute is the 404 of a path no route has.
func NoRoute(method, path string) *Error {
	return Fail(http.StatusNotFound, CodeNotFound, "path", "No operation matches %s %s.", excerpt.Of(method), excerpt.Of(path))
}

// MethodNotAllowed is the 405 of a path whose routes take other methods; it sets the Allow
// header on w.
func MethodNotAllowed(w http.ResponseWriter, method string, allowed []string) *Error {
	list := strings.Join(allowed, ", ")
	w.Header().Set("Allow", list)
	return Fail(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method",
		"Method %s is not allowed here; allowed: %s.", excerpt.Of(method), list)
}
