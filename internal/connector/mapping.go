package connector

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/switchboardhq/switchboard/internal/api/durable"
	"github.com/switchboardhq/switchboard/internal/connector/template"
	"github.com/switchboardhq/switchboard/internal/core"
	"github.com/switchboardhq/switchboard/internal/excerpt"
	"github.com/switchboardhq/switchboard/internal/hubproto"
	"github.com/switchboardhq/switchboard/internal/jsonstring"
	"github.com/switchboardhq/switchboard/internal/odata"
)

// Record headers a producer can set; each wins over the connector's configuration.
const (
	HeaderHub            = "switchboard-hub"             // hub
	HeaderGroup          = "switchboard-group"           // target: a group
	HeaderUser           = "switchboard-user"            // target: a user
	HeaderConnection     = "switchboard-connection"      // target: a connection
	HeaderAll            = "switchboard-all"             // target: the whole hub ("true")
	HeaderContentType    = "content-type"                // application/json, text/plain, application/octet-stream
	HeaderIdempotencyKey = "switchboard-idempotency-key" // replaces the key template
	HeaderExcluded       = "switchboard-excluded"        // comma-separated connection ids left out
	HeaderFilter         = "switchboard-filter"          // OData filter, as the REST filter parameter
)

// Header is one record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is one event read from a source.
type Record struct {
	// Topic, Partition and Offset place the record in its source (for an outbox: the table,
	// the partition and the row id). They fill {topic}, {partition} and {offset}.
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Coordinates returns "topic/partition/offset", the record's place for logs.
func (r *Record) Coordinates() string {
	return r.Topic + "/" + strconv.FormatInt(int64(r.Partition), 10) + "/" + strconv.FormatInt(r.Offset, 10)
}

// header returns the value of the last header named name (case-insensitive).
func (r *Record) header(name string) (string, bool) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if strings.EqualFold(r.Headers[i].Key, name) {
			return string(r.Headers[i].Value), true
		}
	}
	return "", false
}

// Config is a connector's mapping: templates (see package template) of the hub and of one
// target, and what every send carries unless a header says otherwise.
type Config struct {
	Hub        string // template
	Group      string // template; at most one of Group, User, Connection, All
	User       string // template
	Connection string // template
	All        bool
	// ContentType of records without a content-type header; "": application/json.
	ContentType string
	// IdempotencyKey is a template; "": {topic}/{partition}/{offset}.
	IdempotencyKey string
	Excluded       []string
	Filter         string // OData
	// Invocation, when set, makes each record a SignalR invocation of the hub method it names
	// (a template) with the record's value as its one argument: the body of a SignalR REST
	// send, {"target": …, "arguments": [value]}. Empty: the value is the message (Web PubSub).
	Invocation string
}

// DefaultIdempotencyKey is the key of a record when the configuration names none: a record
// redelivered by its source (after a crash or a rebalance) has the same one.
const DefaultIdempotencyKey = "{topic}/{partition}/{offset}"

// Mapping places records. It is safe for concurrent use.
type Mapping struct {
	hub, target, key *template.Template
	kind             core.TargetKind
	all              bool
	contentType      string
	dataType         core.DataType // contentType's, parsed once
	excluded         []string
	filter           *odata.Filter
	invocation       *template.Template // nil: Web PubSub messages
	ownKey           bool               // the key template names the record's place (Send.OwnKey)
}

// NewMapping compiles c.
func NewMapping(c Config) (*Mapping, error) {
	m := &Mapping{all: c.All, excluded: c.Excluded, contentType: c.ContentType}
	if m.contentType == "" {
		m.contentType = "application/json"
	}
	var err error
	if m.dataType, err = dataType(m.contentType); err != nil {
		return nil, fmt.Errorf("connector: content type: %w", err)
	}
	if m.hub, err = template.Parse(c.Hub); err != nil {
		return nil, fmt.Errorf("connector: hub: %w", err)
	}
	n := 0
	for _, t := range []struct {
		s    string
		kind core.TargetKind
	}{{c.Group, core.ToGroup}, {c.User, core.ToUser}, {c.Connection, core.ToConn}} {
		if t.s == "" {
			continue
		}
		n++
		m.kind = t.kind
		if m.target, err = template.Parse(t.s); err != nil {
			return nil, fmt.Errorf("connector: %s: %w", t.kind, err)
		}
	}
	if c.All {
		n++
		m.kind = core.ToAll
	}
	if n > 1 {
		return nil, errors.New("connector: group, user, connection and all are alternatives")
	}
	key := c.IdempotencyKey
	if key == "" {
		key = DefaultIdempotencyKey
	}
	if m.key, err = template.Parse(key); err != nil {
		return nil, fmt.Errorf("connector: idempotency key: %w", err)
	}
	names := map[string]bool{}
	for _, p := range m.key.Parts() {
		names[p.Name] = true
	}
	m.ownKey = names[template.Topic] && names[template.Partition] && names[template.Offset]
	if strings.TrimSpace(c.Filter) != "" {
		if m.filter, err = odata.Parse(c.Filter); err != nil {
			return nil, fmt.Errorf("connector: filter: %w", err)
		}
	}
	if c.Invocation != "" {
		if m.invocation, err = template.Parse(c.Invocation); err != nil {
			return nil, fmt.Errorf("connector: invocation target: %w", err)
		}
		if c.Filter != "" {
			return nil, errors.New("connector: filter is not available for SignalR hubs")
		}
	}
	return m, nil
}

