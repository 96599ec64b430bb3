package odata

import "strconv"

// Limits on the filters Parse accepts.
const (
	// MaxLength is the longest filter accepted, in bytes.
	MaxLength = 8 << 10
	// MaxNodes is the largest number of syntax tree nodes accepted. Names,
	// literals, operators, function calls, the list after "in" and each of
	// its elements count one each, so 100 clauses such as "userId eq 'u1'"
	// joined by "or" (399 nodes) fit.
	MaxNodes = 512
	// MaxDepth is the deepest nesting of parentheses, function calls and
	// "not" accepted.
	MaxDepth = 32
)

type opcode uint8

const (
	opLit   opcode = iota // literal: val
	opName                // unresolved name (syntax phase only)
	opField               // property: field
	opCall                // function call: fn, args
	opList                // parenthesised literal list, right side of "in": list
	opNot                 // not l
	opAnd                 // l and r
	opOr                  // l or r
	opEq                  // l eq r
	opNe                  // l ne r
	opGt                  // l gt r
	opGe                  // l ge r
	opLt                  // l lt r
	opLe                  // l le r
	opIn                  // l in r (r is opList or a collection)
)

var comparisonOps = map[string]opcode{
	"eq": opEq, "ne": opNe, "gt": opGt, "ge": opGe, "lt": opLt, "le": opLe,
}

// typ is the static type of an expression.
type typ uint8

const (
	tNull typ = iota // the null literal
	tBool
	tInt
	tString
	tColl // collection of strings
)

func (t typ) String() string {
	switch t {
	case tNull:
		return "null"
	case tBool:
		return "boolean"
	case tInt:
		return "integer"
	case tString:
		return "string"
	case tColl:
		return "collection"
	}
	return "unknown"
}

// field is a property of the connection.
type field uint8

const (
	fieldUserID field = iota
	fieldConnectionID
	fieldGroups
	fieldProtocol
)

var fields = [...]struct {
	name string
	typ  typ
}{
	fieldUserID:       {"userId", tString},
	fieldConnectionID: {"connectionId", tString},
	fieldGroups:       {"groups", tColl},
	fieldProtocol:     {"protocol", tString},
}

// node is a node of the syntax tree. Parse builds the tree, check resolves
// names and annotates types; afterwards the tree is never modified.
type node struct {
	op    opcode
	typ   typ
	field field
	fn    fnID
	start int    // byte offset of the first token of the expression
	at    int    // byte offset of the operator or name token
	name  string // the name or operator as written
	val   value  // opLit
	l, r  *node
	args  []*node // opCall
	list  []value // opList
	// For opIn with a list: whether the list holds null, and for long lists
	// of strings a set of them.
	hasNull bool
	set     map[string]struct{}
}

type parser struct {
	lx    lexer
	tok   token
	nodes int
	depth int
}

func (p *parser) advance() *parseError {
	t, err := p.lx.next()
	if err != nil {
		return err
	}
	p.tok = t
	return nil
}

func (p *parser) newNode(op opcode, start, at int) (*node, *parseError) {
	p.nodes++
	if p.nodes > MaxNodes {
		return nil, errAt(at, "filter is too complex: more than "+strconv.Itoa(MaxNodes)+" terms")
	}
	return &node{op: op, start: start, at: at}, nil
}

func (p *parser) enter(at int) *parseError {
	p.depth++
	if p.depth > MaxDepth {
		return errAt(at, "filter is nested too deeply: more than "+strconv.Itoa(MaxDepth)+" levels of parentheses, function calls and 'not'")
	}
	return nil
}

func (p *parser) leave() { p.depth-- }

// parse parses a whole filter.
func (p *parser) parse() (*node, *parseError) {
	if err := p.advance(); err != nil {
		return nil, err
	}
	n, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEnd {
		// Like the .NET parser, report the position just after the token
		// that should have been the end of the filter.
		return nil, errAt(p.tok.end, "unexpected "+p.tok.describe()+" after a complete expression; expected 'and', 'or', a comparison operator or the end of the filter")
	}
	return n, nil
}

func (p *parser) binary(op opcode, l *node, parseRight func() (*node, *parseError)) (*node, *parseError) {
	n, err := p.newNode(op, l.start, p.tok.start)
	if err != nil {
		return nil, err
	}
	n.name, n.l = p.tok.text, l
	if err := p.advance(); err != nil {
		return nil, err
	}
	if n.r, err = parseRight(); err != nil {
		return nil, err
	}
	return n, nil
}

func (p *parser) parseOr() (*node, *parseError) {
	n, err := p.parseAnd()
	for err == nil && p.tok.is("or") {
		n, err = p.binary(opOr, n, p.parseAnd)
	}
	return n, err
}

func (p *parser) parseAnd() (*node, *parseError) {
	n, err := p.parseComparison()
	for err == nil && p.tok.is("and") {
		n, err = p.binary(opAnd, n, p.parseComparison)
	}
	return n, err
}

