package history

import (
	"fmt"
	"strings"
	"time"
)

// Retention is how much of a group's stream is kept.
type Retention struct {
	MaxMessages int           // newest messages kept; > 0
	MaxAge      time.Duration // messages older than this are dropped; > 0
}

// Rule gives groups whose names match Pattern a retention.
type Rule struct {
	Pattern string // '*' matches any run of characters (':' and '.' included); other characters match themselves
	Retention
}

// Policies are the retention rules by hub name (lower-case); the hub
// "_default" applies to hubs without their own entry. The first rule whose
// pattern matches a group wins; a group no rule matches keeps no history.
type Policies map[string][]Rule

// Validate reports every invalid rule.
func (p Policies) Validate() error {
	var errs []string
	for hub, rules := range p {
		for i, r := range rules {
			where := fmt.Sprintf("hubs.%s.history[%d]", hub, i)
			if r.Pattern == "" || len(r.Pattern) > 1024 {
				errs = append(errs, where+": pattern must be 1 to 1024 characters")
			}
			if r.MaxMessages <= 0 {
				errs = append(errs, fmt.Sprintf("%s: max_messages must be positive, got %d", where, r.MaxMessages))
			}
			if r.MaxAge <= 0 {
				errs = append(errs, fmt.Sprintf("%s: max_age must be positive, got %s", where, r.MaxAge))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("history: %s", strings.Join(errs, "; "))
	}
	return nil
}

// Lookup returns the retention of group in hub, and false when the group
// keeps no history.
func (p Policies) Lookup(hub, group string) (Retention, bool) {
	rules, ok := p[strings.ToLower(policyHub(hub))]
	if !ok {
		rules = p["_default"]
	}
	for _, r := range rules {
		if matchGlob(r.Pattern, group) {
			return r.Retention, true
		}
	}
	return Retention{}, false
}

// RuleOf returns which rule gives group of hub its retention: the key of
// the hub's rules in p (the lower-case hub name, or "_default") and the
// rule's index among them; ok is false when the group keeps no history.
func (p Policies) RuleOf(hub, group string) (key string, index int, r Retention, ok bool) {
	key = strings.ToLower(policyHub(hub))
	rules, found := p[key]
	if !found {
		key, rules = "_default", p["_default"]
	}
	for i, rule := range rules {
		if matchGlob(rule.Pattern, group) {
			return key, i, rule.Retention, true
		}
	}
	return "", 0, Retention{}, false
}

// MetricLabel is the hub label of hub's history metrics: the hub's name when
// the policies name it, else "_default" (with hub's namespace), so that the
// series are bounded by the configuration, not by the hubs clients use.
func (p Policies) MetricLabel(hub string) string {
	name := policyHub(hub)
	if _, ok := p[strings.ToLower(name)]; ok {
		return hub
	}
	return hub[:len(hub)-len(name)] + "_default"
}

// MatchGlob matches s against pattern as history rules do: '*' is any run
// of bytes, every other byte itself.
func MatchGlob(pattern, s string) bool { return matchGlob(pattern, s) }

// matchGlob matches s against pattern, where '*' is any run of bytes. It
// runs in O(len(pattern)·len(s)) at worst (backtracking to the last star
// only).
func matchGlob(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
