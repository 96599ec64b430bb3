package signalr

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/api/rest"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"
)

// This file is the one place where errors become HTTP answers (spec §7.3): the table from core
// errors to status, x-ms-error-code and body, this package's own errors, and the 401.

// Values of the x-ms-error-code header (and of ErrorDetail.code). The SDK accepts a 404 only
// when the header holds the code it expects for the operation.
const (
	warnConnNotExisted  = "Warning.Connection.NotExisted"
	warnUserNotExisted  = "Warning.User.NotExisted"
	warnGroupNotExisted = "Warning.Group.NotExisted"
	infoUserNotInGroup  = "Info.User.NotInGroup"
	errConnNotExisted   = "Error.Connection.NotExisted"

	codeBadRequest       = rest.CodeBadRequest
	codeUnauthorized     = "Error.Unauthorized"
	codeForbidden        = "Error.Forbidden"
	codeUnsupportedMedia = "Error.UnsupportedMediaType"
	codeNotSupported     = "Error.NotSupported"
	codeUnavailable      = "Error.ServiceUnavailable"
	codeInternal         = rest.CodeInternal
)

// Validation messages, as the emulator words them where it has one.
const (
	msgBodyRequired = "Message in request body is required."
	msgInvalidGroup = "Invalid group name. Valid group name should be in between 1 and 1024 characters long."
	msgInvalidHub   = "Invalid hub name. Valid hub name should start with a letter and contain only letters, digits and the characters _`,.[] (at most 128 characters)."
)

// apiError is an answer other than success: status, the x-ms-error-code value, and the message
// of the body (ErrorDetail JSON on /api/hubs, plain text on /api/v1); a Target of "" is written
// as null.
type apiError = rest.Error

// fail builds an apiError; args format message.
var fail = rest.Fail

// badRequest is a 400 Error.BadRequest about the parameter target.
var badRequest = rest.BadRequest

// notFound is the 404 of an existence check or of an unknown connection: the SDK reads code.
func notFound(code, message string, args ...any) *apiError {
	return fail(http.StatusNotFound, code, "", message, args...)
}

func notSupported(what string) *apiError {
	return fail(http.StatusNotImplemented, codeNotSupported, "", "%s is not supported by this server.", what)
}

// coreAnswers maps every exported core error (and the context errors that come back through
// core calls) to its answer. A %s in message is the subject the caller names.
var coreAnswers = [...]rule{
	{core.ErrInvalidHub, http.StatusBadRequest, codeBadRequest, "", msgInvalidHub},
	{core.ErrInvalidGroup, http.StatusBadRequest, codeBadRequest, "", msgInvalidGroup},
	{core.ErrConnNotFound, http.StatusNotFound, errConnNotExisted, "", "Connection '%s' does not exist."},
	{core.ErrNotRecoverable, http.StatusNotFound, errConnNotExisted, "", "Connection '%s' does not exist."},
	{core.ErrUserNotFound, http.StatusNotFound, warnUserNotExisted, "", "User '%s' does not exist."},
	{core.ErrForbidden, http.StatusForbidden, codeForbidden, "", "Permission denied."},
	{core.ErrGroupLimit, http.StatusBadRequest, codeBadRequest, "", "A connection of '%s' is already in the maximum number of groups."},
	{core.ErrSlowConsumer, http.StatusServiceUnavailable, codeUnavailable, "", "The connection's outbound queue is full."},
	{core.ErrReplayOverflow, http.StatusServiceUnavailable, codeUnavailable, "", "The connection's unacknowledged message buffer is full."},
	{core.ErrNodeClosed, http.StatusServiceUnavailable, codeUnavailable, "", "The service is shutting down."},
	// The message names the cause: see durable.UnavailableMessage.
	{core.ErrHistoryUnavailable, http.StatusServiceUnavailable, durable.CodeHistoryUnavailable, "", "History storage is unavailable."},
	{core.ErrHubLimit, http.StatusServiceUnavailable, codeUnavailable, "", "The server holds too many hubs (limits.max_hubs); try again later."},
	{core.ErrHubReclaimed, http.StatusServiceUnavailable, codeUnavailable, "", "The hub was reclaimed while idle; try again."},
	{core.ErrBrokerUnavailable, http.StatusServiceUnavailable, rest.CodeClusterUnavailable, "", rest.MsgClusterUnavailable},
	// :invoke's failures are 500s (see clientcalls.go); the handler words its own messages.
	{core.ErrInvocationTimeout, http.StatusInternalServerError, codeInvocationTimeout, "", "Connection '%s' did not answer the invocation in time."},
	{core.ErrInvocationClosed, http.StatusInternalServerError, codeInvocationGone, "", "Connection '%s' closed before it answered the invocation."},
	{core.ErrInvocationID, http.StatusInternalServerError, codeInvocationFailed, "", "The invocation id is in use on connection '%s'."},
	{context.Canceled, http.StatusServiceUnavailable, codeUnavailable, "", "The request was canceled."},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, codeUnavailable, "", "The request timed out."},
}

