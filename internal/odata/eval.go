package odata

import (
	"strings"
	"unicode/utf8"
)

type kind uint8

const (
	kNull kind = iota
	kBool
	kInt
	kString
)

// value is the run-time value of a non-collection expression. It is passed
// by value so that evaluation does not allocate. Collections (only groups)
// are read directly where they are used: "in" and length.
type value struct {
	k kind
	b bool
	i int64
	s string
}

var (
	valTrue  = value{k: kBool, b: true}
	valFalse = value{k: kBool}
	valNull  = value{}
)

// equal compares two values whose types check allowed to be compared:
// equal kinds, or either null.
func equal(a, b value) bool {
	if a.k != b.k {
		return false
	}
	switch a.k {
	case kBool:
		return a.b == b.b
	case kInt:
		return a.i == b.i
	case kString:
		return a.s == b.s
	}
	return true // both null
}

// evalBool evaluates a node of type boolean.
func evalBool(n *node, s Subject) bool {
	switch n.op {
	case opAnd:
		return evalBool(n.l, s) && evalBool(n.r, s)
	case opOr:
		return evalBool(n.l, s) || evalBool(n.r, s)
	case opNot:
		return !evalBool(n.l, s)
	case opIn:
		return evalIn(n, s)
	case opEq:
		return equal(evalValue(n.l, s), evalValue(n.r, s))
	case opNe:
		return !equal(evalValue(n.l, s), evalValue(n.r, s))
	case opGt, opGe, opLt, opLe:
		a, b := evalValue(n.l, s), evalValue(n.r, s)
		if a.k != kInt || b.k != kInt {
			return false
		}
		switch n.op {
		case opGt:
			return a.i > b.i
		case opGe:
			return a.i >= b.i
		case opLt:
			return a.i < b.i
		}
		return a.i <= b.i
	case opLit:
		return n.val.b
	case opCall:
		return evalPredicate(n, s)
	}
	panic("odata: unexpected boolean node in checked filter")
}

// evalValue evaluates a node of any type but collection.
func evalValue(n *node, s Subject) value {
	switch n.op {
	case opLit:
		return n.val
	case opField:
		return evalField(n.field, s)
	case opCall:
		if n.typ != tBool {
			return evalCall(n, s)
		}
	}
	if n.typ == tBool {
		if evalBool(n, s) {
			return valTrue
		}
		return valFalse
	}
	panic("odata: unexpected node in checked filter")
}

func evalField(f field, s Subject) value {
	switch f {
	case fieldUserID:
		if id, ok := s.FilterUserID(); ok {
			return value{k: kString, s: id}
		}
		return valNull
	case fieldConnectionID:
		return value{k: kString, s: s.FilterConnectionID()}
	case fieldProtocol:
		if p := s.FilterProtocol(); p != "" {
			return value{k: kString, s: p}
		}
		return valNull
	}
	panic("odata: unexpected field")
}

func evalIn(n *node, s Subject) bool {
	v := evalValue(n.l, s)
	if n.r.op != opList {
		// The only collection, groups, which holds no nulls.
		if v.k != kString {
			return false
		}
		for _, g := range s.FilterGroups() {
			if g == v.s {
				return true
			}
		}
		return false
	}
	if v.k == kNull {
		return n.hasNull
	}
	if n.set != nil && v.k == kString {
		_, ok := n.set[v.s]
		return ok
	}
	for _, e := range n.r.list {
		if equal(v, e) {
			return true
		}
	}
	return false
}

// evalPredicate evaluates startswith, endswith and contains: false when an
// argument is null.
func evalPredicate(n *node, s Subject) bool {
	a, b := evalValue(n.args[0], s), evalValue(n.args[1], s)
	if a.k != kString || b.k != kString {
		return false
	}
	switch n.fn {
	case fnStartsWith:
		return strings.HasPrefix(a.s, b.s)
	case fnEndsWith:
		return strings.HasSuffix(a.s, b.s)
	case fnContains:
		return strings.Contains(a.s, b.s)
	}
	panic("odata: unexpected predicate")
}

// evalCall evaluates the functions that return a string or an integer: null
// when an argument is null.
func evalCall(n *node, s Subject) value {
	if n.fn == fnLength && n.args[0].typ == tColl {
		return value{k: kInt, i: int64(len(s.FilterGroups()))}
	}
	var args [3]value
	for i, a := range n.args {
		args[i] = evalValue(a, s)
		if args[i].k == kNull {
			return valNull
		}
	}
	a, b := args[0], args[1]
	switch n.fn {
	case fnToLower:
		return value{k: kString, s: strings.ToLower(a.s)}
	case fnToUpper:
		return value{k: kString, s: strings.ToUpper(a.s)}
	case fnTrim:
		return value{k: kString, s: strings.TrimSpace(a.s)}
	case fnSubstring:
		length := int64(-1)
		if len(n.args) == 3 {
			length = max(args[2].i, 0)
		}
		return value{k: kString, s: substring(a.s, b.i, length)}
	case fnConcat:
		return value{k: kString, s: a.s + b.s}
	case fnIndexOf:
		i := strings.Index(a.s, b.s)
		if i < 0 {
			return value{k: kInt, i: -1}
		}
		return value{k: kInt, i: int64(utf8.RuneCountInString(a.s[:i]))}
	case fnLength:
		return value{k: kInt, i: int64(utf8.RuneCountInString(a.s))}
	}
	panic("odata: unexpected function")
}

// substring returns the code points of s from index start, at most length
// of them (all of them if length is negative). A negative start counts as
// 0; a start past the end gives "".
func substring(s string, start, length int64) string {
	if start < 0 {
		start = 0
	}
	from := runeOffset(s, start)
	if length < 0 {
		return s[from:]
	}
	return s[from : from+runeOffset(s[from:], length)]
}

// runeOffset returns the byte offset of the n-th code point of s, or len(s).
func runeOffset(s string, n int64) int {
	off := 0
	for ; n > 0 && off < len(s); n-- {
		if s[off] < utf8.RuneSelf {
			off++
			continue
		}
		_, size := utf8.DecodeRuneInString(s[off:])
		off += size
	}
	return off
}
