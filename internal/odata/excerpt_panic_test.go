package odata_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/odata"
)

// TestSyntaxErrorInInvalidUTF8 is a filter whose error falls in a long run
// of bytes that are not UTF-8 (a too-long filter, cut inside a string
// literal of them): the excerpt around the error used to slice past its own
// end and panic.
func TestSyntaxErrorInInvalidUTF8(t *testing.T) {
	filter := "userId eq '" + strings.Repeat("\x8d", 100000) + "'"
	_, err := odata.Parse(filter)
	var se *odata.SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("Parse: %v", err)
	}
	if msg := se.Error(); len(msg) > 1024 || !utf8.ValidString(msg) {
		t.Fatalf("error of %d bytes: %.300q", len(msg), msg)
	}
}
