// Package excerpt cuts client input short where an error message quotes it,
// so that a huge path, header, query parameter or body field cannot make a
// huge error answer or close reason.
package excerpt

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Max is how many bytes of a client's value an error message quotes.
const Max = 64

// MaxError is how many bytes of a decoder's error text an error message
// quotes: such texts may quote the input (a JSON number literal, a
// Content-Type) and are longer than a value.
const MaxError = 128

// Cut returns s[from:to], its ends moved inward to rune boundaries and
// clamped to s, with "…" where it cuts s short and invalid UTF-8 replaced by
// U+FFFD. It never returns more than to-from bytes of s plus two "…".
func Cut(s string, from, to int) string {
	width := to - from // the most bytes of output, "…" aside
	from, to = max(0, min(from, len(s))), max(0, min(to, len(s)))
	if to <= from {
		if s == "" {
			return ""
		}
		return "…"
	}
	for from > 0 && from < len(s) && !utf8.RuneStart(s[from]) {
		from++
	}
	for to < len(s) && to > from && !utf8.RuneStart(s[to]) {
		to--
	}
	to = max(to, from) // from may have passed to in a run of continuation bytes
	n := width
	out := strings.ToValidUTF8(s[from:to], "\uFFFD")
	cutEnd := to < len(s)
	if len(out) > n { // replacements are longer than the bytes they replace
		for n > 0 && !utf8.RuneStart(out[n]) {
			n--
		}
		out, cutEnd = out[:n], true
	}
	if from > 0 {
		out = "…" + out
	}
	if cutEnd {
		out += "…"
	}
	return out
}

// Of returns s whole if it has at most Max bytes, else its first Max bytes
// (cut at a rune boundary) followed by "…"; invalid UTF-8 is replaced.
func Of(s string) string { return Cut(s, 0, Max) }

// Quote returns Of(s) double-quoted with Go escapes (as %q writes it), so
// that control characters and quotes in the value cannot break the message
// around it: at most 4*Max+5 bytes.
func Quote(s string) string { return strconv.Quote(Of(s)) }

// Error returns err's text, cut to its first MaxError bytes like Of, for a
// message that passes on what a decoder said about client input.
func Error(err error) string { return Cut(err.Error(), 0, MaxError) }
