package signalr

import (
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
)

// TestPollHeaderRoundTrip: a relayed poll's status and headers come out on
// the client's node as the owner wrote them.
func TestPollHeaderRoundTrip(t *testing.T) {
	h := http.Header{"Content-Type": {"application/octet-stream"}, "Cache-Control": {"no-cache, no-store"}, "X-Two": {"a", "b"}}
	rec := httptest.NewRecorder()
	writePollHeader(rec, pollHeader(http.StatusOK, h))
	if rec.Code != http.StatusOK || !reflect.DeepEqual(rec.Header(), h) {
		t.Fatalf("got %d %v, want 200 %v", rec.Code, rec.Header(), h)
	}
	for _, bad := range []string{"", "abc", "99", "600\nA: b"} {
		rec := httptest.NewRecorder()
		writePollHeader(rec, []byte(bad))
		if rec.Code != http.StatusBadGateway {
			t.Errorf("%q: %d, want 502", bad, rec.Code)
		}
	}
}

// FuzzPollHeader: whatever another node sends as a poll's header is
// written as a status in range and headers, or refused with 502; a header
// pollHeader made comes back whole.
func FuzzPollHeader(f *testing.F) {
	f.Add([]byte("200\nContent-Type: text/plain"))
	f.Add([]byte("204"))
	f.Add([]byte("\n: \n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec := httptest.NewRecorder()
		writePollHeader(rec, b)
		if rec.Code < 100 || rec.Code > 599 {
			t.Fatalf("status %d", rec.Code)
		}
		if rec.Code == http.StatusBadGateway {
			return
		}
		again := httptest.NewRecorder()
		writePollHeader(again, pollHeader(rec.Code, rec.Header()))
		if again.Code != rec.Code || !reflect.DeepEqual(again.Header(), rec.Header()) {
			t.Fatalf("%q: %d %v re-encodes as %d %v", b, rec.Code, rec.Header(), again.Code, again.Header())
		}
	})
}
