package core

import (
	"strings"
	"unicode/utf8"
)

// Permission is a right a conn may hold over groups.
type Permission uint8

// Permissions of the Web PubSub client protocols.
const (
	PermJoinLeave Permission = iota // join and leave groups
	PermSend                        // publish to groups
	numPerms
)

// ParsePermission maps the REST names (case-insensitive) to a Permission.
func ParsePermission(s string) (Permission, bool) {
	switch strings.ToLower(s) {
	case "joinleavegroup":
		return PermJoinLeave, true
	case "sendtogroup":
		return PermSend, true
	}
	return 0, false
}

// grants is what a conn may do for one Permission: every group, some exact
// groups, groups matching wildcard patterns, minus groups revoked one by one.
type grants struct {
	all      bool
	groups   map[string]struct{}
	patterns []string
	revoked  map[string]struct{}
}

func (g *grants) allows(group string) bool {
	if _, ok := g.revoked[group]; ok {
		return false
	}
	if g.all {
		return true
	}
	if _, ok := g.groups[group]; ok {
		return true
	}
	for _, p := range g.patterns {
		if matchGroupPattern(p, group) {
			return true
		}
	}
	return false
}

func (g *grants) grant(group string) {
	if group == "" {
		g.all = true
		g.revoked = nil
		return
	}
	delete(g.revoked, group)
	if g.groups == nil {
		g.groups = make(map[string]struct{})
	}
	g.groups[group] = struct{}{}
}

func (g *grants) revoke(group string) {
	if group == "" {
		*g = grants{}
		return
	}
	delete(g.groups, group)
	if g.revoked == nil {
		g.revoked = make(map[string]struct{})
	}
	g.revoked[group] = struct{}{}
}

// rolePrefixes maps the role prefixes of spec §3.5 to permissions; a role
// with no suffix grants every group, ".<group>" one group, and the plural
// form ".<pattern>" the groups matching a wildcard pattern.
var rolePrefixes = [...]struct {
	exact, plural string
	perm          Permission
}{
	{"webpubsub.joinLeaveGroup", "webpubsub.joinLeaveGroups.", PermJoinLeave},
	{"webpubsub.sendToGroup", "webpubsub.sendToGroups.", PermSend},
}

// grantsFromRoles builds a conn's initial grants from its roles. Unknown roles
// are kept by the caller for the upstream but grant nothing here.
func grantsFromRoles(roles []string) (g [numPerms]grants) {
	for _, r := range roles {
		for _, p := range rolePrefixes {
			switch {
			case r == p.exact:
				g[p.perm].all = true
			case strings.HasPrefix(r, p.exact+".") && ValidGroupName(r[len(p.exact)+1:]):
				g[p.perm].grant(r[len(p.exact)+1:])
			case strings.HasPrefix(r, p.plural) && validGroupPattern(r[len(p.plural):]):
				g[p.perm].patterns = append(g[p.perm].patterns, r[len(p.plural):])
			}
		}
	}
	return g
}

// validGroupPattern reports whether p is a usable wildcard pattern: not empty
// and with at most five '*'.
func validGroupPattern(p string) bool {
	return p != "" && strings.Count(p, "*") <= 5
}

// matchGroupPattern matches group against a wildcard pattern: '?' is one
// character except '.', '*' any run without '.', '**' any run, and '\'
// escapes the next character. Matching is case-sensitive.
func matchGroupPattern(pattern, group string) bool {
	ok, _ := matchPattern(pattern, group)
	return ok
}

// patternToken is one element of a compiled pattern.
type patternToken struct {
	kind byte   // 'l' literal, '?', '*', 'S' (**)
	lit  string // the literal character's bytes (compared as bytes, so invalid UTF-8 matches only itself)
}

// matchPattern runs the pattern as a set of states over the runes of group,
// so the work is bounded by len(tokens) × len(group) whatever the pattern;
// steps counts it (for tests).
func matchPattern(pattern, group string) (ok bool, steps int) {
	var toks []patternToken
	for i := 0; i < len(pattern); {
		r, size := utf8.DecodeRuneInString(pattern[i:])
		i += size
		switch {
		case r == '*' && i < len(pattern) && pattern[i] == '*':
			i++
			toks = append(toks, patternToken{kind: 'S'})
		case r == '*':
			toks = append(toks, patternToken{kind: '*'})
		case r == '?':
			toks = append(toks, patternToken{kind: '?'})
		case r == '\\' && i < len(pattern):
			_, size = utf8.DecodeRuneInString(pattern[i:])
			toks = append(toks, patternToken{kind: 'l', lit: pattern[i : i+size]})
			i += size
		default:
			toks = append(toks, patternToken{kind: 'l', lit: pattern[i-size : i]})
		}
	}
	cur := make([]bool, len(toks)+1)
	next := make([]bool, len(toks)+1)
	// closure marks the states reachable from those set by skipping stars.
	closure := func(set []bool) {
		for i, t := range toks {
			steps++
			if set[i] && (t.kind == '*' || t.kind == 'S') {
				set[i+1] = true
			}
		}
	}
	cur[0] = true
	closure(cur)
	for j := 0; j < len(group); {
		r, size := utf8.DecodeRuneInString(group[j:])
		ch := group[j : j+size]
		j += size
		clear(next)
		any := false
		for i, t := range toks {
			steps++
			if !cur[i] {
				continue
			}
			switch t.kind {
			case 'l':
				if t.lit == ch {
					next[i+1], any = true, true
				}
			case '?':
				if r != '.' {
					next[i+1], any = true, true
				}
			case '*':
				if r != '.' {
					next[i], any = true, true
				}
			case 'S':
				next[i], any = true, true
			}
		}
		if !any {
			return false, steps
		}
		closure(next)
		cur, next = next, cur
	}
	return cur[len(toks)], steps
}
