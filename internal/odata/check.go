package odata

import "strconv"

type fnID uint8

const (
	fnToLower fnID = iota
	fnToUpper
	fnTrim
	fnSubstring
	fnConcat
	fnIndexOf
	fnStartsWith
	fnEndsWith
	fnContains
	fnLength
)

// tStringOrColl is a parameter type only: a string or a collection.
const tStringOrColl typ = 255

var functions = [...]struct {
	name   string
	params []typ // the last minArgs..len(params) are optional
	min    int
	result typ
}{
	fnToLower:    {"tolower", []typ{tString}, 1, tString},
	fnToUpper:    {"toupper", []typ{tString}, 1, tString},
	fnTrim:       {"trim", []typ{tString}, 1, tString},
	fnSubstring:  {"substring", []typ{tString, tInt, tInt}, 2, tString},
	fnConcat:     {"concat", []typ{tString, tString}, 2, tString},
	fnIndexOf:    {"indexof", []typ{tString, tString}, 2, tInt},
	fnStartsWith: {"startswith", []typ{tString, tString}, 2, tBool},
	fnEndsWith:   {"endswith", []typ{tString, tString}, 2, tBool},
	fnContains:   {"contains", []typ{tString, tString}, 2, tBool},
	fnLength:     {"length", []typ{tStringOrColl}, 1, tInt},
}

// equalFoldASCII reports whether s and t are equal under ASCII case folding.
func equalFoldASCII(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

func accepts(param, t typ) bool {
	if param == tStringOrColl {
		return t == tString || t == tColl || t == tNull
	}
	return t == param || t == tNull
}

func describeParam(t typ) string {
	if t == tStringOrColl {
		return "a string or a collection"
	}
	if t == tInt {
		return "an integer"
	}
	return "a " + t.String()
}

func ordinal(i int) string {
	switch i {
	case 0:
		return "first"
	case 1:
		return "second"
	case 2:
		return "third"
	}
	return "argument " + strconv.Itoa(i+1)
}

// checkFilter resolves names and checks the types of a whole filter.
func checkFilter(root *node) *parseError {
	if err := check(root); err != nil {
		return err
	}
	if root.typ != tBool {
		return errAt(root.start, "the filter must be a boolean expression but is "+describeType(root.typ))
	}
	return nil
}

func describeType(t typ) string {
	switch t {
	case tNull:
		return "null"
	case tInt:
		return "an integer"
	}
	return "a " + t.String()
}

// check resolves names and sets n.typ for n and its descendants.
func check(n *node) *parseError {
	switch n.op {
	case opLit:
		n.typ = litType(n.val)
		return nil

	case opName:
		for f, d := range fields {
			if equalFoldASCII(n.name, d.name) {
				n.op, n.field, n.typ = opField, field(f), d.typ
				return nil
			}
		}
		return errAt(n.start, "unknown property '"+n.name+"'; the properties are userId, connectionId, groups and protocol")

	case opCall:
		return checkCall(n)

	case opList:
		// Only reachable as the right side of "in", which checks it.
		return errAt(n.start, "a parenthesised list may only follow 'in'")

	case opNot:
		if err := check(n.l); err != nil {
			return err
		}
		if n.l.typ != tBool {
			return errAt(n.l.start, "'not' needs a boolean operand but got "+describeType(n.l.typ)+"; put the comparison in parentheses, e.g. not (length(userId) gt 5)")
		}
		n.typ = tBool
		return nil

	case opAnd, opOr:
		if err := checkBoth(n); err != nil {
			return err
		}
		for _, side := range [2]*node{n.l, n.r} {
			if side.typ != tBool {
				return errAt(side.start, "'"+n.name+"' needs boolean operands but got "+describeType(side.typ))
			}
		}
		n.typ = tBool
		return nil

	case opEq, opNe:
		if err := checkBoth(n); err != nil {
			return err
		}
		lt, rt := n.l.typ, n.r.typ
		if lt == tColl || rt == tColl {
			return errAt(n.at, "a collection cannot be compared with '"+n.name+"'; use 'value' in groups")
		}
		if lt != rt && lt != tNull && rt != tNull {
			return errAt(n.at, "cannot compare "+describeType(lt)+" with "+describeType(rt)+" using '"+n.name+"'")
		}
		n.typ = tBool
		return nil

	case opGt, opGe, opLt, opLe:
		if err := checkBoth(n); err != nil {
			return err
		}
		for _, side := range [2]*node{n.l, n.r} {
			if side.typ != tInt && side.typ != tNull {
				return errAt(n.at, "'"+n.name+"' compares integers only but got "+describeType(side.typ))
			}
		}
		n.typ = tBool
		return nil

	case opIn:
		return checkIn(n)
	}
	return errAt(n.start, "internal error: unexpected node")
}

func litType(v value) typ {
	switch v.k {
	case kBool:
		return tBool
	case kInt:
		return tInt
	case kString:
		return tString
	}
	return tNull
}

func checkBoth(n *node) *parseError {
	if err := check(n.l); err != nil {
		return err
	}
	return check(n.r)
}

// setThreshold is the list length from which "in" looks strings up in a map.
const setThreshold = 8

func checkIn(n *node) *parseError {
	if err := check(n.l); err != nil {
		return err
	}
	lt := n.l.typ
	if lt == tColl {
		return errAt(n.l.start, "the left side of 'in' must be a single value, not a collection")
	}
	n.typ = tBool
	if n.r.op != opList {
		if err := check(n.r); err != nil {
			return err
		}
		if n.r.typ != tColl {
			return errAt(n.r.start, "the right side of 'in' must be a parenthesised list of literals or groups")
		}
		if lt != tString && lt != tNull {
			return errAt(n.l.start, "only a string can be in groups but got "+describeType(lt))
		}
		return nil
	}
	// A literal list: all non-null elements share one type, which matches
	// the left side unless that is null.
	want := lt
	strings := 0
	for _, v := range n.r.list {
		t := litType(v)
		switch {
		case t == tNull:
			n.hasNull = true
			continue
		case want == tNull:
			want = t
		case t != want:
			return errAt(n.r.start, "the list after 'in' mixes "+describeType(want)+" and "+describeType(t)+" values")
		}
		if t == tString {
			strings++
		}
	}
	if strings >= setThreshold {
		n.set = make(map[string]struct{}, strings)
		for _, v := range n.r.list {
			if v.k == kString {
				n.set[v.s] = struct{}{}
			}
		}
	}
	n.r.typ = want
	return nil
}

func checkCall(n *node) *parseError {
	id := -1
	for i, f := range functions {
		if equalFoldASCII(n.name, f.name) {
			id = i
			break
		}
	}
	if id < 0 {
		return errAt(n.start, "unknown function '"+n.name+"'; the functions are tolower, toupper, trim, substring, concat, indexof, startswith, endswith, contains and length")
	}
	f := &functions[id]
	n.fn = fnID(id)
	if len(n.args) < f.min || len(n.args) > len(f.params) {
		want := strconv.Itoa(f.min)
		if f.min != len(f.params) {
			want += " or " + strconv.Itoa(len(f.params))
		}
		plural := "s"
		if want == "1" {
			plural = ""
		}
		return errAt(n.start, f.name+" takes "+want+" argument"+plural+" but got "+strconv.Itoa(len(n.args)))
	}
	for i, a := range n.args {
		if err := check(a); err != nil {
			return err
		}
		if !accepts(f.params[i], a.typ) {
			return errAt(a.start, "the "+ordinal(i)+" argument of "+f.name+" must be "+describeParam(f.params[i])+" but is "+describeType(a.typ))
		}
	}
	n.typ = f.result
	return nil
}
