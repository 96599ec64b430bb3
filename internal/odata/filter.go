package odata

import "strconv"

// Subject is what a filter is evaluated against: a connection. It is
// implemented by the caller.
type Subject interface {
	// FilterUserID returns the user id; ok is false for an anonymous
	// connection, whose userId is null.
	FilterUserID() (id string, ok bool)
	// FilterConnectionID returns the connection id.
	FilterConnectionID() string
	// FilterGroups returns the groups the connection is in, for
	// "'g' in groups" and length(groups). The slice is only read.
	FilterGroups() []string
	// FilterProtocol returns the connection's subprotocol; "" means null.
	FilterProtocol() string
}

// Filter is a parsed, type-checked filter; safe for concurrent use by many
// goroutines.
type Filter struct {
	src  string
	root *node
}

// Parse parses and type-checks a filter. Errors are of type *SyntaxError.
//
// An empty filter is a syntax error; callers for which an omitted filter
// selects everything should check for that before calling Parse (a nil
// *Filter matches every subject).
func Parse(s string) (*Filter, error) {
	root, perr := parse(s)
	if perr != nil {
		return nil, &SyntaxError{Input: s, Pos: utf16Offset(s, perr.off), Detail: perr.detail, off: perr.off}
	}
	return &Filter{src: s, root: root}, nil
}

func parse(s string) (*node, *parseError) {
	if len(s) > MaxLength {
		return nil, errAt(MaxLength, "filter is too long: more than "+strconv.Itoa(MaxLength)+" bytes")
	}
	p := parser{lx: lexer{src: s}}
	root, err := p.parse()
	if err != nil {
		return nil, err
	}
	if err := checkFilter(root); err != nil {
		return nil, err
	}
	return root, nil
}

// Match reports whether the subject satisfies the filter. A nil *Filter
// matches every subject. Match does not allocate unless the filter calls a
// function that builds a new string (tolower, toupper, concat).
func (f *Filter) Match(s Subject) bool {
	if f == nil {
		return true
	}
	return evalBool(f.root, s)
}

// String returns the filter's original text.
func (f *Filter) String() string {
	if f == nil {
		return ""
	}
	return f.src
}
