package durable

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/history"
)

func query(raw string) func(string) (string, bool) {
	q, _ := url.ParseQuery(raw)
	return func(name string) (string, bool) {
		vs, ok := q[name]
		if !ok {
			return "", false
		}
		return vs[0], true
	}
}

func TestParseRead(t *testing.T) {
	tests := []struct {
		query  string
		want   Read
		target string // the parameter of the 400, "" for success
	}{
		{"", Read{Limit: DefaultLimit}, ""},
		{"after=7&limit=1000&epoch=e", Read{After: 7, Limit: 1000, Epoch: "e"}, ""},
		{"after=%2042%20", Read{After: 42, Limit: DefaultLimit}, ""},
		{"after=18446744073709551615", Read{After: 1<<64 - 1, Limit: DefaultLimit}, ""},
		{"after=18446744073709551616", Read{}, "after"},
		{"after=-1", Read{}, "after"},
		{"after=", Read{}, "after"},
		{"limit=0", Read{}, "limit"},
		{"limit=1001", Read{}, "limit"},
		{"limit=x", Read{}, "limit"},
	}
	for _, tt := range tests {
		got, err := ParseRead(query(tt.query))
		var f *Failure
		switch {
		case tt.target == "" && (err != nil || got != tt.want):
			t.Errorf("%q: %+v, %v; want %+v", tt.query, got, err, tt.want)
		case tt.target != "" && (!errors.As(err, &f) || f.Status != http.StatusBadRequest || f.Target != tt.target || !errors.Is(err, ErrInvalidQuery)):
			t.Errorf("%q: %v, want a 400 about %s", tt.query, err, tt.target)
		}
	}
}

func FuzzParseRead(f *testing.F) {
	for _, s := range []string{"", "after=1&limit=2&epoch=e", "after=-1", "limit=99999999999999999999", "after=%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		rd, err := ParseRead(query(raw))
		if err == nil && (rd.Limit < 1 || rd.Limit > MaxLimit) {
			t.Fatalf("%q: limit %d accepted", raw, rd.Limit)
		}
		var fl *Failure
		if err != nil && !errors.As(err, &fl) {
			t.Fatalf("%q: %v is not a Failure", raw, err)
		}
	})
}

func TestValidKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"a", true},
		{"order-42:retry/1", true},
		{strings.Repeat("k", 255), true},
		{"", false},
		{strings.Repeat("k", 256), false},
		{"a b", false},
		{"tab\t", false},
		{"é", false},
		{"\x7f", false},
	}
	for _, tt := range tests {
		if got := ValidKey(tt.key); got != tt.want {
			t.Errorf("ValidKey(%q) = %v", tt.key, got)
		}
	}
}

func TestNextLink(t *testing.T) {
	rd := Read{After: 0, Limit: 2}
	more := history.Messages{Epoch: "e1", More: true, Records: []history.Record{{Offset: 1}, {Offset: 2}}}
	link := rd.NextLink("http://h/api/hubs/x/groups/g/messages", more, url.Values{"api-version": {"v"}})
	if link == nil || *link != "http://h/api/hubs/x/groups/g/messages?after=2&api-version=v&epoch=e1&limit=2" {
		t.Errorf("nextLink %v", link)
	}
	more.More = false
	if link := rd.NextLink("http://h/", more, nil); link != nil {
		t.Errorf("nextLink %q for the last page", *link)
	}
}

func TestReadFailures(t *testing.T) {
	pos := history.Messages{Epoch: "e", Offset: 9, Oldest: 5}
	tests := []struct {
		err    error
		status int
		code   string
		stream bool
	}{
		{history.ErrNotKept, 404, CodeHistoryNotKept, false},
		{history.ErrOffsetGone, 410, CodeHistoryOffsetGone, true},
		{history.ErrEpochChanged, 410, CodeHistoryEpoch, true},
		{history.ErrOffsetAhead, 400, CodeHistoryOffsetAhead, true},
	}
	for _, tt := range tests {
		var f *Failure
		err := readFailure(tt.err, "g", 1, pos)
		if !errors.As(err, &f) || f.Status != tt.status || f.Code != tt.code || (f.Stream != nil) != tt.stream || !errors.Is(err, tt.err) {
			t.Errorf("%v: %+v", tt.err, f)
			continue
		}
		if tt.stream && *f.Stream != (Position{Epoch: "e", Offset: 9, Oldest: 5}) {
			t.Errorf("%v: stream %+v", tt.err, *f.Stream)
		}
	}
	other := errors.New("disk on fire")
	if err := readFailure(other, "g", 1, pos); err != other {
		t.Errorf("other error became %v", err)
	}
	if _, err := (Read{Limit: 1}).From(nil, "h", "g"); !errors.Is(err, history.ErrNotKept) {
		t.Errorf("no history: %v", err)
	}
}

func TestSetHeaders(t *testing.T) {
	tests := []struct {
		sent Sent
		want http.Header
	}{
		{Sent{}, http.Header{}},
		{Sent{Replayed: true}, http.Header{"Idempotent-Replayed": {"true"}}},
		{Sent{Result: history.Result{Offset: 3, Epoch: "e"}}, http.Header{"X-Switchboard-Offset": {"3"}, "X-Switchboard-Epoch": {"e"}}},
	}
	for _, tt := range tests {
		h := http.Header{}
		tt.sent.SetHeaders(h)
		if len(h) != len(tt.want) {
			t.Errorf("%+v: %v, want %v", tt.sent, h, tt.want)
		}
		for k, v := range tt.want {
			if h.Get(k) != v[0] {
				t.Errorf("%+v: %s = %q, want %q", tt.sent, k, h.Get(k), v[0])
			}
		}
	}
}