func (p *parser) parseComparison() (*node, *parseError) {
	n, err := p.parseUnary()
	for err == nil && p.tok.kind == tokIdent {
		if op, ok := comparisonOps[p.tok.text]; ok {
			n, err = p.binary(op, n, p.parseUnary)
		} else if p.tok.text == "in" {
			n, err = p.binary(opIn, n, p.parseInRight)
		} else {
			break
		}
	}
	return n, err
}

func (p *parser) parseUnary() (*node, *parseError) {
	if !p.tok.is("not") {
		return p.parsePrimary()
	}
	at := p.tok.start
	if err := p.enter(at); err != nil {
		return nil, err
	}
	defer p.leave()
	n, err := p.newNode(opNot, at, at)
	if err != nil {
		return nil, err
	}
	n.name = "not"
	if err := p.advance(); err != nil {
		return nil, err
	}
	if n.l, err = p.parseUnary(); err != nil {
		return nil, err
	}
	return n, nil
}

// literal converts the current token to a literal value if it is one.
func (p *parser) literal() (value, bool) {
	t := &p.tok
	switch t.kind {
	case tokString:
		return value{k: kString, s: t.str}, true
	case tokInt:
		return value{k: kInt, i: t.num}, true
	case tokIdent:
		switch t.text {
		case "true":
			return value{k: kBool, b: true}, true
		case "false":
			return value{k: kBool}, true
		case "null":
			return value{k: kNull}, true
		}
	}
	return value{}, false
}

func (p *parser) expectedOperand() *parseError {
	return errAt(p.tok.start, "expected a name, literal, function call or '(' but found "+p.tok.describe())
}

func (p *parser) parsePrimary() (*node, *parseError) {
	t := p.tok
	if v, ok := p.literal(); ok {
		n, err := p.newNode(opLit, t.start, t.start)
		if err != nil {
			return nil, err
		}
		n.name, n.val = t.text, v
		return n, p.advance()
	}
	switch t.kind {
	case tokOpen:
		if err := p.enter(t.start); err != nil {
			return nil, err
		}
		defer p.leave()
		if err := p.advance(); err != nil {
			return nil, err
		}
		n, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokClose {
			return nil, errAt(p.tok.start, "expected ')' or an operator but found "+p.tok.describe())
		}
		// Parentheses only group: the inner node stands for the whole
		// parenthesised expression, but error positions start at '('.
		n.start = t.start
		return n, p.advance()
	case tokIdent:
		if err := p.advance(); err != nil {
			return nil, err
		}
		if p.tok.kind != tokOpen {
			n, err := p.newNode(opName, t.start, t.start)
			if err != nil {
				return nil, err
			}
			n.name = t.text
			return n, nil
		}
		return p.parseCall(t)
	}
	return nil, p.expectedOperand()
}

// parseCall parses the argument list of a call of the function named by
// nameTok; the current token is '('.
func (p *parser) parseCall(nameTok token) (*node, *parseError) {
	if err := p.enter(p.tok.start); err != nil {
		return nil, err
	}
	defer p.leave()
	n, err := p.newNode(opCall, nameTok.start, nameTok.start)
	if err != nil {
		return nil, err
	}
	n.name = nameTok.text
	if err := p.advance(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokClose {
		return n, p.advance()
	}
	for {
		arg, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, arg)
		switch p.tok.kind {
		case tokComma:
			if err := p.advance(); err != nil {
				return nil, err
			}
		case tokClose:
			return n, p.advance()
		default:
			return nil, errAt(p.tok.start, "expected ',' or ')' after a function argument but found "+p.tok.describe())
		}
	}
}

// parseInRight parses the right side of "in": a parenthesised list of
// literals, or an operand that must turn out to be a collection.
func (p *parser) parseInRight() (*node, *parseError) {
	if p.tok.kind != tokOpen {
		return p.parsePrimary()
	}
	n, err := p.newNode(opList, p.tok.start, p.tok.start)
	if err != nil {
		return nil, err
	}
	n.name = "("
	if err := p.advance(); err != nil {
		return nil, err
	}
	for {
		v, ok := p.literal()
		if !ok {
			return nil, errAt(p.tok.start, "expected a literal value in the list after 'in' but found "+p.tok.describe())
		}
		if _, err := p.newNode(opLit, p.tok.start, p.tok.start); err != nil {
			return nil, err // counted, but kept only as a value
		}
		n.list = append(n.list, v)
		if err := p.advance(); err != nil {
			return nil, err
		}
		switch p.tok.kind {
		case tokComma:
			if err := p.advance(); err != nil {
				return nil, err
			}
		case tokClose:
			return n, p.advance()
		default:
			return nil, errAt(p.tok.start, "expected ',' or ')' in the list after 'in' but found "+p.tok.describe())
		}
	}
}
