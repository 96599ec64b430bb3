package template

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseAndExecute(t *testing.T) {
	vars := func(p Part) (string, error) {
		if p.Name == Value {
			return "V(" + strings.Join(p.Path, "/") + ")", nil
		}
		return strings.ToUpper(p.Name), nil
	}
	for _, tc := range []struct{ in, want string }{
		{"customer:{key}", "customer:KEY"},
		{"account:{value.customerId}", "account:V(customerId)"},
		{"{topic}/{partition}/{offset}", "TOPIC/PARTITION/OFFSET"},
		{"a.{value.a.b.0}.z", "a.V(a/b/0).z"},
		{"{{literal}}", "{literal}"},
		{"plain", "plain"},
		{"", ""},
	} {
		tpl, err := Parse(tc.in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.in, err)
		}
		got, err := tpl.Execute(vars)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"{nope}", "unknown placeholder {nope}"},
		{"{value}", "{value} needs a field"},
		{"{value.}", "empty or invalid field"},
		{"{value..a}", "empty or invalid field"},
		{"a{key", "not closed"},
		{"a}b", "closes no placeholder"},
		{strings.Repeat("x", MaxBytes+1), "bytes long"},
		{"{value." + strings.Repeat("a.", MaxDepth) + "a}", "more than"},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%.40q): %v, want an error with %q", tc.in, err, tc.want)
		}
	}
}

func TestExecuteReportsLookupError(t *testing.T) {
	tpl, err := Parse("g:{value.missing}")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tpl.Execute(func(Part) (string, error) { return "", fmt.Errorf("no field") }); err == nil {
		t.Error("lookup error was swallowed")
	}
}

// FuzzParse: any input parses or fails with an error; a parsed template executes, and its
// literal parts and placeholders come back in order.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"customer:{key}", "account:{value.customerId}", "{{x}}", "{topic}/{partition}/{offset}", "}", "{", "{value.a.b.c}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tpl, err := Parse(s)
		if err != nil {
			return
		}
		got, err := tpl.Execute(func(p Part) (string, error) { return "<" + p.Name + ">", nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) > 8*len(s)+8 {
			t.Fatalf("%q expanded to %d bytes", s, len(got))
		}
		if !strings.Contains(s, "{") && !strings.Contains(s, "}") && got != s {
			t.Fatalf("literal %q came back as %q", s, got)
		}
	})
}
