package upstream

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Errors callers branch on.
var (
	// ErrNoHandler means no handler of the hub takes the event; no request was sent.
	ErrNoHandler = errors.New("upstream: no event handler for the event")
	// ErrUnavailable means the handler could not be reached: timeout, network error, or a
	// host that failed (or could not be asked) the abuse-protection validation. The
	// caller answers a server error (5xx).
	ErrUnavailable = errors.New("upstream: event handler unavailable")
	// ErrRefused is wrapped (with ErrUnavailable) when the handler host refused the
	// abuse-protection validation; the host gets no events until revalidation.
	ErrRefused = errors.New("upstream: event handler host refused abuse-protection validation")
	// ErrBadResponse means the handler answered 2xx with a reply that cannot be used: a
	// body over the size limit, invalid JSON, an unoffered subprotocol, several
	// ce-connectionState headers, or a status that is neither 2xx, 4xx nor 5xx.
	ErrBadResponse = errors.New("upstream: invalid event handler response")
	// ErrResponseTooLarge means a SignalR upstream answered an invocation with a 2xx body
	// over MaxInvocationResponseBytes; the client gets "Invocation failed, response too
	// large.".
	ErrResponseTooLarge = errors.New("upstream: upstream response too large")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("upstream: client closed")
)

// HandlerError is a call to an event handler that failed before it had an answer: the
// event, the handler's URL (without its query) and why. Its text is for the operator's
// log: it names the URL and the network error, which clients must not be shown.
type HandlerError struct {
	Event string // the kind of event: "connect", "user", "signalr invocation", …
	URL   string // the handler's URL without its query
	Err   error  // wraps ErrUnavailable, ErrBadResponse, ErrRefused or the cause
}

func (e *HandlerError) Error() string {
	return "upstream: " + e.Event + " " + e.URL + ": " + e.Err.Error()
}

func (e *HandlerError) Unwrap() error { return e.Err }

// HandlerURL returns the handler URL named by err (a *HandlerError in its chain),
// "" when it names none: for a structured log line.
func HandlerURL(err error) string {
	var he *HandlerError
	if errors.As(err, &he) {
		return he.URL
	}
	return ""
}

// RejectError is the handler's 4xx or 5xx answer to a blocking event. For connect the
// caller answers the WebSocket handshake with Status and Reason; for a user event it
// sends an error ack (or drops a raw connection).
type RejectError struct {
	Status int    // the handler's HTTP status, 400..599
	Reason string // the handler's response body as text, trimmed; may be empty
}

func (e *RejectError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("upstream: event handler answered %d", e.Status)
	}
	return fmt.Sprintf("upstream: event handler answered %d: %s", e.Status, e.Reason)
}

// maxReasonBytes bounds RejectError.Reason.
const maxReasonBytes = 1024

// reason turns a rejection body into a one-line, valid UTF-8 reason of at most
// maxReasonBytes bytes.
func reason(body []byte) string {
	s := strings.ToValidUTF8(string(body), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxReasonBytes {
		cut := maxReasonBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
