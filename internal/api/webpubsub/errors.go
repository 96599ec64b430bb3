package webpubsub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/api/rest"
	"github.com/switchboardhq/switchboard/internal/auth"
	"github.com/switchboardhq/switchboard/internal/core"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// This file is the one place where errors become HTTP answers: the table from
// core errors to status, x-ms-error-code and body, the REST layer's own
// errors, the problem+json answer for a bad filter and the 401 reasons.

// Error codes of the x-ms-error-code header and the body's "code".
const (
	codeBadRequest         = rest.CodeBadRequest
	codeConnNotExisted     = "Error.Connection.NotExisted"
	codeConnNotExistedInfo = "Info.Connection.NotExisted"
	codeUserNotExisted     = "Error.User.NotExisted"
	codeForbidden          = "Error.Forbidden"
	codeUnsupportedMedia   = "Error.UnsupportedMediaType"
	codeUnavailable        = "Error.ServiceUnavailable"
	codeInternal           = rest.CodeInternal

	// HEAD checks answer 404 with one of these and no body.
	warnConnNotExisted  = "Warning.Connection.NotExisted"
	warnGroupNotExisted = "Warning.Group.NotExisted"
	warnUserNotExisted  = "Warning.User.NotExisted"
	warnPermNotExisted  = "Warning.Permission.NotExisted"
)

// Messages the service gives word for word (spec Appendix A).
const (
	msgInvalidGroup = "Invalid group name. Valid group name should be in between 1 and 1024 characters long."
	msgConnNotFound = "Connection `%s` is not found."
	msgInvalidHub   = "Invalid hub name. Valid hub name should start with a letter and contain only letters, digits and the characters _`,.[] (at most 128 characters)."
)

// apiError is an error answer: Status with body
// {"code","message","target","details":null,"innererror":null} and header
// x-ms-error-code: Code.
type apiError = rest.Error

// coreErrors maps every exported core error to its answer. Message is a
// format whose %s, when present, is the subject the handler passes (conn id,
// user id, group or hub name).
var coreErrors = [...]rule{
	{core.ErrInvalidHub, http.StatusBadRequest, codeBadRequest, "hub", msgInvalidHub},
	{core.ErrInvalidGroup, http.StatusBadRequest, codeBadRequest, "group", msgInvalidGroup},
	{core.ErrConnNotFound, http.StatusNotFound, codeConnNotExisted, "Connection", msgConnNotFound},
	{core.ErrUserNotFound, http.StatusNotFound, codeUserNotExisted, "User", "User `%s` is not found."},
	{core.ErrForbidden, http.StatusForbidden, codeForbidden, "", "Permission denied."},
	{core.ErrGroupLimit, http.StatusBadRequest, codeBadRequest, "group", "The connection is already in the maximum number of groups."},
	{core.ErrSlowConsumer, http.StatusServiceUnavailable, codeUnavailable, "", "The connection's outbound queue is full."},
	{core.ErrReplayOverflow, http.StatusServiceUnavailable, codeUnavailable, "", "The connection's unacknowledged message buffer is full."},
	{core.ErrNotRecoverable, http.StatusNotFound, codeConnNotExisted, "Connection", msgConnNotFound},
	{core.ErrNodeClosed, http.StatusServiceUnavailable, codeUnavailable, "", "The service is shutting down."},
	// The message names the cause: see durable.UnavailableMessage.
	{core.ErrHistoryUnavailable, http.StatusServiceUnavailable, durable.CodeHistoryUnavailable, "group", "History storage is unavailable."},
	{core.ErrHubLimit, http.StatusServiceUnavailable, codeUnavailable, "hub", "The server holds too many hubs (limits.max_hubs); try again later."},
	{core.ErrHubReclaimed, http.StatusServiceUnavailable, codeUnavailable, "hub", "The hub was reclaimed while idle; try again."},
	{core.ErrBrokerUnavailable, http.StatusServiceUnavailable, rest.CodeClusterUnavailable, "", rest.MsgClusterUnavailable},
	// Invocations of a client (SignalR's :invoke; no Web PubSub REST call waits for a client yet).
	{core.ErrInvocationTimeout, http.StatusGatewayTimeout, "Error.Invocation.Timeout", "", "The client did not answer the invocation in time."},
	{core.ErrInvocationClosed, http.StatusNotFound, codeConnNotExisted, "Connection", "Connection `%s` closed before it answered the invocation."},
	{core.ErrInvocationID, http.StatusConflict, "Error.Conflict", "", "The invocation id is in use on connection `%s`."},
	// Not core's, but they come back through core calls: the request's
	// context ended (client gone or server shutting down).
	{context.Canceled, http.StatusServiceUnavailable, codeUnavailable, "", "The request was canceled."},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, codeUnavailable, "", "The request timed out."},
}

// fromCore turns an error of a core call into its answer; subject fills the
// message's %s. Errors not in the table are 500.
func fromCore(err error, subject string) *apiError { return rest.Resolve(coreErrors[:], err, subject) }

// rule is a row of coreErrors.
type rule rest.Rule

// badRequest is a 400 Error.BadRequest about the parameter target.
var badRequest = rest.BadRequest

