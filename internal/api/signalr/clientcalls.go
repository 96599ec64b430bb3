package signalr

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/hubproto"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// The 2024-12-01 calls to one connection (spec §7.7): :invoke, which sends the client an
// Invocation with an id and answers with the client's Completion, and the server-to-client
// streams. Both build the frame in the conn's own protocol here (hubproto; the conn's
// Protocol() names it) and queue it with Conn.Deliver as core.Framed data, so this package
// needs nothing from the dialect; the dialect hands the client's Completion back through
// core.Conn.ResolveResult.

// DefaultInvokeTimeout is how long :invoke waits for the client's answer when
// Config.InvokeTimeout is 0.
const DefaultInvokeTimeout = 30 * time.Second

// Error codes of :invoke failures (Switchboard's; the service documents none). All three are
// 500: the client may have run its handler, and the SDK retries message APIs only above 500
// (spec §7.3: the runtime answers timeouts with 500 for that reason).
const (
	codeInvocationFailed  = "Error.Invocation.Failed"
	codeInvocationTimeout = "Error.Invocation.Timeout"
	codeInvocationGone    = "Error.Invocation.ConnectionClosed"
)

// maxStreamID is the longest stream id the swagger allows.
const maxStreamID = 100

// connProtocol returns the hub protocol of the path's conn, wherever it is held.
func (c *call) connProtocol() (hubproto.Protocol, error) {
	name, err := c.hub.ConnProtocol(c.r.Context(), c.p.Conn)
	if err != nil {
		return nil, answer(err, c.p.Conn)
	}
	proto, ok := hubproto.Lookup(name)
	if !ok {
		return nil, badRequest("connectionId", "Connection '%s' does not speak a SignalR hub protocol.", excerpt.Of(c.p.Conn))
	}
	return proto, nil
}

// deliver queues frames to the path's conn, wherever it is held.
func (c *call) deliver(frames []byte) error {
	if err := c.hub.DeliverFramed(c.r.Context(), c.p.Conn, frames); err != nil {
		return answer(err, c.p.Conn)
	}
	return nil
}

// jsonBody reads a body that must be JSON: Content-Type absent or JSON.
func (c *call) jsonBody(max int64, what string) ([]byte, error) {
	if ct := strings.TrimSpace(c.r.Header.Get("Content-Type")); ct != "" {
		mt, _, _ := strings.Cut(strings.ToLower(ct), ";")
		mt = strings.TrimSpace(mt)
		if mt != "application/json" && mt != "text/json" && !strings.HasSuffix(mt, "+json") {
			return nil, fail(http.StatusUnsupportedMediaType, codeUnsupportedMedia, "Content-Type",
				"%s takes application/json, not %s.", what, excerpt.Quote(mt))
		}
	}
	return c.body(max)
}

