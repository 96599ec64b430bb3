package odata

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzParse(f *testing.F) {
	for _, tt := range matchTests {
		f.Add(tt.filter)
	}
	for _, tt := range errorTests {
		f.Add(tt.filter)
	}
	fuzzSubjects := append([]*conn{
		{name: "empty"},
		{name: "weird", userID: "\xff\xfe😀''", id: "\x00", groups: []string{"", "\xff"}, protocol: "x"},
	}, subjects...)
	f.Fuzz(func(t *testing.T, s string) {
		filter, err := Parse(s)
		if err != nil {
			se, ok := err.(*SyntaxError)
			if !ok {
				t.Fatalf("Parse(%q) error is %T", s, err)
			}
			if se.Input != s || se.Detail == "" {
				t.Fatalf("Parse(%q): bad error %#v", s, se)
			}
			if se.Pos < 0 || se.Pos > utf16Offset(s, len(s)) {
				t.Fatalf("Parse(%q): position %d out of range", s, se.Pos)
			}
			if !strings.HasPrefix(se.Error(), "Invalid syntax for '") {
				t.Fatalf("Parse(%q): bad message %q", s, se.Error())
			}
			return
		}
		if filter.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, filter.String())
		}
		if len(s) > MaxLength {
			t.Fatalf("Parse accepted %d bytes", len(s))
		}
		for _, c := range fuzzSubjects {
			got := filter.Match(c)
			if again := filter.Match(c); again != got {
				t.Fatalf("Parse(%q).Match(%s) is not deterministic", s, c.name)
			}
		}
		_ = utf8.ValidString(s)
	})
}
