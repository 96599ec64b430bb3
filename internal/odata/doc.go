// Package odata parses and evaluates the subset of the OData $filter language
// that Azure Web PubSub's REST API (2024-12-01) uses to select connections.
//
// A filter is parsed and type-checked once with [Parse] and can then be
// evaluated against any number of connections, concurrently, with
// [Filter.Match]. The caller describes a connection through the [Subject]
// interface.
//
// # Grammar
//
//	filter     = or
//	or         = and *( "or" and )
//	and        = comparison *( "and" comparison )
//	comparison = unary *( ( "eq" / "ne" / "gt" / "ge" / "lt" / "le" ) unary
//	                    / "in" ( "(" literal *( "," literal ) ")" / primary ) )
//	unary      = "not" unary / primary
//	primary    = literal / name / name "(" [ or *( "," or ) ] ")" / "(" or ")"
//	literal    = string / integer / "true" / "false" / "null"
//	string     = "'" *( any character except "'" / "''" ) "'"
//	integer    = [ "+" / "-" ] 1*DIGIT
//
// Keywords (and, or, not, eq, ne, gt, ge, lt, le, in, true, false, null) are
// lower-case only, as in OData. Property names (userId, connectionId, groups,
// protocol) and function names (tolower, toupper, trim, substring, concat,
// indexof, startswith, endswith, contains, length) are matched
// case-insensitively (ASCII).
//
// # Types and null
//
// userId and protocol are nullable strings (an anonymous connection has a
// null userId; an empty subprotocol is null), connectionId is a string and
// groups is a collection of strings that may only be used as the right side
// of "in" or as the argument of length. The filter as a whole must be boolean;
// and, or and not take booleans; gt, ge, lt and le compare integers only; eq
// and ne compare two values of the same type exactly (strings ordinally,
// case-sensitively) and null eq null is true. String functions return null
// when an argument is null, startswith, endswith and contains return false
// when an argument is null, and gt, ge, lt and le are false when either side
// is null. String positions and lengths (indexof, substring, length) count
// Unicode code points.
//
// # Errors
//
// Every error is a [*SyntaxError]. Its Error method reproduces the text of
// the Azure service ("Invalid syntax for '…': Syntax error at position N in
// '…'.") and its Detail field explains the problem; a filter longer than
// [MaxEchoBytes] is quoted only in part (its start and the bytes around the
// problem, each at most MaxEchoBytes) and the Detail follows the position,
// so that the error of a huge filter stays small. Positions follow the
// .NET OData parser that the service uses: they are 0-based offsets in
// UTF-16 code units (equal to byte offsets for ASCII input); text left over
// after a complete expression is reported at the end of the first unexpected
// token, and a missing operand, parenthesis or comma at the start of the
// token found instead.
//
// # Limits
//
// Filters longer than [MaxLength] bytes, with more than [MaxNodes] syntax
// tree nodes (every name, literal, operator, function call, "in" list and
// list element counts) or nested deeper than [MaxDepth] (parentheses, function calls and
// not) are rejected, so that a hostile filter can neither exhaust the stack
// nor make evaluation per connection expensive.
package odata
