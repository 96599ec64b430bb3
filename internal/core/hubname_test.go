package core

import (
	"regexp"
	"strings"
	"testing"
)

// hubNameRE is the hub name's grammar as the service documents it; ValidHubName checks it
// byte by byte.
var hubNameRE = regexp.MustCompile("^[A-Za-z][A-Za-z0-9_`,.\\[\\]]{0,127}$")

func TestValidHubNameIsTheRegexp(t *testing.T) {
	for _, s := range []string{"", "a", "A", "0a", "_a", "a0_`,.[]", "a-b", "a b", "a/b", "héllo", "a\x00",
		"a" + strings.Repeat("b", 127), "a" + strings.Repeat("b", 128), "chat", "Chat.v2[1]", "a\n"} {
		if got, want := ValidHubName(s), hubNameRE.MatchString(s); got != want {
			t.Errorf("ValidHubName(%q) = %v, the regexp says %v", s, got, want)
		}
	}
}

func FuzzValidHubName(f *testing.F) {
	for _, s := range []string{"a", "a0_`,.[]", "a-b", "0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidHubName(s), hubNameRE.MatchString(s); got != want {
			t.Fatalf("ValidHubName(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}

func BenchmarkValidHubName(b *testing.B) {
	for b.Loop() {
		if !ValidHubName("bench_hub.v2") {
			b.Fatal("invalid")
		}
	}
}

// BenchmarkValidHubNameRegexp is what ValidHubName cost as a regexp match (for comparison).
func BenchmarkValidHubNameRegexp(b *testing.B) {
	for b.Loop() {
		if !hubNameRE.MatchString("bench_hub.v2") {
			b.Fatal("invalid")
		}
	}
}
