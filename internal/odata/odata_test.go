package odata

import (
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

// conn is a test Subject.
type conn struct {
	name     string
	userID   string
	anon     bool
	id       string
	groups   []string
	protocol string
}

func (c *conn) FilterUserID() (string, bool) { return c.userID, !c.anon }
func (c *conn) FilterConnectionID() string   { return c.id }
func (c *conn) FilterGroups() []string       { return c.groups }
func (c *conn) FilterProtocol() string       { return c.protocol }

var (
	alice = &conn{name: "alice", userID: "alice", id: "conn-1", groups: []string{"g1", "g2"}, protocol: "json.webpubsub.azure.v1"}
	bob   = &conn{name: "bob", userID: "Bob", id: "conn-2", groups: []string{"g2"}, protocol: "protobuf.webpubsub.azure.v1"}
	anon  = &conn{name: "anon", anon: true, id: "conn-3"}
	// odd has quotes, padding and a character outside the BMP; userId has
	// 10 code points: 2 spaces, O'Neil (6), the emoji, a space.
	odd = &conn{name: "odd", userID: "  O'Neil😀 ", id: "it's", groups: []string{"g'1", "g3"}, protocol: "mqtt"}

	subjects = []*conn{alice, bob, anon, odd}
)

var matchTests = []struct {
	filter string
	want   []string // names of the subjects that match; the others must not
}{
	// eq / ne, exact and case-sensitive.
	{`userId eq 'alice'`, []string{"alice"}},
	{`'alice' eq userId`, []string{"alice"}},
	{`userId eq 'Alice'`, nil},
	{`userId ne 'alice'`, []string{"bob", "anon", "odd"}},
	{`connectionId eq 'conn-2'`, []string{"bob"}},
	{`userId eq 'alice' and connectionId ne '123'`, []string{"alice"}},
	// null.
	{`userId eq null`, []string{"anon"}},
	{`null eq userId`, []string{"anon"}},
	{`userId ne null`, []string{"alice", "bob", "odd"}},
	{`null eq null`, []string{"alice", "bob", "anon", "odd"}},
	{`null ne null`, nil},
	{`protocol eq null`, []string{"anon"}},
	{`protocol eq 'json.webpubsub.azure.v1'`, []string{"alice"}},
	{`protocol ne 'mqtt'`, []string{"alice", "bob", "anon"}},
	// Case-insensitive names.
	{`UserId eq 'alice'`, []string{"alice"}},
	{`USERID eq 'alice'`, []string{"alice"}},
	{`connectionid eq 'conn-2'`, []string{"bob"}},
	{`'g1' in GROUPS`, []string{"alice"}},
	{`Protocol eq 'mqtt'`, []string{"odd"}},
	{`ToLower(userId) eq 'bob'`, []string{"bob"}},
	{`STARTSWITH(userId, 'al')`, []string{"alice"}},
	// Quote escaping.
	{`connectionId eq 'it''s'`, []string{"odd"}},
	{`userId eq '  O''Neil😀 '`, []string{"odd"}},
	{`'g''1' in groups`, []string{"odd"}},
	{`connectionId in ('it''s', 'x')`, []string{"odd"}},
	{`'''' eq concat('''', '')`, []string{"alice", "bob", "anon", "odd"}},
	// in, both forms.
	{`'g1' in groups`, []string{"alice"}},
	{`'g2' in groups`, []string{"alice", "bob"}},
	{`'g1' in groups or 'g3' in groups`, []string{"alice", "odd"}},
	{`userId in groups`, nil},
	{`null in groups`, nil},
	{`userId in ('alice','Bob')`, []string{"alice", "bob"}},
	{`userId in ( 'alice' , 'Bob' )`, []string{"alice", "bob"}},
	{`userId in ('alice', null)`, []string{"alice", "anon"}},
	{`userId in ('x')`, nil},
	{`userId in ('a','b','c','d','e','f','g','h','alice')`, []string{"alice"}},
	{`userId in ('a','b','c','d','e','f','g','h','alice',null)`, []string{"alice", "anon"}},
	{`not (userId in ('a','b','c','d','e','f','g','h','alice'))`, []string{"bob", "anon", "odd"}},
	{`1 in (1, 2)`, []string{"alice", "bob", "anon", "odd"}},
	{`3 in (1, 2)`, nil},
	{`true in (false)`, nil},
	{`null in (null)`, []string{"alice", "bob", "anon", "odd"}},
	{`null in ('a')`, nil},
	{`length(userId) in (3, 5)`, []string{"alice", "bob"}},
	{`(userId in ('alice')) eq true`, []string{"alice"}},
	// gt ge lt le, on integers, false with a null side.
	{`length(userId) gt 3`, []string{"alice", "odd"}},
	{`length(userId) ge 3`, []string{"alice", "bob", "odd"}},
	{`length(userId) lt 5`, []string{"bob"}},
	{`length(userId) le 5`, []string{"alice", "bob"}},
	{`not (length(userId) gt 3)`, []string{"bob", "anon"}},
	{`-1 lt +1`, []string{"alice", "bob", "anon", "odd"}},
	{`1 gt 2`, nil},
	{`2 ge 2 and 2 le 2`, []string{"alice", "bob", "anon", "odd"}},
	{`null gt 1`, nil},
	{`1 le null`, nil},
	{`null lt null`, nil},
	{`-9223372036854775808 lt 9223372036854775807`, []string{"alice", "bob", "anon", "odd"}},
	// Booleans and precedence: not > comparisons > and > or.
	{`true`, []string{"alice", "bob", "anon", "odd"}},
	{`false`, nil},
	{`not false`, []string{"alice", "bob", "anon", "odd"}},
	{`not not true`, []string{"alice", "bob", "anon", "odd"}},
	{`true and false`, nil},
	{`true or false`, []string{"alice", "bob", "anon", "odd"}},
	{`true eq true`, []string{"alice", "bob", "anon", "odd"}},
	{`not (userId eq 'alice')`, []string{"bob", "anon", "odd"}},
	{`(userId eq 'alice') eq false`, []string{"bob", "anon", "odd"}},
	{`not startswith(userId, 'al')`, []string{"bob", "anon", "odd"}},
	{`not startswith(userId, 'al') eq true`, []string{"bob", "anon", "odd"}},
	{`userId eq 'alice' or userId eq 'Bob' and 'g1' in groups`, []string{"alice"}},
	{`(userId eq 'alice' or userId eq 'Bob') and 'g2' in groups`, []string{"alice", "bob"}},
	{`(userId eq 'alice' or userId eq 'Bob') and 'g1' in groups`, []string{"alice"}},
	{`'g2' in groups and not (userId eq 'Bob') or userId eq null`, []string{"alice", "anon"}},
	{`((((userId eq 'alice'))))`, []string{"alice"}},
	// Functions.
	{`tolower(userId) eq 'bob'`, []string{"bob"}},
	{`toupper(userId) eq 'ALICE'`, []string{"alice"}},
	{`tolower(userId) eq null`, []string{"anon"}},
	{`trim(userId) eq 'O''Neil😀'`, []string{"odd"}},
	{`substring(userId, 1) eq 'lice'`, []string{"alice"}},
	{`substring(userId, 1, 2) eq 'li'`, []string{"alice"}},
	{`substring(userId, 10) eq ''`, []string{"alice", "bob", "odd"}},
	{`substring(userId, 0, 100) eq userId`, []string{"alice", "bob", "anon", "odd"}}, // null eq null
	{`substring(userId, -3, 2) eq 'al'`, []string{"alice"}},
	{`substring(userId, 1, -1) eq ''`, []string{"alice", "bob", "odd"}},
	{`substring(userId, 8, 1) eq '😀'`, []string{"odd"}},
	{`substring(userId, null) eq null`, []string{"alice", "bob", "anon", "odd"}},
	{`concat(userId, '-x') eq 'alice-x'`, []string{"alice"}},
	{`concat(concat(userId, '@'), connectionId) eq 'Bob@conn-2'`, []string{"bob"}},
	{`concat(userId, null) eq null`, []string{"alice", "bob", "anon", "odd"}},
	{`indexof(userId, 'ice') eq 2`, []string{"alice"}},
	{`indexof(userId, 'zzz') eq -1`, []string{"alice", "bob", "odd"}},
	{`indexof(userId, '😀') eq 8`, []string{"odd"}},
	{`indexof(userId, '') eq 0`, []string{"alice", "bob", "odd"}},
	{`startswith(userId, 'al')`, []string{"alice"}},
	{`startswith(userId, 'listener-')`, nil},
	{`endswith(userId, 'ob')`, []string{"bob"}},
	{`contains(userId, 'li')`, []string{"alice"}},
	{`contains(tolower(userId), 'b')`, []string{"bob"}},
	{`startswith(userId, null)`, nil},
	{`not endswith(null, 'x')`, []string{"alice", "bob", "anon", "odd"}},
	{`contains(userId, '')`, []string{"alice", "bob", "odd"}},
	{`startswith(protocol, 'json.')`, []string{"alice"}},
	{`length(userId) eq 5`, []string{"alice"}},
	{`length(userId) eq 10`, []string{"odd"}},
	{`length(userId) eq null`, []string{"anon"}},
	{`length(groups) eq 2`, []string{"alice", "odd"}},
	{`length(groups) eq 0`, []string{"anon"}},
	{`length('') eq 0`, []string{"alice", "bob", "anon", "odd"}},
	// Examples from the documentation.
	{`'group1' in groups or 'group2' in groups`, nil},
	{`userId in ('user1','user2') and 'group1' in groups`, nil},
	// White space.
	{"  userId\teq\n'alice'  ", []string{"alice"}},
	{"userId\u00a0eq\u3000'alice'", []string{"alice"}},
}

func TestMatch(t *testing.T) {
	for _, tt := range matchTests {
		f, err := Parse(tt.filter)
		if err != nil {
			var se *SyntaxError
			errors.As(err, &se)
			t.Errorf("Parse(%q): %v (%s)", tt.filter, err, se.Detail)
			continue
		}
		if f.String() != tt.filter {
			t.Errorf("Parse(%q).String() = %q", tt.filter, f.String())
		}
		for _, s := range subjects {
			want := slices.Contains(tt.want, s.name)
			if got := f.Match(s); got != want {
				t.Errorf("Parse(%q).Match(%s) = %v, want %v", tt.filter, s.name, got, want)
			}
		}
	}
}

var errorTests = []struct {
	filter string
	pos    int
	detail string // a substring of Detail
}{
	// Syntax errors.
	{`invalid filter`, 14, "unexpected 'filter'"},
	{``, 0, "found end of filter"},
	{`   `, 3, "found end of filter"},
	{`userId eq`, 9, "found end of filter"},
	{`userId eq 'alice' and`, 21, "found end of filter"},
	{`userId eq 'alice' or`, 20, "found end of filter"},
	{`userId eq 'alice')`, 18, "unexpected ')'"},
	{`(userId eq 'alice'`, 18, "expected ')'"},
	{`(userId eq 'alice' 'x')`, 19, "expected ')'"},
	{`userId eq 'alice`, 16, "unterminated string"},
	{`userId eq 'alice''`, 18, "unterminated string"},
	{`userId eq )`, 10, "found ')'"},
	{`userId eq 'a' userId`, 20, "unexpected 'userId'"},
	{`userId eq 'a' AND userId eq 'b'`, 17, "unexpected 'AND'"},
	{`userId EQ 'a'`, 9, "unexpected 'EQ'"},
	{`userId $ 'a'`, 7, "unexpected character '$'"},
	{`userId eq 1.5`, 11, "unexpected character '.'"},
	{"userId eq \xff", 10, "invalid UTF-8"},
	{`userId in ()`, 11, "expected a literal"},
	{`userId in ('a',)`, 15, "expected a literal"},
	{`userId in ('a' 'b')`, 15, "expected ',' or ')'"},
	{`userId in (userId)`, 11, "expected a literal"},
	{`userId in ('a'`, 14, "expected ',' or ')'"},
	{`tolower(userId`, 14, "expected ',' or ')'"},
	{`tolower(userId 'x')`, 15, "expected ',' or ')'"},
	{`tolower(userId,) eq 'a'`, 15, "found ')'"},
	{`not`, 3, "found end of filter"},
	{`9223372036854775808 eq 1`, 0, "out of range"},
	{`userId eq - 1`, 10, "unexpected character '-'"},
	// Positions count UTF-16 code units, as .NET does.
	{`userId eq 'a😀' x`, 17, "unexpected 'x'"},
	// Unknown names.
	{`foo eq 'a'`, 0, "unknown property 'foo'"},
	{`userId eq 'a' or bar`, 17, "unknown property 'bar'"},
	{`and`, 0, "unknown property 'and'"},
	{`bar(userId)`, 0, "unknown function 'bar'"},
	{`groups/any(g: g eq 'a')`, 6, "unexpected character '/'"},
	// Type errors.
	{`not length(userId) gt 5`, 4, "'not' needs a boolean operand"},
	{`not userId eq 'alice'`, 4, "'not' needs a boolean operand"},
	{`userId gt 'a'`, 7, "compares integers only"},
	{`'a' le 'b'`, 4, "compares integers only"},
	{`userId eq 1`, 7, "cannot compare a string with an integer"},
	{`true eq 'true'`, 5, "cannot compare a boolean with a string"},
	{`groups eq null`, 7, "collection cannot be compared"},
	{`'a' and true`, 0, "'and' needs boolean operands"},
	{`true or 1`, 8, "'or' needs boolean operands"},
	{`userId`, 0, "must be a boolean expression"},
	{`null`, 0, "must be a boolean expression"},
	{`(length(groups))`, 0, "must be a boolean expression"},
	{`substring(userId) eq 'a'`, 0, "substring takes 2 or 3 arguments but got 1"},
	{`length() eq 0`, 0, "length takes 1 argument but got 0"},
	{`contains(userId, 'a', 'b')`, 0, "contains takes 2 arguments but got 3"},
	{`tolower(1) eq 'a'`, 8, "first argument of tolower must be a string"},
	{`substring(userId, '1') eq 'a'`, 18, "second argument of substring must be an integer"},
	{`contains(groups, 'g1')`, 9, "first argument of contains must be a string"},
	{`length(true) eq 1`, 7, "must be a string or a collection"},
	{`1 in groups`, 0, "only a string can be in groups"},
	{`groups in ('a')`, 0, "must be a single value"},
	{`userId in ('a', 1)`, 10, "mixes a string and an integer"},
	{`userId in (1)`, 10, "mixes a string and an integer"},
	{`userId in 'a'`, 10, "right side of 'in'"},
	{`userId in userId`, 10, "right side of 'in'"},
}

func TestErrors(t *testing.T) {
	for _, tt := range errorTests {
		f, err := Parse(tt.filter)
		if err == nil {
			t.Errorf("Parse(%q) = %v, want an error", tt.filter, f)
			continue
		}
		se, ok := err.(*SyntaxError)
		if !ok {
			t.Errorf("Parse(%q) error is %T, want *SyntaxError", tt.filter, err)
			continue
		}
		if se.Input != tt.filter {
			t.Errorf("Parse(%q): Input = %q", tt.filter, se.Input)
		}
		if se.Pos != tt.pos || !strings.Contains(se.Detail, tt.detail) {
			t.Errorf("Parse(%q): Pos %d, Detail %q; want Pos %d, Detail containing %q", tt.filter, se.Pos, se.Detail, tt.pos, tt.detail)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	_, err := Parse("invalid filter")
	const want = "Invalid syntax for 'invalid filter': Syntax error at position 14 in 'invalid filter'."
	if err == nil || err.Error() != want {
		t.Fatalf("Parse(\"invalid filter\") error = %v, want %q", err, want)
	}
	// Type errors use the same format.
	_, err = Parse("userId eq 1")
	const want2 = "Invalid syntax for 'userId eq 1': Syntax error at position 7 in 'userId eq 1'."
	if err == nil || err.Error() != want2 {
		t.Fatalf("Parse(\"userId eq 1\") error = %v, want %q", err, want2)
	}
}

func TestLimits(t *testing.T) {
	nest := func(n int) string {
		return strings.Repeat("(", n) + "true" + strings.Repeat(")", n)
	}
	if _, err := Parse(nest(MaxDepth)); err != nil {
		t.Errorf("%d levels of parentheses: %v", MaxDepth, err)
	}
	checkErr(t, nest(MaxDepth+1), MaxDepth, "nested too deeply")

	nots := func(n int) string { return strings.Repeat("not ", n) + "true" }
	if _, err := Parse(nots(MaxDepth)); err != nil {
		t.Errorf("%d nots: %v", MaxDepth, err)
	}
	checkErr(t, nots(MaxDepth+1), 4*MaxDepth, "nested too deeply")

	calls := func(n int) string {
		return "startswith(" + strings.Repeat("tolower(", n-1) + "userId" + strings.Repeat(")", n-1) + ", 'a')"
	}
	if _, err := Parse(calls(MaxDepth)); err != nil {
		t.Errorf("%d nested calls: %v", MaxDepth, err)
	}
	checkErr(t, calls(MaxDepth+1), len("startswith(")+len("tolower(")*(MaxDepth-1)+len("tolower"), "nested too deeply")

	// 100 clauses of the usual shape fit.
	var clauses []string
	for i := range 100 {
		clauses = append(clauses, "userId eq 'user"+itoa(i)+"'")
	}
	if _, err := Parse(strings.Join(clauses, " or ")); err != nil {
		t.Errorf("100 clauses: %v", err)
	}
	// MaxNodes nodes fit; one more does not.
	list := func(n int) string { // "1 in (1, 1, …)": 3 + n nodes
		return "1 in (" + strings.Repeat("1,", n-1) + "1)"
	}
	if _, err := Parse(list(MaxNodes - 3)); err != nil {
		t.Errorf("%d nodes: %v", MaxNodes, err)
	}
	checkErr(t, list(MaxNodes-2), len("1 in (")+2*(MaxNodes-3), "too complex")
	ors := strings.Repeat("true or ", MaxNodes/2) + "true" // MaxNodes+1 nodes
	checkErr(t, ors, len(ors)-len("true"), "too complex")

	long := "userId eq '" + strings.Repeat("a", MaxLength) + "'"
	checkErr(t, long, MaxLength, "too long")
	exact := "userId eq '" + strings.Repeat("a", MaxLength-len("userId eq ''")) + "'"
	if _, err := Parse(exact); err != nil {
		t.Errorf("%d bytes: %v", len(exact), err)
	}
}

func checkErr(t *testing.T, filter string, pos int, detail string) {
	t.Helper()
	_, err := Parse(filter)
	se, ok := err.(*SyntaxError)
	if !ok {
		t.Errorf("Parse(%.40q…) error = %v, want a *SyntaxError", filter, err)
		return
	}
	if se.Pos != pos || !strings.Contains(se.Detail, detail) {
		t.Errorf("Parse(%.40q…): Pos %d, Detail %q; want Pos %d, Detail containing %q", filter, se.Pos, se.Detail, pos, detail)
	}
}

func TestNilFilter(t *testing.T) {
	var f *Filter
	if !f.Match(alice) || f.String() != "" {
		t.Error("a nil *Filter must match everything and print as empty")
	}
}

func TestConcurrentMatch(t *testing.T) {
	f, err := Parse(`userId in ('a','b','c','d','e','f','g','h','alice') or tolower(userId) eq 'bob' or length(groups) gt 1`)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if !f.Match(alice) || !f.Match(bob) || f.Match(anon) || !f.Match(odd) {
					t.Error("wrong result")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestMatchDoesNotAllocate(t *testing.T) {
	for _, filter := range []string{
		`userId in ('u1','u2') and 'g1' in groups`,
		`userId in ('a','b','c','d','e','f','g','h','alice')`,
		`userId eq 'alice' or connectionId ne 'x' and not (protocol eq null)`,
		`length(groups) gt 1 and startswith(userId, 'a') and substring(userId, 1, 2) eq 'li'`,
		`indexof(trim(userId), 'c') eq 3 or contains(userId, 'x') or endswith(userId, 'e')`,
	} {
		f, err := Parse(filter)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range subjects {
			if n := testing.AllocsPerRun(100, func() { f.Match(s) }); n != 0 {
				t.Errorf("Parse(%q).Match(%s) allocates %v times", filter, s.name, n)
			}
		}
	}
}

func TestUTF16Offset(t *testing.T) {
	for _, tt := range []struct {
		s    string
		off  int
		want int
	}{
		{"abc", 2, 2},
		{"é", 2, 1},
		{"😀x", 4, 2},
		{"😀x", 5, 3},
		{"\xffa", 2, 2},
		{"abc", 10, 3},
	} {
		if got := utf16Offset(tt.s, tt.off); got != tt.want {
			t.Errorf("utf16Offset(%q, %d) = %d, want %d", tt.s, tt.off, got, tt.want)
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func BenchmarkMatch(b *testing.B) {
	f, err := Parse(`userId in ('u1','u2') and 'g1' in groups`)
	if err != nil {
		b.Fatal(err)
	}
	s := &conn{userID: "u2", id: "c1", groups: []string{"g0", "g1"}}
	b.ReportAllocs()
	for b.Loop() {
		if !f.Match(s) {
			b.Fatal("no match")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(`userId in ('u1','u2') and 'g1' in groups`); err != nil {
			b.Fatal(err)
		}
	}
}