// invoke sends the connection an Invocation with a new invocation id and answers 200
// {"result":…,"protocol":…} with the client's Completion (result omitted for a void one). The
// client's error, the connection's end and the deadline (the request's, or
// Config.InvokeTimeout) are 500s with their own x-ms-error-code.
func (h *handler) invoke(c *call) error {
	body, err := c.jsonBody(h.maxBody, "The :invoke operation")
	if err != nil {
		return err
	}
	if len(trimJSONSpace(body)) == 0 {
		return badRequest("body", msgBodyRequired)
	}
	p, err := hubproto.ParsePayload("application/json", body)
	if err != nil {
		return badRequest("body", "%s", excerpt.Error(err))
	}
	proto, err := c.connProtocol()
	if err != nil {
		return err
	}
	id := c.hub.InvocationID()
	frame, err := proto.AppendInvocation(nil, hubproto.WithInvocationID(p.Invocation, id))
	if err != nil { // ParsePayload made it: cannot fail for a valid payload
		return fmt.Errorf("signalr: encode invocation: %w", err)
	}
	// The wait is the request's own deadline if sooner, and InvokeTimeout at most.
	wait := h.invokeTimeout
	if dl, ok := c.r.Context().Deadline(); ok {
		wait = min(wait, time.Until(dl))
	}
	res, err := c.hub.Invoke(c.r.Context(), c.p.Conn, id, frame, wait)
	switch {
	case c.r.Context().Err() != nil:
		return answer(c.r.Context().Err(), "") // the caller is gone; nobody reads this
	case errors.Is(err, core.ErrInvocationTimeout):
		return fail(http.StatusInternalServerError, codeInvocationTimeout, "",
			"Connection '%s' did not answer the invocation within %s.", excerpt.Of(c.p.Conn), wait.Round(time.Millisecond))
	case err != nil:
		return answer(err, c.p.Conn)
	case res.Error != "":
		return fail(http.StatusInternalServerError, codeInvocationFailed, "",
			"The client failed the invocation: %s", excerpt.Cut(res.Error, 0, excerpt.MaxError))
	}
	out := append(make([]byte, 0, 48+len(res.Result)), '{')
	if res.HasResult {
		out = append(out, `"result":`...)
		if out, err = proto.ResultJSON(out, res.Result); err != nil {
			return fail(http.StatusInternalServerError, codeInvocationFailed, "",
				"The client's result cannot be read: %s", excerpt.Error(err))
		}
		out = append(out, ',')
	}
	out = append(out, `"protocol":"`...)
	out = append(out, proto.Name()...)
	out = append(out, `"}`...)
	c.status = http.StatusOK
	writeBody(c.w, c.status, contentJSON, out)
	return nil
}

// streamID validates the {stream} path variable (swagger: 1 to 100 characters, not all
// white space).
func (c *call) streamID() (string, error) {
	id := c.p.Stream
	if id == "" || len(id) > maxStreamID || strings.TrimFunc(id, unicode.IsSpace) == "" {
		return "", badRequest("streamId", "Invalid stream id: it must have 1 to %d characters, not all white space.", maxStreamID)
	}
	return id, nil
}

// streamSend sends the body, one JSON value, to the connection as a StreamItem of the stream;
// with completed=true a void Completion ends the stream after it (an empty body then sends
// only the Completion).
func (h *handler) streamSend(c *call) error {
	id, err := c.streamID()
	if err != nil {
		return err
	}
	completed, err := c.boolean("completed")
	if err != nil {
		return err
	}
	item, err := c.jsonBody(h.maxBody, "Sending to a stream")
	if err != nil {
		return err
	}
	item = trimJSONSpace(item)
	if len(item) == 0 && !completed {
		return badRequest("body", "The stream item in the request body is required.")
	}
	proto, err := c.connProtocol()
	if err != nil {
		return err
	}
	var frames []byte
	if len(item) > 0 {
		if frames, err = proto.AppendStreamItem(nil, id, item); err != nil {
			return badRequest("body", "The stream item in the request body is not valid JSON.")
		}
	}
	if completed {
		frames = proto.AppendCompletion(frames, id, "")
	}
	return c.deliver(frames)
}

// streamComplete ends the stream with a Completion: with the reason (swagger) or error (the
// Management SDK's parameter) as its error, else void.
func (h *handler) streamComplete(c *call) error {
	id, err := c.streamID()
	if err != nil {
		return err
	}
	reason := c.query.Get("reason")
	if reason == "" {
		reason = c.query.Get("error")
	}
	proto, err := c.connProtocol()
	if err != nil {
		return err
	}
	return c.deliver(proto.AppendCompletion(nil, id, reason))
}

// boolean parses an optional true/false parameter (any case); absent is false.
func (c *call) boolean(name string) (bool, error) {
	v := strings.TrimSpace(c.query.Get(name))
	switch {
	case v == "", strings.EqualFold(v, "false"):
		return false, nil
	case strings.EqualFold(v, "true"):
		return true, nil
	}
	return false, badRequest(name, "Invalid %s %s: it must be true or false.", name, excerpt.Quote(v))
}

func trimJSONSpace(b []byte) []byte { return bytes.TrimSpace(b) }