// Send is where one record goes: what a REST :send with an Idempotency-Key says.
type Send struct {
	Hub     string
	Target  core.Target
	Message Payload
	Key     string // Idempotency-Key
	// OwnKey: the key names the record's place in its source (the key template has {topic},
	// {partition} and {offset}; no header set it), so no other record has it: sends with such
	// keys can be in flight together without one waiting for another's key.
	OwnKey bool
}

// Payload is what a send carries: the fields of a core.Message a mapping fills. Each send
// makes its own core.Message from it (the send writes its offset and key into that one), so a
// retry starts from the mapping's again, and a record does not carry a whole core.Message
// from its placement to its send.
type Payload struct {
	Type  core.DataType
	Data  []byte
	From  core.Origin
	Group string // for core.FromGroup
}

// message makes the core.Message of one send of p.
func (p Payload) message() *core.Message {
	return &core.Message{Type: p.Type, Data: p.Data, From: p.From, Group: p.Group}
}

// TargetKey identifies the send's destination (hub, target kind and name): sends with the
// same key must keep their order, others need not.
func (s Send) TargetKey() string {
	return strings.ToLower(s.Hub) + "\x00" + s.Target.Kind.String() + "\x00" + s.Target.Name
}

// SameTarget reports whether s and o go to the same destination (TargetKey would be equal),
// without making either key.
func (s Send) SameTarget(o Send) bool {
	return s.Target.Kind == o.Target.Kind && s.Target.Name == o.Target.Name && strings.EqualFold(s.Hub, o.Hub)
}

