package odata

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

type tokenKind uint8

const (
	tokEnd tokenKind = iota
	tokIdent
	tokString
	tokInt
	tokOpen
	tokClose
	tokComma
)

func (k tokenKind) String() string {
	switch k {
	case tokEnd:
		return "end of filter"
	case tokIdent:
		return "name"
	case tokString:
		return "string literal"
	case tokInt:
		return "integer literal"
	case tokOpen:
		return "'('"
	case tokClose:
		return "')'"
	case tokComma:
		return "','"
	}
	return "token"
}

// token is one lexical token. start and end are byte offsets into the input.
type token struct {
	kind  tokenKind
	start int
	end   int
	text  string // the source text of the token
	str   string // tokString: the unescaped value
	num   int64  // tokInt: the value
}

// is reports whether t is the lower-case keyword kw.
func (t *token) is(kw string) bool {
	return t.kind == tokIdent && t.text == kw
}

// describe names the token for error details.
func (t *token) describe() string {
	switch t.kind {
	case tokEnd:
		return "end of filter"
	case tokIdent, tokInt:
		return "'" + t.text + "'"
	case tokString:
		return "string " + t.text
	}
	return t.kind.String()
}

// lexer splits a filter into tokens on demand, so that an early syntax error
// is reported before a lexical error further on, as the .NET parser does.
type lexer struct {
	src string
	pos int // byte offset of the next unread character
}

func isIdentStart(r rune) bool {
	return r == '_' || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') ||
		(r >= utf8.RuneSelf && unicode.IsLetter(r))
}

func isIdentPart(r rune) bool {
	return isIdentStart(r) || ('0' <= r && r <= '9') ||
		(r >= utf8.RuneSelf && unicode.IsDigit(r))
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// next reads the next token.
func (l *lexer) next() (token, *parseError) {
	src := l.src
	// Skip white space.
	for l.pos < len(src) {
		c := src[l.pos]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' {
			l.pos++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(src[l.pos:])
			if unicode.IsSpace(r) {
				l.pos += size
				continue
			}
		}
		break
	}
	start := l.pos
	if start >= len(src) {
		return token{kind: tokEnd, start: start, end: start}, nil
	}
	c := src[start]
	switch {
	case c == '(':
		l.pos++
		return token{kind: tokOpen, start: start, end: l.pos, text: "("}, nil
	case c == ')':
		l.pos++
		return token{kind: tokClose, start: start, end: l.pos, text: ")"}, nil
	case c == ',':
		l.pos++
		return token{kind: tokComma, start: start, end: l.pos, text: ","}, nil
	case c == '\'':
		return l.lexString(start)
	case isDigit(c) || ((c == '-' || c == '+') && start+1 < len(src) && isDigit(src[start+1])):
		return l.lexInt(start)
	}
	r, size := utf8.DecodeRuneInString(src[start:])
	if isIdentStart(r) {
		l.pos += size
		for l.pos < len(src) {
			r, size = utf8.DecodeRuneInString(src[l.pos:])
			if !isIdentPart(r) {
				break
			}
			l.pos += size
		}
		return token{kind: tokIdent, start: start, end: l.pos, text: src[start:l.pos]}, nil
	}
	var ch string
	if r == utf8.RuneError && size == 1 {
		ch = "an invalid UTF-8 byte"
	} else {
		ch = "character '" + string(r) + "'"
	}
	return token{}, errAt(start, "unexpected "+ch)
}

func (l *lexer) lexString(start int) (token, *parseError) {
	src := l.src
	i := start + 1
	escaped := false
	for {
		j := strings.IndexByte(src[i:], '\'')
		if j < 0 {
			l.pos = len(src)
			return token{}, errAt(len(src), "unterminated string literal starting at offset "+strconv.Itoa(utf16Offset(src, start)))
		}
		i += j + 1
		if i < len(src) && src[i] == '\'' {
			escaped = true
			i++
			continue
		}
		break
	}
	l.pos = i
	t := token{kind: tokString, start: start, end: i, text: src[start:i], str: src[start+1 : i-1]}
	if escaped {
		t.str = strings.ReplaceAll(t.str, "''", "'")
	}
	return t, nil
}

func (l *lexer) lexInt(start int) (token, *parseError) {
	src := l.src
	i := start + 1 // a sign or the first digit
	for i < len(src) && isDigit(src[i]) {
		i++
	}
	l.pos = i
	text := src[start:i]
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return token{}, errAt(start, "integer literal "+text+" is out of range")
	}
	return token{kind: tokInt, start: start, end: i, text: text, num: n}, nil
}
