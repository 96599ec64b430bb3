package rest

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Codes of the x-ms-error-code header that both APIs give for the same failures of the request
// itself.
const (
	CodeBadRequest       = "Error.BadRequest"
	CodeNotFound         = "Error.NotFound"
	CodeMethodNotAllowed = "Error.MethodNotAllowed"
	CodeTooLarge         = "Error.PayloadTooLarge"
	CodeInternal         = "Error.InternalServerError"
	// CodeClusterUnavailable answers an operation refused with
	// core.ErrBrokerUnavailable (503): the node cannot reach the cluster's
	// NATS, and nothing was sent.
	CodeClusterUnavailable = "Error.Cluster.Unavailable"
	// MsgClusterUnavailable is its message.
	MsgClusterUnavailable = "The node cannot reach the cluster's message bus (NATS), or another node did not answer in time; a send was not delivered anywhere. Try again (a group or permission change may have been applied on some nodes: repeating it is safe)."
)

// Error is an answer other than success: Status, the x-ms-error-code value Code, and the
// message and target of the body, which each API writes in its own format.
type Error struct {
	Status  int
	Code    string
	Message string
	Target  string // the parameter, header or body at fault; "" when none
	// Stream is where a group's stream stands, for the history errors that name an offset or
	// epoch; nil otherwise.
	Stream *durable.Position
	Cause  error
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func (e *Error) Unwrap() error { return e.Cause }

// Fail builds an Error; args, when given, format message.
func Fail(status int, code, target, message string, args ...any) *Error {
	if len(args) > 0 {
		message = fmt.Sprintf(message, args...)
	}
	return &Error{Status: status, Code: code, Target: target, Message: message}
}

// BadRequest is a 400 Error.BadRequest about the parameter target.
func BadRequest(target, message string, args ...any) *Error {
	return Fail(http.StatusBadRequest, CodeBadRequest, target, message, args...)
}

// Rule is one row of an API's table from errors (core's, the context's, its own sentinels) to
// answers. A %s in Message is the subject the caller names (a conn id, user id, group or hub).
// An API declares its table with a type of its own, `type rule rest.Rule`, so that its rows can
// stay positional.
type Rule struct {
	Err     error
	Status  int
	Code    string
	Target  string
	Message string
}

// Resolve turns any error into an Error: an Error in err's chain as it is, a durable.Failure
// (idempotent sends, catch-up reads) as its answer, else the first rule err matches with subject
// in its message, else a 500 that says nothing of the cause.
func Resolve[R ~struct {
	Err     error
	Status  int
	Code    string
	Target  string
	Message string
}](rules []R, err error, subject string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var df *durable.Failure
	if errors.As(err, &df) {
		return &Error{Status: df.Status, Code: df.Code, Message: df.Message, Target: df.Target, Stream: df.Stream, Cause: err}
	}
	for _, rr := range rules {
		r := Rule(rr)
		if !errors.Is(err, r.Err) {
			continue
		}
		msg := r.Message
		switch {
		case r.Err == core.ErrHistoryUnavailable: // names the cause (no space, I/O)
			msg = durable.UnavailableMessage(err)
		case strings.Contains(msg, "%s"):
			msg = fmt.Sprintf(msg, excerpt.Of(subject))
		}
		return &Error{Status: r.Status, Code: r.Code, Message: msg, Target: r.Target, Cause: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal,
		Message: "The service failed to handle the request.", Cause: err}
}
