package signalr

import (
	"bytes"
	"context"
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

// localConn returns the conn of the path on this node, with its hub protocol.
func (c *call) localConn() (*core.Conn, hubproto.Protocol, error) {
	conn, err := c.hub.Conn(c.p.Conn)
	if err != nil {
		return nil, nil, answer(err, c.p.Conn)
	}
	proto, ok := hubproto.Lookup(conn.Protocol())
	if !ok {
		return nil, nil, badRequest("connectionId", "Connection '%s' does not speak a SignalR hub protocol.", excerpt.Of(c.p.Conn))
	}
	return conn, proto, nil
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
	conn, proto, err := c.localConn()
	if err != nil {
		return err
	}
	id, answerCh, cancel, err := conn.AwaitResult()
	if err != nil {
		return answer(err, c.p.Conn)
	}
	defer cancel()
	frame, err := proto.AppendInvocation(nil, hubproto.WithInvocationID(p.Invocation, id))
	if err != nil { // ParsePayload made it: cannot fail for a valid payload
		return fmt.Errorf("signalr: encode invocation: %w", err)
	}
	ctx, stop := context.WithTimeout(c.r.Context(), h.invokeTimeout)
	defer stop()
	conn.Deliver(&core.Message{Type: core.Framed, Data: frame})

	var res core.ClientResult
	var open bool
	select {
	case res, open = <-answerCh:
	case <-ctx.Done():
		if c.r.Context().Err() != nil {
			return answer(c.r.Context().Err(), "") // the caller is gone; nobody reads this
		}
		return fail(http.StatusInternalServerError, codeInvocationTimeout, "",
			"Connection '%s' did not answer the invocation within %s.", excerpt.Of(c.p.Conn), h.invokeTimeout)
	}
	switch {
	case !open:
		return fail(http.StatusInternalServerError, codeInvocationGone, "",
			"Connection '%s' closed before it answered the invocation.", excerpt.Of(c.p.Conn))
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
	conn, proto, err := c.localConn()
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
	conn.Deliver(&core.Message{Type: core.Framed, Data: frames})
	return nil
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
	conn, proto, err := c.localConn()
	if err != nil {
		return err
	}
	conn.Deliver(&core.Message{Type: core.Framed, Data: proto.AppendCompletion(nil, id, reason)})
	return nil
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