// errInvalidGroup is the answer to an invalid group name in parameter target.
func errInvalidGroup(target string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: codeBadRequest, Target: target, Message: msgInvalidGroup}
}

// errPermissionConnNotFound is GrantPermission's answer for an unknown conn,
// which differs from the other operations' in its code.
func errPermissionConnNotFound(connID string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: codeConnNotExistedInfo, Target: "Connection",
		Message: fmt.Sprintf(msgConnNotFound, excerpt.Of(connID))}
}

func errInvalidPermission(p string) *apiError {
	return badRequest("permission", "Invalid permission `%s`. Valid permissions are 'joinLeaveGroup' and 'sendToGroup'.", excerpt.Of(p))
}

func errMediaType(ct string) *apiError {
	return &apiError{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMedia, Target: "Content-Type",
		Message: fmt.Sprintf("Content-Type %s is not supported; use text/plain, application/json or application/octet-stream.", excerpt.Quote(ct))}
}

// filterError is an invalid OData filter; it is answered with a
// validation problem (application/problem+json), as the service does.
type filterError struct {
	message string // the odata error plus " (Parameter 'filter')"
	cause   error
}

func (e *filterError) Error() string { return e.message }

func (e *filterError) Unwrap() error { return e.cause }

func newFilterError(err error) *filterError {
	return &filterError{message: err.Error() + " (Parameter 'filter')", cause: err}
}

// errorBody is the JSON body of an apiError.
type errorBody struct {
	Code       string `json:"code"`
	Message    string `json:"message"`
	Target     string `json:"target"`
	Details    any    `json:"details"`
	InnerError any    `json:"innererror"`
	// History errors only: the stream's epoch, last and oldest offsets.
	Epoch  *string `json:"epoch,omitempty"`
	Offset *uint64 `json:"offset,omitempty"`
	Oldest *uint64 `json:"oldest,omitempty"`
}

// problemBody is the validation problem the service answers for a bad
// filter: ASP.NET's ValidationProblemDetails plus the ErrorDetail fields.
type problemBody struct {
	Code       string              `json:"code"`
	Message    string              `json:"message"`
	Target     string              `json:"target"`
	Errors     map[string][]string `json:"errors"`
	Type       string              `json:"type"`
	Title      string              `json:"title"`
	Status     int                 `json:"status"`
	Detail     *string             `json:"detail"`
	Instance   *string             `json:"instance"`
	Extensions map[string]any      `json:"extensions"`
}

// writeError answers err; HEAD answers carry the header but no body. It
// returns the status written.
func writeError(w http.ResponseWriter, r *http.Request, err error) int {
	var fe *filterError
	if errors.As(err, &fe) {
		w.Header().Set("x-ms-error-code", codeBadRequest)
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusBadRequest)
			return http.StatusBadRequest
		}
		writeJSON(w, http.StatusBadRequest, "application/problem+json; charset=utf-8", problemBody{
			Code:       codeBadRequest,
			Message:    fe.message,
			Target:     "filter",
			Errors:     map[string][]string{"filter": {fe.message}},
			Type:       "https://tools.ietf.org/html/rfc9110#section-15.5.1",
			Title:      "One or more validation errors occurred.",
			Status:     http.StatusBadRequest,
			Extensions: map[string]any{},
		})
		return http.StatusBadRequest
	}
	ae := fromCore(err, "")
	w.Header().Set("x-ms-error-code", ae.Code)
	if r.Method == http.MethodHead {
		w.WriteHeader(ae.Status)
		return ae.Status
	}
	body := errorBody{Code: ae.Code, Message: ae.Message, Target: ae.Target}
	if sp := ae.Stream; sp != nil {
		body.Epoch, body.Offset, body.Oldest = &sp.Epoch, &sp.Offset, &sp.Oldest
	}
	writeJSON(w, ae.Status, "application/json; charset=utf-8", body)
	return ae.Status
}

// writeWarning answers a HEAD check that found nothing: 404, no body.
func writeWarning(w http.ResponseWriter, code string) {
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(http.StatusNotFound)
}

// writeJSON writes v as the body with status and content type ct.
func writeJSON(w http.ResponseWriter, status int, ct string, v any) {
	b, err := marshal(v)
	if err != nil {
		// Only our own fixed types are marshalled; this cannot happen.
		status, b = http.StatusInternalServerError, []byte(`{"code":"`+codeInternal+`","message":"encoding failed","target":"","details":null,"innererror":null}`)
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	w.Write(b)
}

func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// unauthorizedReason is the short plain-text body of a 401.
func unauthorizedReason(err error) string {
	switch {
	case errors.Is(err, auth.ErrTokenMissing):
		return "missing bearer token"
	case errors.Is(err, auth.ErrTokenExpired):
		return "token expired or not yet valid"
	case errors.Is(err, auth.ErrTokenSignature):
		return "token signature invalid"
	case errors.Is(err, auth.ErrTokenAudience):
		return "token audience does not match the request path"
	case errors.Is(err, auth.ErrTokenAlgorithm):
		return "token algorithm not allowed"
	default:
		return "token malformed"
	}
}

// writeUnauthorized answers a request whose token failed with 401.
func writeUnauthorized(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("WWW-Authenticate", "Bearer")
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	w.Write([]byte(unauthorizedReason(err) + "\n"))
}
