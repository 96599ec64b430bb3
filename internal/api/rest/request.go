package rest

import (
	"errors"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/switchboardhq/switchboard/internal/excerpt"
)

// Query is a request's query string; parameter names are matched ignoring case, as the services
// do.
type Query struct {
	v url.Values // keys lower-cased
}

// ParseQuery parses raw strictly: a malformed query is a 400 rather than silently losing a
// parameter such as filter, excluded or ttl.
func ParseQuery(raw string) (Query, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return Query{}, BadRequest("query", "Invalid query string: %s.", excerpt.Error(err))
	}
	q := make(url.Values, len(v))
	for _, k := range slices.Sorted(maps.Keys(v)) { // sorted: names that differ in case merge in one order
		lk := strings.ToLower(k)
		q[lk] = append(q[lk], v[k]...)
	}
	return Query{v: q}, nil
}

// Has reports whether the query names the parameter.
func (q Query) Has(name string) bool {
	_, ok := q.v[strings.ToLower(name)]
	return ok
}

// Get returns the first value of a parameter, "" when absent.
func (q Query) Get(name string) string { return q.v.Get(strings.ToLower(name)) }

// All returns every value of a repeated parameter.
func (q Query) All(name string) []string { return q.v[strings.ToLower(name)] }

// Lookup returns the first value of a parameter and whether it is present.
func (q Query) Lookup(name string) (string, bool) { return q.Get(name), q.Has(name) }

// Int parses an optional integer parameter within [lo, hi]; present reports whether it was given.
func (q Query) Int(name string, lo, hi int64) (n int64, present bool, err error) {
	if !q.Has(name) {
		return 0, false, nil
	}
	s := q.Get(name)
	n, err = strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < lo || n > hi {
		if hi == maxInt64 {
			return 0, true, BadRequest(name, "Invalid %s %s: it must be an integer of at least %d.", name, excerpt.Quote(s), lo)
		}
		return 0, true, BadRequest(name, "Invalid %s %s: it must be an integer between %d and %d.", name, excerpt.Quote(s), lo, hi)
	}
	return n, true, nil
}

const maxInt64 = int64(^uint64(0) >> 1)

// Excluded returns the connection ids a send leaves out, given as repeated keys
// (?excluded=c1&excluded=c2); empty ones are dropped.
func (q Query) Excluded() []string {
	var ids []string
	for _, id := range q.All("excluded") {
		if id != "" {
			ids = append(ids, id)
		}
	}
	return ids
}

// ReadBody reads r's whole body, bounded by max: a longer one is a 413. w must be the server's
// own writer (not a wrapper), so that http.MaxBytesReader can tell the server to close the
// connection after an oversized body.
func ReadBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > max {
		return nil, tooLarge(max)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, tooLarge(max)
	case err != nil:
		return nil, BadRequest("body", "Could not read the request body: %s.", excerpt.Error(err))
	}
	return b, nil
}

func tooLarge(max int64) *Error {
	return Fail(http.StatusRequestEntityTooLarge, CodeTooLarge, "body",
		"The request body is larger than the limit of %d bytes.", max)
}
