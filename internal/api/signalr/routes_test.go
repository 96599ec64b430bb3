package signalr

import (
	"slices"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/api/rest"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		escaped string
		gen     apiGen
		segs    []string
		inAPI   bool
		bad     bool
	}{
		{"/api/hubs/chat/:send", genModern, []string{"hubs", "chat", ":send"}, true, false},
		{"/api/v1/hubs/chat", genV1, []string{"hubs", "chat"}, true, false},
		{"/api/V1/hubs/chat/", genV1, []string{"hubs", "chat"}, true, false},
		{"/api/hubs/chat/users/user%2Fa/:send", genModern, []string{"hubs", "chat", "users", "user/a", ":send"}, true, false},
		{"/api/hubs/chat/groups/a%20b", genModern, []string{"hubs", "chat", "groups", "a b"}, true, false},
		{"/api/health", genModern, []string{"health"}, true, false},
		{"/api/", genModern, []string{""}, true, false},
		{"/api/v1", genV1, []string{}, true, false},
		{"/client/hubs/chat", genModern, nil, false, false},
		{"/api/hubs/chat/users/%zz", genModern, nil, true, true},
	}
	for _, tt := range tests {
		gen, segs, inAPI, err := parsePath(tt.escaped)
		if (err != nil) != tt.bad || inAPI != tt.inAPI {
			t.Errorf("parsePath(%q): inAPI=%v err=%v", tt.escaped, inAPI, err)
			continue
		}
		if err == nil && (gen != tt.gen || !slices.Equal(segs, tt.segs)) {
			t.Errorf("parsePath(%q) = %v %q, want %v %q", tt.escaped, gen, segs, tt.gen, tt.segs)
		}
	}
}

// TestEndpointsAreUnambiguous: no path may match two endpoints, or the second would be dead.
func TestEndpointsAreUnambiguous(t *testing.T) {
	router := rest.NewRouter(routes())
	for _, rt := range routes() {
		// A concrete path for the route: its literals, and "x" for each variable.
		segs := strings.Split(rt.Pattern, "/")
		for k, s := range segs {
			if strings.HasPrefix(s, "{") {
				segs[k] = "x"
			}
		}
		m := router.Match(segs, rt.Method)
		if !m.Found || strings.Join(m.Pattern, "/") != rt.Pattern {
			t.Errorf("%s %q does not reach its own route %q (got %q)", rt.Method, segs, rt.Pattern, m.Pattern)
		}
		if rt.Action.serve == nil || rt.Action.op == "" {
			t.Errorf("%s %q has no operation", rt.Method, rt.Pattern)
		}
	}
}
