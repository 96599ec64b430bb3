package odata

import (
	"strconv"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// SyntaxError reports a filter that cannot be parsed or does not type-check.
type SyntaxError struct {
	// Input is the filter text as given to Parse.
	Input string
	// Pos is the 0-based position of the problem in UTF-16 code units, as
	// the Azure service reports it (the byte offset for ASCII input).
	Pos int
	// Detail explains the problem in plain words; it is not part of Error.
	Detail string

	off int // the byte offset of Pos in Input
}

// MaxEchoBytes bounds how much of the filter an error message quotes: a
// longer filter is quoted as its first MaxEchoBytes bytes and, where the
// problem is, the MaxEchoBytes around it, each cut short with "…", so that a
// huge filter cannot make a huge error answer.
const MaxEchoBytes = 64

// Error returns the message the Azure service gives for an invalid filter,
// without the " (Parameter 'filter')" suffix the REST layer adds. A filter
// longer than MaxEchoBytes is quoted in part (see MaxEchoBytes), and Detail
// is added after the position.
func (e *SyntaxError) Error() string {
	pos := strconv.Itoa(e.Pos)
	if len(e.Input) <= MaxEchoBytes {
		return "Invalid syntax for '" + e.Input + "': Syntax error at position " + pos + " in '" + e.Input + "'."
	}
	// A long filter: quote its start and the part where the problem is, and
	// say what the problem is, since the quotes may not show it.
	head := excerpt.Cut(e.Input, 0, MaxEchoBytes)
	start := max(0, min(e.off-MaxEchoBytes/2, len(e.Input)-MaxEchoBytes))
	at := excerpt.Cut(e.Input, start, start+MaxEchoBytes)
	return "Invalid syntax for '" + head + "': Syntax error at position " + pos + " (" + e.Detail + ") in '" + at + "'."
}

// parseError is the internal form of a SyntaxError: off is a byte offset.
type parseError struct {
	off    int
	detail string
}

func (e *parseError) Error() string { return e.detail }

func errAt(off int, detail string) *parseError {
	return &parseError{off: off, detail: detail}
}

// utf16Offset converts the byte offset off of s into a count of UTF-16 code
// units, the unit .NET uses for string positions. Invalid UTF-8 bytes count
// as one unit each (they decode to U+FFFD).
func utf16Offset(s string, off int) int {
	if off > len(s) {
		off = len(s)
	}
	n := 0
	for i := 0; i < off; {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			n++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:off])
		i += size
		if r > 0xFFFF {
			n += 2
		} else {
			n++
		}
	}
	return n
}
