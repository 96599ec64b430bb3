package odata_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/odata"
)

// TestSyntaxErrorEchoIsCapped: the error of a huge filter quotes its start
// and the part where the problem is, not the whole filter (a 500 KB filter
// made a 2 MB answer); a short filter is quoted whole, as the service does.
func TestSyntaxErrorEchoIsCapped(t *testing.T) {
	for _, tt := range []struct {
		name, filter string
		want         []string
	}{
		{"500 KB", strings.Repeat("userId eq 'é' or ", 30000) + "bogus(userId)",
			[]string{"Invalid syntax for 'userId eq 'é' or ", "…': Syntax error at position ", "too long"}},
		{"error at the end", strings.Repeat("userId eq 'é' or ", 100) + "bogus(userId)",
			[]string{"Invalid syntax for 'userId eq 'é' or ", "…': Syntax error at position 1700 (unknown function 'bogus'", "bogus(userId)'."}},
	} {
		_, err := odata.Parse(tt.filter)
		var se *odata.SyntaxError
		if !errors.As(err, &se) {
			t.Fatalf("%s: Parse of a bad filter: %v", tt.name, err)
		}
		msg := se.Error()
		if len(msg) > 1024 {
			t.Errorf("%s: error of a %d-byte filter is %d bytes long", tt.name, len(tt.filter), len(msg))
		}
		if !utf8.ValidString(msg) {
			t.Errorf("%s: error is not valid UTF-8: %q", tt.name, msg)
		}
		for _, want := range tt.want {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: error %q does not contain %q", tt.name, msg, want)
			}
		}
	}

	const short = "invalid filter"
	_, err := odata.Parse(short)
	if got, want := err.Error(), "Invalid syntax for 'invalid filter': Syntax error at position 14 in 'invalid filter'."; got != want {
		t.Errorf("short filter: %q, want %q", got, want)
	}
}
