package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ConnectRequest is what the connect event tells the handler.
type ConnectRequest struct {
	// Conn is the connection being accepted; its State is normally empty.
	Conn Conn
	// Claims are the client token's claims. Each value is sent as an array of strings:
	// a string as itself, a number (float64, json.Number, integer types) or bool in
	// decimal text, an array element-wise, anything else as JSON text.
	Claims map[string]any
	// Query is the upgrade request's query; access_token is left out.
	Query map[string][]string
	// Headers are the upgrade request's headers; Authorization is left out.
	Headers map[string][]string
	// Subprotocols are the subprotocols the client offered, in order.
	Subprotocols []string
	// ClientCertificates are the client's TLS certificates, if any.
	ClientCertificates []ClientCertificate
}

// ClientCertificate is one client TLS certificate.
type ClientCertificate struct {
	Thumbprint string `json:"thumbprint"` // hex SHA-1 of the DER bytes
	Content    string `json:"content"`    // PEM
}

// ConnectResponse is what the handler decided. Nil or empty fields leave the token's
// values in place.
type ConnectResponse struct {
	// UserID, when not nil, replaces the token's user id ("" makes the conn anonymous).
	UserID *string
	// Groups, when not nil, are the groups to join (an empty, non-nil slice came from
	// "groups": []).
	Groups []string
	// Roles, when not nil, replace the token's roles (empty and non-nil: no roles).
	Roles []string
	// Subprotocol, when not "", is the subprotocol to select; it is one the client offered.
	Subprotocol string
	// State, when not nil, is the new connection state ("" clears it).
	State *string
}

// connectBody is the connect event's request body.
type connectBody struct {
	Claims             map[string][]string `json:"claims"`
	Query              map[string][]string `json:"query"`
	Headers            map[string][]string `json:"headers"`
	Subprotocols       []string            `json:"subprotocols"`
	ClientCertificates []ClientCertificate `json:"clientCertificates"`
}

// Connect sends the connect event and waits for the handler's answer, bounded by ctx and
// the handler's timeout. It returns the handler's decision on a 2xx; ErrNoHandler when
// no handler takes connect (accept with the token's values); a *RejectError on 4xx/5xx
// (reject the handshake with its status); otherwise an error wrapping ErrUnavailable or
// ErrBadResponse (reject with a 5xx).
func (c *Client) Connect(ctx context.Context, req ConnectRequest) (*ConnectResponse, error) {
	if c.closing.Load() {
		return nil, ErrClosed
	}
	h, ok := c.systemHandler(req.Conn.Hub, EventConnect)
	if !ok {
		return nil, ErrNoHandler
	}
	body, err := json.Marshal(newConnectBody(&req))
	if err != nil {
		return nil, fmt.Errorf("upstream: connect: encode request: %w", err)
	}
	ev := c.newEvent(kindConnect, EventConnect, req.Conn, "application/json; charset=utf-8", body)
	r, err := c.send(ctx, &h, ev)
	if err != nil {
		return nil, err
	}
	if !r.ok() {
		return nil, rejection(kindConnect, r)
	}
	state, err := connectionState(r.header)
	if err != nil {
		return nil, fmt.Errorf("upstream: connect: %w", err)
	}
	resp, err := decodeConnectResponse(r.body)
	if err != nil {
		return nil, fmt.Errorf("upstream: connect: %w", err)
	}
	if resp.Subprotocol != "" && !slices.Contains(req.Subprotocols, resp.Subprotocol) {
		return nil, fmt.Errorf("upstream: connect: %w: subprotocol %q was not offered by the client",
			ErrBadResponse, resp.Subprotocol)
	}
	resp.State = state
	return resp, nil
}

// rejection turns a non-2xx reply into a *RejectError, or ErrBadResponse for a status
// that is neither 4xx nor 5xx.
func rejection(kind string, r *reply) error {
	if r.status < 400 || r.status > 599 {
		return fmt.Errorf("upstream: %s: %w: status %d", kind, ErrBadResponse, r.status)
	}
	return &RejectError{Status: r.status, Reason: reason(r.body)}
}

func newConnectBody(req *ConnectRequest) *connectBody {
	b := &connectBody{
		Claims:             make(map[string][]string, len(req.Claims)),
		Query:              make(map[string][]string, len(req.Query)),
		Headers:            make(map[string][]string, len(req.Headers)),
		Subprotocols:       req.Subprotocols,
		ClientCertificates: req.ClientCertificates,
	}
	for k, v := range req.Claims {
		b.Claims[k] = claimStrings(v)
	}
	for k, v := range req.Query {
		if k != "access_token" {
			b.Query[k] = nonNil(v)
		}
	}
	for k, v := range req.Headers {
		if !strings.EqualFold(k, "Authorization") {
			b.Headers[k] = nonNil(v)
		}
	}
	if b.Subprotocols == nil {
		b.Subprotocols = []string{}
	}
	if b.ClientCertificates == nil {
		b.ClientCertificates = []ClientCertificate{}
	}
	return b
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// claimStrings renders a claim value as the array of strings handlers expect.
func claimStrings(v any) []string {
	switch v := v.(type) {
	case []string:
		return nonNil(v)
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			out = append(out, claimString(e))
		}
		return out
	default:
		return []string{claimString(v)}
	}
}

func claimString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case float32:
		return strconv.FormatFloat(float64(v), 'f', -1, 32)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case bool:
		return strconv.FormatBool(v)
	case nil:
		return ""
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(b)
	}
}

// connectReply is the JSON body of a 2xx connect reply. Unknown fields are ignored.
type connectReply struct {
	UserID      *string  `json:"userId"`
	Groups      []string `json:"groups"`
	Roles       []string `json:"roles"`
	Subprotocol *string  `json:"subprotocol"`
}

// decodeConnectResponse decodes the body of a 2xx connect reply: empty or JSON null
// accepts as is; otherwise a JSON object with optional userId, groups, roles and
// subprotocol. Errors wrap ErrBadResponse.
func decodeConnectResponse(body []byte) (*ConnectResponse, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || string(body) == "null" {
		return &ConnectResponse{}, nil
	}
	if body[0] != '{' {
		return nil, fmt.Errorf("%w: body is not a JSON object", ErrBadResponse)
	}
	var r connectReply
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadResponse, err)
	}
	resp := &ConnectResponse{UserID: r.UserID, Groups: r.Groups, Roles: r.Roles}
	if r.Subprotocol != nil {
		resp.Subprotocol = strings.TrimSpace(*r.Subprotocol)
	}
	return resp, nil
}
