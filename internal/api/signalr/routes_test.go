package signalr

import (
	"slices"
	"strings"
	"testing"
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
	eps := endpoints()
	for i := range eps {
		// A concrete path for endpoint i: its literals, and "x" for each variable.
		segs := slices.Clone(eps[i].pattern)
		for k, s := range segs {
			if strings.HasPrefix(s, "{") {
				segs[k] = "x"
			}
		}
		ep, _, ok := lookup(eps, segs)
		if !ok || ep != &eps[i] {
			t.Errorf("path %q does not reach its own endpoint %q", segs, eps[i].pattern)
		}
		for m, a := range eps[i].actions {
			if a.serve == nil || a.op == "" {
				t.Errorf("%s %q has no operation", m, eps[i].pattern)
			}
		}
	}
}

func TestBindPattern(t *testing.T) {
	p, ok := bindPattern(strings.Split("hubs/{hub}/groups/{group}/users/{user}", "/"),
		[]string{"HUBS", "chat", "Groups", "g/1", "users", "u"})
	if !ok || p != (params{hub: "chat", group: "g/1", user: "u"}) {
		t.Errorf("bindPattern = %+v %v", p, ok)
	}
	if _, ok := bindPattern([]string{"hubs", "{hub}"}, []string{"hub", "chat"}); ok {
		t.Error("literal hubs matched hub")
	}
}
