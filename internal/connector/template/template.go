// Package template parses the templates of connector mappings: literal text with placeholders
// in braces ({key}, {topic}, {partition}, {offset}, {value.customerId}, {value.a.b}) that a
// connector fills from each record. It knows nothing of records: the caller looks the
// placeholders up.
package template

import (
	"errors"
	"fmt"
	"strings"
)

// Limits of a template.
const (
	MaxBytes = 1024 // longest template
	MaxDepth = 32   // most segments of a {value.…} path
)

// Names of the placeholders.
const (
	Key       = "key"       // the record's key, as UTF-8 text
	Topic     = "topic"     // the topic (Kafka) or table (outbox) the record came from
	Partition = "partition" // its partition
	Offset    = "offset"    // its offset (Kafka) or id (outbox)
	Value     = "value"     // a field of the record's JSON value: {value.a.b}
)

// Template is a parsed template. The zero value is an empty template.
type Template struct {
	parts []Part
	text  string
}

// Part is one piece of a template: a literal (Name "") or a placeholder.
type Part struct {
	Literal string
	Name    string   // "" for a literal; else Key, Topic, Partition, Offset or Value
	Path    []string // for Value: the field names (an array element is named by its index)
}

// Parse parses s. "{{" and "}}" stand for literal braces.
func Parse(s string) (*Template, error) {
	if len(s) > MaxBytes {
		return nil, fmt.Errorf("template is %d bytes long, more than %d", len(s), MaxBytes)
	}
	t := &Template{text: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.parts = append(t.parts, Part{Literal: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '{' && i+1 < len(s) && s[i+1] == '{':
			lit.WriteByte('{')
			i++
		case c == '}' && i+1 < len(s) && s[i+1] == '}':
			lit.WriteByte('}')
			i++
		case c == '}':
			return nil, fmt.Errorf("template %q: '}' at byte %d closes no placeholder (write }} for a literal brace)", s, i)
		case c == '{':
			end := strings.IndexByte(s[i+1:], '}')
			if end < 0 {
				return nil, fmt.Errorf("template %q: placeholder at byte %d is not closed", s, i)
			}
			p, err := parsePlaceholder(s[i+1 : i+1+end])
			if err != nil {
				return nil, fmt.Errorf("template %q: %w", s, err)
			}
			flush()
			t.parts = append(t.parts, p)
			i += end + 1
		default:
			lit.WriteByte(c)
		}
	}
	flush()
	return t, nil
}

func parsePlaceholder(name string) (Part, error) {
	switch name {
	case Key, Topic, Partition, Offset:
		return Part{Name: name}, nil
	case Value:
		return Part{}, errors.New("{value} needs a field: {value.name}")
	}
	path, ok := strings.CutPrefix(name, Value+".")
	if !ok {
		return Part{}, fmt.Errorf("unknown placeholder {%s}: want {key}, {topic}, {partition}, {offset} or {value.field}", name)
	}
	segs := strings.Split(path, ".")
	if len(segs) > MaxDepth {
		return Part{}, fmt.Errorf("placeholder {%s} has more than %d fields", name, MaxDepth)
	}
	for _, seg := range segs {
		if seg == "" || strings.ContainsAny(seg, "{") {
			return Part{}, fmt.Errorf("placeholder {%s} has an empty or invalid field name", name)
		}
	}
	return Part{Name: Value, Path: segs}, nil
}

// Parts returns the template's pieces in order.
func (t *Template) Parts() []Part { return t.parts }

// String returns the template's text.
func (t *Template) String() string { return t.text }

// Empty reports whether the template is empty.
func (t *Template) Empty() bool { return t == nil || len(t.parts) == 0 }

// UsesValue reports whether a placeholder reads the record's value.
func (t *Template) UsesValue() bool {
	for _, p := range t.Parts() {
		if p.Name == Value {
			return true
		}
	}
	return false
}

// Lookup returns the text of one placeholder of a record.
type Lookup func(p Part) (string, error)

// Execute fills the template's placeholders with lookup.
func (t *Template) Execute(lookup Lookup) (string, error) {
	if t == nil {
		return "", nil
	}
	if len(t.parts) == 1 {
		if t.parts[0].Name == "" {
			return t.parts[0].Literal, nil
		}
		return lookup(t.parts[0]) // a lone placeholder: its text as it is
	}
	var buf [128]byte // a connector fills a template per record: build short ones on the stack
	b := buf[:0]
	for _, p := range t.parts {
		if p.Name == "" {
			b = append(b, p.Literal...)
			continue
		}
		v, err := lookup(p)
		if err != nil {
			return "", err
		}
		b = append(b, v...)
	}
	return string(b), nil
}
