package rest

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestErrorsQuoteInputInPart: the REST base's own errors quote at most the
// start of a client's value. SplitPath's is not reachable through net/http,
// which refuses a bad escape itself, but its callers may pass any path.
func TestErrorsQuoteInputInPart(t *testing.T) {
	big := strings.Repeat("x", 40000)
	q, err := ParseQuery("n=" + big)
	if err != nil {
		t.Fatal(err)
	}
	_, _, intErr := q.Int("n", 1, 10)
	_, _, splitErr := SplitPath("/api/hubs/%zz" + big)
	for name, err := range map[string]error{
		"SplitPath": splitErr,
		"Int":       intErr,
		"NoRoute":   NoRoute("GET", "/api/"+big),
		"Method":    MethodNotAllowed(httptest.NewRecorder(), "X"+big, []string{"GET"}),
	} {
		e, ok := err.(*Error)
		if !ok || len(e.Message) > 256 || !strings.Contains(e.Message, "xxx…") {
			t.Errorf("%s: %d-byte message %.200q, want at most 256 bytes quoting the value in part", name, len(e.Message), e.Message)
		}
	}
}