// answer turns any error into an apiError; subject fills the message's %s. Unknown errors are
// 500: a send that failed for an unknown reason may have reached some connections, and the
// SDK does not retry a message API on 500.
func answer(err error, subject string) *apiError { return rest.Resolve(coreAnswers[:], err, subject) }

// rule is a row of coreAnswers.
type rule rest.Rule

// errorDetail is the 2022-06-01 error body.
type errorDetail struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Target  *string `json:"target"`
	Details []any   `json:"details"`
	Inner   any     `json:"inner"`
	// History errors only: the stream's epoch, last and oldest offsets.
	Epoch  *string `json:"epoch,omitempty"`
	Offset *uint64 `json:"offset,omitempty"`
	Oldest *uint64 `json:"oldest,omitempty"`
}

// writeFailure answers err for a request of API generation gen and returns the status: the
// x-ms-error-code header always, then an ErrorDetail JSON body (modern paths) or the plain
// message (v1 paths); HEAD answers have no body.
func writeFailure(w http.ResponseWriter, r *http.Request, gen apiGen, err error) int {
	ae := answer(err, "")
	hdr := w.Header()
	hdr.Set("x-ms-error-code", ae.Code)
	if ae.Status == http.StatusUnauthorized {
		hdr.Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="`+ae.Message+`"`)
	}
	switch {
	case r.Method == http.MethodHead:
		w.WriteHeader(ae.Status)
	case gen == genV1:
		writeBody(w, ae.Status, "text/plain; charset=utf-8", []byte(ae.Message))
	default:
		d := errorDetail{Code: ae.Code, Message: ae.Message}
		if ae.Target != "" {
			d.Target = &ae.Target
		}
		if sp := ae.Stream; sp != nil {
			d.Epoch, d.Offset, d.Oldest = &sp.Epoch, &sp.Offset, &sp.Oldest
		}
		b, _ := json.Marshal(d) // strings and nils only: cannot fail
		writeBody(w, ae.Status, contentJSON, b)
	}
	return ae.Status
}

const contentJSON = "application/json; charset=utf-8"

// writeBody answers status with body of type contentType. A failed write means the client
// is gone; there is nobody left to tell.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// unauthorized is the 401 for a token that failed with err. The description goes into a
// quoted header parameter, so it holds no quote nor backslash.
func unauthorized(err error) *apiError {
	why := "the bearer token is malformed"
	switch {
	case errors.Is(err, auth.ErrTokenMissing):
		why = "a bearer token is required"
	case errors.Is(err, auth.ErrTokenExpired):
		why = "the token is expired or not yet valid"
	case errors.Is(err, auth.ErrTokenSignature):
		why = "the token signature is invalid"
	case errors.Is(err, auth.ErrTokenAudience):
		why = "the token audience does not match the request path"
	case errors.Is(err, auth.ErrTokenAlgorithm):
		why = "the token algorithm is not allowed"
	}
	return &apiError{Status: http.StatusUnauthorized, Code: codeUnauthorized, Message: why, Cause: err}
}
