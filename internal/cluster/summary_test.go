package cluster

import (
	"strings"
	"testing"
	"time"

	"github.com/switchboardhq/switchboard/internal/history"
)

// FuzzGroupOf: the history streams panel names a group by decoding its
// subject; for any hub and group it gets back what subject encoded (the
// hub lower-cased), and a subject of another shape is refused, not guessed.
func FuzzGroupOf(f *testing.F) {
	h := &History{ns: "wps", policies: history.Policies{
		"chat":     {{Pattern: "room:*", Retention: history.Retention{MaxMessages: 10, MaxAge: time.Hour}}},
		"_default": {{Pattern: "*", Retention: history.Retention{MaxMessages: 5, MaxAge: time.Minute}}},
	}}
	for _, s := range [][2]string{{"chat", "room:1"}, {"Chat", "room:a.b c>*"}, {"other", ""}, {"x", "é.\x00"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, hub, group string) {
		subj, _, ok := h.subject(hub, group)
		if !ok {
			return // a group of chat that no chat rule keeps
		}
		gotHub, gotGroup, ok := h.groupOf(subj)
		if !ok || gotHub != strings.ToLower(hub) || gotGroup != group {
			t.Fatalf("groupOf(subject(%q, %q) = %q) = %q, %q, %v", hub, group, subj, gotHub, gotGroup, ok)
		}
		for _, bad := range []string{subj + ".x", strings.TrimPrefix(subj, "sb."), subj[:strings.LastIndexByte(subj, '.')], subj + "!"} {
			if _, _, ok := h.groupOf(bad); ok {
				t.Errorf("groupOf(%q) accepted a subject subject() does not make", bad)
			}
		}
	})
}