// TargetHash is an FNV-1a hash of TargetKey, made without it: sends to one target have the
// same hash.
func (s Send) TargetHash() uint32 {
	h := uint32(2166136261)
	add := func(b byte) { h = (h ^ uint32(b)) * 16777619 }
	for i := 0; i < len(s.Hub); i++ {
		c := s.Hub[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		add(c)
	}
	add(0)
	k := s.Target.Kind.String()
	for i := 0; i < len(k); i++ {
		add(k[i])
	}
	add(0)
	for i := 0; i < len(s.Target.Name); i++ {
		add(s.Target.Name[i])
	}
	return h
}

// Reasons a record is poison (the values of the reason label of the poison metric).
const (
	ReasonHub         = "hub"          // no hub, or an invalid hub name
	ReasonTarget      = "target"       // no target, several, or an invalid name
	ReasonTemplate    = "template"     // a placeholder could not be filled (missing field, bad JSON value, key not UTF-8)
	ReasonContentType = "content_type" // an unknown content type
	ReasonData        = "data"         // the value is not what its content type says (not JSON, not UTF-8)
	ReasonHeader      = "header"       // a switchboard-* header that does not parse (filter, key)
	ReasonRefused     = "refused"      // the send was refused for good (a key reused for another record)
)

// Poison is the error of a record that cannot be sent as it is.
type Poison struct {
	Reason string // one of the Reason constants
	Err    error
}

func (p *Poison) Error() string { return "poison record (" + p.Reason + "): " + p.Err.Error() }
func (p *Poison) Unwrap() error { return p.Err }

func poison(reason, format string, args ...any) *Poison {
	return &Poison{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// Map places r. The error is a *Poison.
func (m *Mapping) Map(r *Record) (Send, error) {
	v := values{r: r}
	var s Send
	hub, ok := r.header(HeaderHub)
	if !ok {
		var err error
		if hub, err = m.hub.Execute(v.lookup); err != nil {
			return Send{}, &Poison{Reason: ReasonTemplate, Err: fmt.Errorf("hub: %w", err)}
		}
	}
	if hub == "" {
		return Send{}, poison(ReasonHub, "no hub: the record has no %s header and the connector no hub", HeaderHub)
	}
	if !core.ValidHubName(hub) {
		return Send{}, poison(ReasonHub, "invalid hub name %q", excerpt.Of(hub))
	}
	s.Hub = hub
	t, err := m.placeTarget(r, &v)
	if err != nil {
		return Send{}, err
	}
	typ := m.dataType
	if h, ok := r.header(HeaderContentType); ok {
		if typ, err = dataType(h); err != nil {
			return Send{}, &Poison{Reason: ReasonContentType, Err: err}
		}
	}
	msg, err := message(typ, r.Value)
	if err != nil {
		return Send{}, err
	}
	if m.invocation != nil {
		if msg, err = m.invoke(msg, &v); err != nil {
			return Send{}, err
		}
	}
	if t.Kind == core.ToGroup {
		msg.From, msg.Group = core.FromGroup, t.Name
	} else {
		msg.From = core.FromServer
	}
	s.Target, s.Message = t, msg
	key, ok := r.header(HeaderIdempotencyKey)
	s.OwnKey = !ok && m.ownKey
	if !ok {
		if key, err = m.key.Execute(v.lookup); err != nil {
			return Send{}, &Poison{Reason: ReasonTemplate, Err: fmt.Errorf("idempotency key: %w", err)}
		}
		if len(key) > 255 { // a long topic name: keep the key within bounds, still one per record
			sum := sha256.Sum256([]byte(key))
			key = "sha256:" + hex.EncodeToString(sum[:])
		}
	}
	if key != "" && !durable.ValidKey(key) {
		return Send{}, poison(ReasonHeader, "invalid idempotency key %q: it must be 1 to 255 visible ASCII characters", excerpt.Of(key))
	}
	s.Key = key
	return s, nil
}

// invoke turns the value into a SignalR invocation of the method the invocation template
// names, as the SignalR REST API reads a send's body (hubproto.ParsePayload).
func (m *Mapping) invoke(msg Payload, v *values) (Payload, error) {
	method, err := m.invocation.Execute(v.lookup)
	if err != nil {
		return Payload{}, &Poison{Reason: ReasonTemplate, Err: fmt.Errorf("invocation target: %w", err)}
	}
	if method == "" {
		return Payload{}, poison(ReasonTarget, "empty SignalR invocation target")
	}
	var arg []byte
	switch msg.Type {
	case core.JSON:
		arg = msg.Data
	case core.Text:
		arg = jsonstring.Append(nil, string(msg.Data))
	default:
		return Payload{}, poison(ReasonContentType, "a SignalR invocation's argument is JSON or text, not application/octet-stream")
	}
	body := append(jsonstring.Append([]byte(`{"target":`), method), `,"arguments":[`...)
	body = append(append(body, arg...), "]}"...)
	p, err := hubproto.ParsePayload("application/json", body)
	if err != nil {
		return Payload{}, poison(ReasonData, "SignalR invocation: %v", err)
	}
	out := Payload{Type: core.JSON, Data: p.Invocation}
	if p.Variants != nil {
		out.Type, out.Data = core.Binary, p.Variants
	}
	return out, nil
}

// placeTarget returns the record's target: its switchboard-* target header, else the
// configuration's.
func (m *Mapping) placeTarget(r *Record, v *values) (core.Target, error) {
	var t core.Target
	n := 0
	for _, h := range []struct {
		name string
		kind core.TargetKind
	}{{HeaderGroup, core.ToGroup}, {HeaderUser, core.ToUser}, {HeaderConnection, core.ToConn}, {HeaderAll, core.ToAll}} {
		val, ok := r.header(h.name)
		if !ok {
			continue
		}
		if h.kind == core.ToAll {
			all, err := strconv.ParseBool(val)
			if err != nil {
				return t, poison(ReasonTarget, "%s header %q is not true or false", HeaderAll, excerpt.Of(val))
			}
			if !all {
				continue
			}
		}
		n++
		t.Kind, t.Name = h.kind, val
	}
	switch {
	case n > 1:
		return t, poison(ReasonTarget, "the record names several targets (%s, %s, %s, %s: set one)", HeaderGroup, HeaderUser, HeaderConnection, HeaderAll)
	case n == 0 && m.target == nil && !m.all:
		return t, poison(ReasonTarget, "no target: the record has no %s, %s, %s or %s header and the connector no group, user, connection or all", HeaderGroup, HeaderUser, HeaderConnection, HeaderAll)
	case n == 0:
		t.Kind = m.kind
		if m.target != nil {
			name, err := m.target.Execute(v.lookup)
			if err != nil {
				return t, &Poison{Reason: ReasonTemplate, Err: fmt.Errorf("%s: %w", t.Kind, err)}
			}
			t.Name = name
		}
	}
	switch {
	case t.Kind == core.ToGroup && !core.ValidGroupName(t.Name):
		return t, poison(ReasonTarget, "invalid group name %q: 1 to 1024 characters, not only spaces", excerpt.Of(t.Name))
	case (t.Kind == core.ToUser || t.Kind == core.ToConn) && t.Name == "":
		return t, poison(ReasonTarget, "empty %s", t.Kind)
	}
	t.Excluded = m.excluded
	if h, ok := r.header(HeaderExcluded); ok {
		t.Excluded = nil
		for _, id := range strings.Split(h, ",") {
			if id = strings.TrimSpace(id); id != "" {
				t.Excluded = append(t.Excluded, id)
			}
		}
	}
	t.Filter = m.filter
	if h, ok := r.header(HeaderFilter); ok {
		if m.invocation != nil && strings.TrimSpace(h) != "" {
			return t, poison(ReasonHeader, "%s header: filters are not available for SignalR hubs", HeaderFilter)
		}
		t.Filter = nil
		if strings.TrimSpace(h) != "" {
			f, err := odata.Parse(h)
			if err != nil {
				return t, &Poison{Reason: ReasonHeader, Err: fmt.Errorf("%s header: %w", HeaderFilter, err)}
			}
			t.Filter = f
		}
	}
	return t, nil
}

// dataType maps a content type to a message's data type, as the REST :send does.
func dataType(ct string) (core.DataType, error) {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil && !(errors.Is(err, mime.ErrInvalidMediaParameter) && mt != "") {
		return 0, fmt.Errorf("content type %q does not parse", excerpt.Of(ct))
	}
	switch mt {
	case "application/json":
		return core.JSON, nil
	case "text/plain":
		return core.Text, nil
	case "application/octet-stream":
		return core.Binary, nil
	}
	return 0, fmt.Errorf("content type %q is not application/json, text/plain or application/octet-stream", excerpt.Of(ct))
}

// message validates the value as the REST :send validates a body: JSON is compacted, an
// empty JSON value is empty text, text is UTF-8.
func message(typ core.DataType, value []byte) (Payload, error) {
	switch {
	case typ == core.JSON && len(value) == 0:
		typ = core.Text
	case typ == core.JSON:
		if !utf8.Valid(value) {
			return Payload{}, poison(ReasonData, "the JSON value is not valid UTF-8")
		}
		var buf bytes.Buffer
		buf.Grow(len(value))
		if err := json.Compact(&buf, value); err != nil {
			return Payload{}, poison(ReasonData, "the value is not valid JSON: %v", err)
		}
		value = buf.Bytes()
	case typ == core.Text && !utf8.Valid(value):
		return Payload{}, poison(ReasonData, "the text/plain value is not valid UTF-8")
	default:
		value = bytes.Clone(value)
	}
	return Payload{Type: typ, Data: value}, nil
}

// values fills placeholders from a record; its value is decoded once, when first needed.
type values struct {
	r       *Record
	decoded bool
	doc     any
	err     error
}

func (v *values) lookup(p template.Part) (string, error) {
	switch p.Name {
	case template.Key:
		if !utf8.Valid(v.r.Key) {
			return "", errors.New("{key}: the record's key is not UTF-8 text")
		}
		if len(v.r.Key) == 0 {
			return "", errors.New("{key}: the record has no key")
		}
		return string(v.r.Key), nil
	case template.Topic:
		return v.r.Topic, nil
	case template.Partition:
		return strconv.FormatInt(int64(v.r.Partition), 10), nil
	case template.Offset:
		return strconv.FormatInt(v.r.Offset, 10), nil
	case template.Value:
		return v.field(p.Path)
	}
	return "", fmt.Errorf("unknown placeholder {%s}", p.Name)
}

func (v *values) field(path []string) (string, error) {
	if !v.decoded {
		v.decoded = true
		d := json.NewDecoder(bytes.NewReader(v.r.Value))
		d.UseNumber()
		if err := d.Decode(&v.doc); err != nil {
			v.err = fmt.Errorf("the value is not JSON: %v", err)
		}
	}
	if v.err != nil {
		return "", v.err
	}
	cur := v.doc
	for _, seg := range path {
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[seg]
			if !ok {
				return "", fmt.Errorf("{value.%s}: the value has no field %q", strings.Join(path, "."), excerpt.Of(seg))
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return "", fmt.Errorf("{value.%s}: no element %q in an array of %d", strings.Join(path, "."), excerpt.Of(seg), len(c))
			}
			cur = c[i]
		default:
			return "", fmt.Errorf("{value.%s}: %q is not inside an object or array", strings.Join(path, "."), excerpt.Of(seg))
		}
	}
	switch c := cur.(type) {
	case string:
		return c, nil
	case json.Number:
		return c.String(), nil
	case bool:
		return strconv.FormatBool(c), nil
	}
	return "", fmt.Errorf("{value.%s}: the field is null, an object or an array, not a string, number or boolean", strings.Join(path, "."))
}
