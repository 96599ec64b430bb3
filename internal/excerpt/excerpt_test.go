package excerpt

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestOf(t *testing.T) {
	long := strings.Repeat("a", Max+1)
	tests := []struct{ in, want string }{
		{"", ""},
		{"hub", "hub"},
		{strings.Repeat("a", Max), strings.Repeat("a", Max)},
		{long, strings.Repeat("a", Max) + "…"},
		// A rune across the cut is left out whole.
		{strings.Repeat("a", Max-1) + "é" + "b", strings.Repeat("a", Max-1) + "…"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
	}
	for _, tt := range tests {
		if got := Of(tt.in); got != tt.want {
			t.Errorf("Of(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCut(t *testing.T) {
	s := "0123456789"
	tests := []struct {
		from, to int
		want     string
	}{
		{0, 10, s},
		{0, 20, s},
		{2, 5, "…234…"},
		{-3, 3, "012…"},
		{8, 3, "…"},
		{12, 15, "…"},
	}
	for _, tt := range tests {
		if got := Cut(s, tt.from, tt.to); got != tt.want {
			t.Errorf("Cut(%q, %d, %d) = %q, want %q", s, tt.from, tt.to, got, tt.want)
		}
	}
	// A run of continuation bytes longer than the cut moves from past to;
	// this used to slice s[from:to] with from > to and panic.
	bad := strings.Repeat("0", 31) + strings.Repeat("\x8d", 6)
	if got := Cut(bad, 31, 36); got != "…" {
		t.Errorf("Cut(%q, 31, 36) = %q, want %q", bad, got, "…")
	}
}

func TestQuoteAndError(t *testing.T) {
	in := "x\"\n" + strings.Repeat("y", 1<<20)
	q := Quote(in)
	if len(q) > 4*Max+5 || !strings.HasPrefix(q, `"x\"\ny`) || !strings.HasSuffix(q, `…"`) {
		t.Errorf("Quote of a 1 MiB value = %q (%d bytes)", q, len(q))
	}
	e := Error(errors.New("json: cannot unmarshal number " + strings.Repeat("9", 1<<20)))
	if len(e) > MaxError+3 || !strings.HasPrefix(e, "json: cannot unmarshal number 99") {
		t.Errorf("Error of a 1 MiB text = %q (%d bytes)", e, len(e))
	}
}

// FuzzQuote checks the helpers' promises for any input: bounded, valid UTF-8,
// a prefix of the input (up to the replaced bytes) and Quote a Go string.
func FuzzQuote(f *testing.F) {
	for _, s := range []string{"", "hub", strings.Repeat("é", 40), "a\xff\xfe" + strings.Repeat("z", 100), "\x00\"\\\n"} {
		f.Add(s, 0, 70)
	}
	f.Fuzz(func(t *testing.T, s string, from, to int) {
		o := Of(s)
		if len(o) > Max+len("…") || !utf8.ValidString(o) {
			t.Fatalf("Of(%q) = %q: %d bytes or invalid UTF-8", s, o, len(o))
		}
		if utf8.ValidString(s) && !strings.HasPrefix(s, strings.TrimSuffix(o, "…")) {
			t.Fatalf("Of(%q) = %q is not a prefix", s, o)
		}
		if len(s) <= Max && utf8.ValidString(s) && o != s {
			t.Fatalf("Of(%q) = %q, want it whole", s, o)
		}
		q := Quote(s)
		if len(q) > 4*Max+5 || !utf8.ValidString(q) {
			t.Fatalf("Quote(%q) = %q: %d bytes", s, q, len(q))
		}
		if u, err := strconv.Unquote(q); err != nil || u != o {
			t.Fatalf("Quote(%q) = %q does not unquote to %q: %v", s, q, o, err)
		}
		c := Cut(s, from, to)
		if n := max(0, to-from); len(c) > n+2*len("…") || !utf8.ValidString(c) {
			t.Fatalf("Cut(%q, %d, %d) = %q: %d bytes", s, from, to, c, len(c))
		}
	})
}
