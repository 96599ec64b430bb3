package core

import (
	"strings"
	"testing"
)

func TestMatchGroupPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, group string
		want           bool
	}{
		// Literals.
		{"chat", "chat", true},
		{"chat", "Chat", false}, // case-sensitive
		{"chat", "chat1", false},
		{"chat1", "chat", false},
		{"a.b", "a.b", true},
		{"a.b", "a-b", false},

		// '?' is exactly one character, never '.'.
		{"room?", "room1", true},
		{"room?", "room", false},
		{"room?", "room12", false},
		{"room?", "room.", false},
		{"?", "", false},
		{"??", "ab", true},
		{"a?c", "a.c", false},
		{"a?c", "abc", true},

		// '*' is any run, possibly empty, without '.'.
		{"*", "", true},
		{"*", "anything", true},
		{"*", "a.b", false},
		{"chat.*", "chat.", true},
		{"chat.*", "chat.room1", true},
		{"chat.*", "chat.room1.sub", false},
		{"chat.*", "chat", false},
		{"*.room", "chat.room", true},
		{"*.room", ".room", true},
		{"*.room", "a.b.room", false},
		{"chat.*.msgs", "chat.r1.msgs", true},
		{"chat.*.msgs", "chat..msgs", true},
		{"chat.*.msgs", "chat.r1.r2.msgs", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy.c", false},
		{"*-*", "a-b", true},
		{"*-*", "ab", false},

		// '**' is any run, dots included.
		{"**", "", true},
		{"**", "a.b.c", true},
		{"chat.**", "chat.a.b.c", true},
		{"chat.**", "chat.", true},
		{"chat.**", "chat", false},
		{"**.log", "a.b.log", true},
		{"**.log", "log", false},
		{"a.**.z", "a.b.c.z", true},
		{"a.**.z", "a..z", true},
		{"a.**.z", "a.z", false},
		{"***", "a.b", true}, // "**" then "*"

		// '\' escapes the next character.
		{`\*`, "*", true},
		{`\*`, "a", false},
		{`\?`, "?", true},
		{`\?`, "a", false},
		{`a\\b`, `a\b`, true},
		{`a\\b`, `a\\b`, false},
		{`\a`, "a", true},
		{`\**`, "*abc", true},
		{`\**`, "abc", false},
		{`a\`, `a\`, true}, // a trailing backslash is literal

		// Empty pattern matches only the empty name.
		{"", "", true},
		{"", "a", false},

		// '?' and '*' count characters, not bytes (spec §3.5: "one char").
		{"room?", "roomé", true},
		{"room??", "roomé", false},
		{"?", "日", true},
		{"*.?", "chat.日", true},
	}
	for _, tt := range tests {
		if got := matchGroupPattern(tt.pattern, tt.group); got != tt.want {
			t.Errorf("matchGroupPattern(%q, %q) = %v, want %v", tt.pattern, tt.group, got, tt.want)
		}
	}
}

// TestMatchGroupPatternIsNotExponential checks that a five-star pattern, the
// most a role may carry, cannot make matching a client-chosen group name
// (up to 1024 characters) take super-linear work: the matcher's step count
// stays within tokens × (runes + 1) × 2.
func TestMatchGroupPatternIsNotExponential(t *testing.T) {
	group := strings.Repeat("-", 1023) + "."
	const pattern = "*-*-*-*-*"
	got, steps := matchPattern(pattern, group)
	if got {
		t.Fatalf("matchGroupPattern(%q, %q) = true, want false", pattern, group)
	}
	if bound := len(pattern) * (len(group) + 1) * 2; steps > bound {
		t.Errorf("matching took %d steps, more than the linear bound %d", steps, bound)
	}
}

func TestValidGroupPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern string
		want    bool
	}{
		{"", false},
		{"a", true},
		{"*", true},
		{"*.*.*.*.*", true},
		{"**.**.*", true},
		{"*.*.*.*.*.*", false},
		{"***.***", false},
	}
	for _, tt := range tests {
		if got := validGroupPattern(tt.pattern); got != tt.want {
			t.Errorf("validGroupPattern(%q) = %v, want %v", tt.pattern, got, tt.want)
		}
	}
}

func TestGrantsFromRoles(t *testing.T) {
	t.Parallel()
	type check struct {
		perm  Permission
		group string
		want  bool
	}
	tests := []struct {
		name   string
		roles  []string
		checks []check
	}{
		{
			name:  "no roles",
			roles: nil,
			checks: []check{
				{PermJoinLeave, "g", false},
				{PermSend, "g", false},
			},
		},
		{
			name:  "joinLeaveGroup: every group",
			roles: []string{"webpubsub.joinLeaveGroup"},
			checks: []check{
				{PermJoinLeave, "g", true},
				{PermJoinLeave, "a.b.c", true},
				{PermJoinLeave, "", true},
				{PermSend, "g", false},
			},
		},
		{
			name:  "sendToGroup: every group",
			roles: []string{"webpubsub.sendToGroup"},
			checks: []check{
				{PermSend, "g", true},
				{PermSend, "", true},
				{PermJoinLeave, "g", false},
			},
		},
		{
			name:  "joinLeaveGroup.<g>: one group",
			roles: []string{"webpubsub.joinLeaveGroup.chat"},
			checks: []check{
				{PermJoinLeave, "chat", true},
				{PermJoinLeave, "chat2", false},
				{PermJoinLeave, "", false},
				{PermSend, "chat", false},
			},
		},
		{
			name:  "joinLeaveGroup.<g> keeps dots and wildcard characters literal",
			roles: []string{"webpubsub.joinLeaveGroup.a.*"},
			checks: []check{
				{PermJoinLeave, "a.*", true},
				{PermJoinLeave, "a.b", false},
			},
		},
		{
			name:  "sendToGroup.<g>: one group",
			roles: []string{"webpubsub.sendToGroup.news"},
			checks: []check{
				{PermSend, "news", true},
				{PermSend, "news2", false},
				{PermJoinLeave, "news", false},
			},
		},
		{
			name:  "sendToGroups.<pattern>",
			roles: []string{"webpubsub.sendToGroups.chat.*"},
			checks: []check{
				{PermSend, "chat.r1", true},
				{PermSend, "chat.r1.x", false},
				{PermSend, "chat", false},
				{PermSend, "", false},
				{PermJoinLeave, "chat.r1", false},
			},
		},
		{
			name:  "joinLeaveGroups.<pattern>",
			roles: []string{"webpubsub.joinLeaveGroups.room-??"},
			checks: []check{
				{PermJoinLeave, "room-01", true},
				{PermJoinLeave, "room-1", false},
				{PermSend, "room-01", false},
			},
		},
		{
			name:  "pattern with more than five stars grants nothing",
			roles: []string{"webpubsub.sendToGroups.*.*.*.*.*.*"},
			checks: []check{
				{PermSend, "a.b.c.d.e.f", false},
			},
		},
		{
			name:  "empty pattern grants nothing",
			roles: []string{"webpubsub.sendToGroups."},
			checks: []check{
				{PermSend, "a", false},
				{PermSend, "", false},
			},
		},
		{
			name:  "empty group after the dot grants nothing",
			roles: []string{"webpubsub.sendToGroup.", "webpubsub.joinLeaveGroup."},
			checks: []check{
				{PermSend, "anything", false},
				{PermSend, "", false},
				{PermJoinLeave, "anything", false},
			},
		},
		{
			name:  "role names are case-sensitive and unknown roles grant nothing",
			roles: []string{"webpubsub.sendtogroup", "WebPubSub.JoinLeaveGroup", "admin", "webpubsub.sendToGroupX"},
			checks: []check{
				{PermSend, "g", false},
				{PermJoinLeave, "g", false},
			},
		},
		{
			name:  "several roles add up",
			roles: []string{"webpubsub.joinLeaveGroup.a", "webpubsub.joinLeaveGroups.b.*", "webpubsub.sendToGroup"},
			checks: []check{
				{PermJoinLeave, "a", true},
				{PermJoinLeave, "b.x", true},
				{PermJoinLeave, "c", false},
				{PermSend, "c", true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Conn{perms: grantsFromRoles(tt.roles)}
			for _, ck := range tt.checks {
				if got := c.Can(ck.perm, ck.group); got != ck.want {
					t.Errorf("roles %q: Can(%d, %q) = %v, want %v", tt.roles, ck.perm, ck.group, got, ck.want)
				}
			}
		})
	}
}

func TestGrantRevokeCan(t *testing.T) {
	t.Parallel()
	type step struct {
		op    string // "grant", "revoke" or "can"
		perm  Permission
		group string
		want  bool // for "can"
	}
	tests := []struct {
		name  string
		roles []string
		steps []step
	}{
		{
			name: "grant one group",
			steps: []step{
				{"can", PermSend, "g", false},
				{"grant", PermSend, "g", false},
				{"can", PermSend, "g", true},
				{"can", PermSend, "h", false},
				{"can", PermSend, "", false},
				{"can", PermJoinLeave, "g", false},
			},
		},
		{
			name: "grant empty group means every group",
			steps: []step{
				{"grant", PermJoinLeave, "", false},
				{"can", PermJoinLeave, "x", true},
				{"can", PermJoinLeave, "", true},
				{"can", PermSend, "x", false},
			},
		},
		{
			name:  "revoke one group under an all-groups role",
			roles: []string{"webpubsub.sendToGroup"},
			steps: []step{
				{"can", PermSend, "g", true},
				{"revoke", PermSend, "g", false},
				{"can", PermSend, "g", false},
				{"can", PermSend, "h", true},
				{"can", PermSend, "", false}, // no longer every group
				{"grant", PermSend, "g", false},
				{"can", PermSend, "g", true},
				{"can", PermSend, "", true},
			},
		},
		{
			name:  "revoke one group matched by a pattern",
			roles: []string{"webpubsub.joinLeaveGroups.chat.*"},
			steps: []step{
				{"can", PermJoinLeave, "chat.a", true},
				{"revoke", PermJoinLeave, "chat.a", false},
				{"can", PermJoinLeave, "chat.a", false},
				{"can", PermJoinLeave, "chat.b", true},
			},
		},
		{
			name:  "revoke all clears roles, grants and patterns",
			roles: []string{"webpubsub.sendToGroup", "webpubsub.sendToGroups.x.*"},
			steps: []step{
				{"grant", PermSend, "g", false},
				{"revoke", PermSend, "", false},
				{"can", PermSend, "g", false},
				{"can", PermSend, "x.y", false},
				{"can", PermSend, "other", false},
				{"can", PermSend, "", false},
			},
		},
		{
			name: "grant all after revoking one group restores it",
			steps: []step{
				{"grant", PermSend, "", false},
				{"revoke", PermSend, "g", false},
				{"can", PermSend, "g", false},
				{"grant", PermSend, "", false},
				{"can", PermSend, "g", true},
			},
		},
		{
			name: "revoke a group never granted is harmless",
			steps: []step{
				{"revoke", PermJoinLeave, "g", false},
				{"can", PermJoinLeave, "g", false},
				{"grant", PermJoinLeave, "g", false},
				{"can", PermJoinLeave, "g", true},
			},
		},
		{
			name: "permissions are independent",
			steps: []step{
				{"grant", PermSend, "", false},
				{"revoke", PermJoinLeave, "", false},
				{"can", PermSend, "g", true},
				{"can", PermJoinLeave, "g", false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Conn{perms: grantsFromRoles(tt.roles)}
			for i, s := range tt.steps {
				switch s.op {
				case "grant":
					c.Grant(s.perm, s.group)
				case "revoke":
					c.Revoke(s.perm, s.group)
				case "can":
					if got := c.Can(s.perm, s.group); got != s.want {
						t.Errorf("step %d: Can(%d, %q) = %v, want %v", i, s.perm, s.group, got, s.want)
					}
				default:
					t.Fatalf("bad step %q", s.op)
				}
			}
		})
	}
}

func TestParsePermission(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Permission
		ok   bool
	}{
		{"joinLeaveGroup", PermJoinLeave, true},
		{"JOINLEAVEGROUP", PermJoinLeave, true},
		{"sendToGroup", PermSend, true},
		{"sendtogroup", PermSend, true},
		{"sendToGroups", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParsePermission(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParsePermission(%q) = %v, %v, want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzMatchGroupPattern(f *testing.F) {
	for _, s := range [][2]string{{"chat.*", "chat.a"}, {"**", "a.b"}, {`\*?`, "*x"}, {"a*b*c", "abc"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, group string) {
		if len(group) > 64 || strings.Count(pattern, "*") > 5 {
			return
		}
		// A pattern without wildcards or escapes matches exactly itself.
		if !strings.ContainsAny(pattern, `*?\`) {
			if got := matchGroupPattern(pattern, group); got != (pattern == group) {
				t.Fatalf("matchGroupPattern(%q, %q) = %v", pattern, group, got)
			}
		}
		// "**" matches everything.
		if !matchGroupPattern("**", group) {
			t.Fatalf("** does not match %q", group)
		}
		matchGroupPattern(pattern, group)
	})
}
