package webpubsub

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/switchboardhq/switchboard/internal/core"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// request is one client frame of the JSON subprotocols.
type request struct {
	Type       string          `json:"type"`
	Group      string          `json:"group"`
	Event      string          `json:"event"`
	AckID      *uint64         `json:"ackId"`
	SequenceID *uint64         `json:"sequenceId"`
	NoEcho     bool            `json:"noEcho"`
	DataType   string          `json:"dataType"`
	Data       json.RawMessage `json:"data"`

	// invoke and cancelInvocation (newer clients).
	InvocationID string `json:"invocationId"`
	Target       string `json:"target"`

	// Group streams (newer clients): a sendToGroup's stream descriptor,
	// and streamData's and streamEnd's fields. They are read only by the
	// stream requests (stream.go), so that a stray field of another
	// request type is ignored as before.
	Stream           json.RawMessage `json:"stream"`
	StreamID         json.RawMessage `json:"streamId"`
	StreamSequenceID json.RawMessage `json:"streamSequenceId"`
	Error            json.RawMessage `json:"error"`

	// History: joinGroup and fetchHistory carry the client's last seen
	// offset (and its epoch); fetchHistory a page size.
	Offset *uint64 `json:"offset"`
	Epoch  string  `json:"epoch"`
	Limit  int     `json:"limit"`

	State json.RawMessage `json:"state"` // setGroupState

	// decoded is a protobuf request's payload, decoded with the request.
	decoded *decodedPayload
}

// errMalformed marks a frame that is not a JSON request at all.
var errMalformed = errors.New("webpubsub: malformed request")

// decodeRequest parses one text frame.
func decodeRequest(frame []byte) (*request, error) {
	var r request
	if err := json.Unmarshal(frame, &r); err != nil {
		return nil, fmt.Errorf("%w: %s", errMalformed, excerpt.Error(err))
	}
	if r.Type == "" {
		return nil, fmt.Errorf("%w: missing \"type\"", errMalformed)
	}
	return &r, nil
}

// payload decodes data per dataType into a message type and bytes.
func (r *request) payload() (core.DataType, []byte, error) {
	if d := r.decoded; d != nil {
		return d.typ, d.data, d.err
	}
	switch r.DataType {
	case "", "json":
		d := bytes.TrimSpace(r.Data)
		if len(d) == 0 || bytes.Equal(d, []byte("null")) {
			return 0, nil, errors.New("data is required for dataType json")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, d); err != nil {
			return 0, nil, fmt.Errorf("data is not valid JSON: %s", excerpt.Error(err))
		}
		return core.JSON, buf.Bytes(), nil
	case "text":
		var s string
		if err := json.Unmarshal(r.Data, &s); err != nil {
			return 0, nil, errors.New("data must be a string for dataType text")
		}
		return core.Text, []byte(s), nil
	case "binary", "protobuf":
		var s string
		if err := json.Unmarshal(r.Data, &s); err != nil {
			return 0, nil, fmt.Errorf("data must be a base64 string for dataType %s", excerpt.Quote(r.DataType))
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			if b2, err2 := base64.RawStdEncoding.DecodeString(s); err2 == nil {
				b, err = b2, nil
			}
		}
		if err != nil {
			return 0, nil, fmt.Errorf("data is not valid base64: %v", err)
		}
		if r.DataType == "protobuf" {
			return core.Protobuf, b, nil
		}
		return core.Binary, b, nil
	default:
		return 0, nil, fmt.Errorf("unknown dataType %s", excerpt.Quote(r.DataType))
	}
}

var eventName = regexp.MustCompile(`^(?i)[a-z][a-z0-9_.-]{0,127}$`)

// validEvent reports whether name is a valid user event name.
func validEvent(name string) bool { return eventName.MatchString(name) }
