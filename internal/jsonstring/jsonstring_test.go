package jsonstring_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/switchboardhq/switchboard/internal/jsonstring"
)

var cases = []struct{ in, plain, html string }{
	{"", `""`, `""`},
	{"plain", `"plain"`, `"plain"`},
	{`q"b\`, `"q\"b\\"`, `"q\"b\\"`},
	{"a\nb\rc\td", `"a\nb\rc\td"`, `"a\nb\rc\td"`},
	{"\b\f\x00\x1f", `"\u0008\u000c\u0000\u001f"`, `"\b\f\u0000\u001f"`},
	{"<a&b>", `"<a&b>"`, `"\u003ca\u0026b\u003e"`},
	{"é ∑ 😀", `"é ∑ 😀"`, `"é ∑ 😀"`},
	{"x\u2028y\u2029", `"x\u2028y\u2029"`, `"x\u2028y\u2029"`},
	{"bad\xffutf8\xc3", `"bad\ufffdutf8\ufffd"`, `"bad\ufffdutf8\ufffd"`},
}

func TestAppend(t *testing.T) {
	for _, c := range cases {
		if got := string(jsonstring.Append([]byte("x"), c.in)); got != "x"+c.plain {
			t.Errorf("Append(%q) = %s, want %s", c.in, got[1:], c.plain)
		}
		if got := string(jsonstring.AppendHTMLSafe(nil, c.in)); got != c.html {
			t.Errorf("AppendHTMLSafe(%q) = %s, want %s", c.in, got, c.html)
		}
	}
}

// FuzzAppend checks that both forms decode to the input (with invalid UTF-8
// replaced) and that the HTML-safe form is byte for byte encoding/json's.
func FuzzAppend(f *testing.F) {
	for _, c := range cases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want []rune // ranging replaces invalid UTF-8 by U+FFFD, as the encoders do
		for _, r := range s {
			want = append(want, r)
		}
		if a, b := jsonstring.Append(nil, s), jsonstring.AppendBytes(nil, []byte(s)); !bytes.Equal(a, b) {
			t.Fatalf("%q: Append %s, AppendBytes %s", s, a, b)
		}
		for _, enc := range [][]byte{jsonstring.Append(nil, s), jsonstring.AppendHTMLSafe(nil, s)} {
			var got string
			if err := json.Unmarshal(enc, &got); err != nil {
				t.Fatalf("%q encoded as %s: %v", s, enc, err)
			}
			if got != string(want) {
				t.Fatalf("%q round-tripped as %q", s, got)
			}
		}
		m, _ := json.Marshal(s)
		if got := jsonstring.AppendHTMLSafe(nil, s); string(got) != string(m) {
			t.Fatalf("AppendHTMLSafe(%q) = %s, encoding/json %s", s, got, m)
		}
	})
}
